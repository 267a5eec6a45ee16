"""Learned models used by stage backends (torch)."""

from motionseg_ros.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from motionseg_ros.models.config import MosegConfig  # noqa: F401
from motionseg_ros.models.moseg import MosegModel  # noqa: F401
from motionseg_ros.weights import WeightsError  # noqa: F401
