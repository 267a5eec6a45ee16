"""Shared test configuration: data location, DDS isolation, ROS availability."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: real data lives beside the repository (never copied into it)
SHARED_DATA = REPO.parent / 'shared' / 'data'
DAVIS = SHARED_DATA / 'davis2016'
#: the packaged demo clip (works without ../shared)
DEMO = REPO / 'motionseg_ros' / 'assets' / 'demo.mp4'
#: DAVIS-2016 train, exported beside the repository by ../shared/tools/davis2016_train.sh
DAVIS_TRAIN = REPO.parent / 'data' / 'davis2016_train'

# Every test session gets its own DDS domain, discovery stays on this host: two runs on one
# machine (or a developer's node) never see each other's topics. Subprocesses inherit this.
os.environ.setdefault('ROS_DOMAIN_ID', str(10 + os.getpid() % 150))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')  # Humble spelling of the same
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


def ros_available() -> bool:
    """True when rclpy and the generated messages import (env.sh sourced)."""
    try:
        import rclpy  # noqa: F401

        from motionseg_ros.msg import MotionMasks  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means no ROS here
        return False
    return True


def require_ros() -> None:
    """Skip without ROS, unless the run demands it (make test sets MOTIONSEG_REQUIRE_ROS=1)."""
    if ros_available():
        return
    if os.environ.get('MOTIONSEG_REQUIRE_ROS') == '1':
        pytest.fail('rclpy / motionseg_ros.msg not importable although MOTIONSEG_REQUIRE_ROS=1 '
                    '(run `make setup` and `source env.sh`)')
    pytest.skip('ROS environment not sourced (source env.sh)')


def require_data(path: Path) -> Path:
    """Skip when the shared data folder is absent (it is not part of the repository)."""
    if not path.exists():
        pytest.skip(f'shared data not found: {path}')
    return path


@pytest.fixture
def ros_env():
    """Skip or fail the test when ROS is not available; see require_ros."""
    require_ros()


@pytest.fixture
def davis_root() -> Path:
    """The DAVIS 2016 folder in ../shared/data."""
    return require_data(DAVIS)


@pytest.fixture(scope='module')
def one_torch_thread():
    """Run a module's torch code on one thread (tiny models on a shared 2-core machine are
    much faster that way), restoring the count afterwards."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def demo_frames(n: int = 8) -> list:
    """Return the first ``n`` BGR frames of the packaged demo clip."""
    from motionseg_ros.io.sources import open_source
    frames = []
    for f in open_source(DEMO):
        frames.append(f.image)
        if len(frames) == n:
            break
    return frames
