"""The colcon install puts executables, launch and config files where ros2 run/launch look."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require_ros

require_ros()

from ament_index_python.packages import (get_package_prefix,  # noqa: E402
                                         get_package_share_directory)

EXECUTABLES = ['segment_node']


def test_package_registered_in_ament_index():
    prefix = Path(get_package_prefix('motionseg_ros'))
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
            / 'motionseg_ros').is_file()
    assert (prefix / 'share' / 'motionseg_ros' / 'package.xml').is_file()


@pytest.mark.parametrize('exe', EXECUTABLES)
def test_executables_where_ros2_run_looks(exe):
    # `ros2 run pkg exe` runs <prefix>/lib/<pkg>/<exe> if it is an executable file.
    path = Path(get_package_prefix('motionseg_ros')) / 'lib' / 'motionseg_ros' / exe
    assert path.is_file(), path
    assert os.access(path, os.X_OK), f'{path} is not executable'
    first = path.read_text().splitlines()[0]
    assert first.startswith('#!') and 'python' in first


def test_launch_and_config_installed():
    share = Path(get_package_share_directory('motionseg_ros'))
    assert (share / 'launch' / 'segment.launch.py').is_file()
    for name in ('default.yaml', 'segment.yaml'):
        assert (share / 'config' / name).is_file(), name
    assert sorted(p.name for p in (share / 'msg').glob('*.msg')) == [
        'MotionMasks.msg', 'ObjectMask.msg', 'Trajectory.msg', 'TrajectoryArray.msg']


def test_packaged_config_found_from_install():
    # run from a neutral folder so the source checkout is not on sys.path
    code = ('from motionseg_ros.config import package_config_dir, load_config; '
            'print(package_config_dir()); load_config()')
    out = subprocess.run([sys.executable, '-c', code], cwd='/', capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip(), 'default.yaml').is_file()


def test_messages_importable_outside_the_checkout():
    code = 'from motionseg_ros.msg import MotionMasks, ObjectMask, Trajectory, TrajectoryArray'
    out = subprocess.run([sys.executable, '-c', code], cwd='/', capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_pure_python_library_needs_no_ros_build(tmp_path):
    # `pip install -e .` gives the library; the pipeline modules import without rclpy/msgs.
    code = ('import sys; sys.modules["rclpy"] = None; '
            'import motionseg_ros, motionseg_ros.pipeline, motionseg_ros.cli; '
            'print(motionseg_ros.__version__)')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH')}
    out = subprocess.run([sys.executable, '-c', code], cwd=str(REPO), capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr


def test_object_ids_have_one_type():
    """ObjectMask.id and Trajectory.object_id compare directly: both int32 (-1 = no object)."""
    from motionseg_ros.msg import ObjectMask, Trajectory
    mask_id = ObjectMask.get_fields_and_field_types()['id']
    track_object = Trajectory.get_fields_and_field_types()['object_id']
    assert mask_id == track_object == 'int32'
    assert Trajectory().object_id == 0 and Trajectory(object_id=-1).object_id == -1
