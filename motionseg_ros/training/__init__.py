"""Training of the learned classifier on synthetic data."""

from motionseg_ros.training.train import (  # noqa: F401
    TrainingError, evaluate, load_training_config, roc_auc, train, weighted_bce)
