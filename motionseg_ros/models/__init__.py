"""Learned models used by stage backends (torch)."""

from motionseg_ros.models.moseg import (  # noqa: F401
    MosegConfig, MosegModel, WeightsError, load_checkpoint, save_checkpoint)
