"""Shared helpers for tests that talk to nodes over real DDS (rclpy, Fast DDS).

Isolation: :func:`isolate_dds` gives this test process its own ``ROS_DOMAIN_ID`` (derived from
the pid) and keeps discovery on this host, before rclpy creates a participant; subprocesses
started with :class:`NodeProcess` inherit it. Large images: the Fast DDS profile
``config/fastdds_shm.xml`` (32 MB shared-memory segment) is used by both sides, so 854x480
images arrive over best-effort (sensor-data) QoS as they would from a camera driver.

Import this module only after checking :func:`ros_available` (or via :func:`require_ros`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get('MOTIONSEG_DATA', ROOT.parent / 'shared' / 'data'))
DAVIS = DATA / 'davis2016' / 'JPEGImages' / '480p'
#: the clip shipped in the package: node tests run on it when the shared data is absent
DEMO_CLIP = ROOT / 'motionseg_ros' / 'assets' / 'demo.mp4'
SHM_PROFILE = ROOT / 'config' / 'fastdds_shm.xml'
SEGMENT_YAML = ROOT / 'config' / 'segment.yaml'
#: extra wait after discovery matched, before sending what a test counts
SETTLE_S = 0.5


def ros_available() -> Optional[str]:
    """Return None when rclpy and the generated messages import, else the reason."""
    try:
        import rclpy  # noqa: F401
        from motionseg_ros.msg import MotionMasks  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no ROS here
        return f'ROS 2 not available ({exc}); source env.sh'
    return None


def require_ros() -> None:
    """Skip the calling module without ROS, or fail when MOTIONSEG_REQUIRE_ROS=1."""
    reason = ros_available()
    if reason is None:
        return
    if os.environ.get('MOTIONSEG_REQUIRE_ROS') == '1':
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def isolate_dds(shm_profile: bool = True) -> int:
    """Give this process a private ROS domain on localhost; return the domain id.

    Must run before ``rclpy.init``. Keeps a domain the session already chose (conftest.py).
    """
    domain = int(os.environ.setdefault('ROS_DOMAIN_ID', str(10 + os.getpid() % 150)))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    if shm_profile:
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(SHM_PROFILE)
        if os.environ.get('ROS_DISTRO') == 'humble':  # Fast DDS 2.6 reads the old name
            os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(SHM_PROFILE)
    os.environ['PYTHONUNBUFFERED'] = '1'
    return domain


def node_executable(name: str = 'segment_node') -> List[str]:
    """Return the command of an installed executable of the package (colcon install/)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        exe = Path(get_package_prefix('motionseg_ros')) / 'lib' / 'motionseg_ros' / name
    except PackageNotFoundError:
        exe = ROOT / 'install' / 'motionseg_ros' / 'lib' / 'motionseg_ros' / name
    if not exe.exists():
        pytest.fail(f'{exe} not found: run `make setup` (colcon build) first', pytrace=False)
    return [str(exe)]


def davis_frames(sequence: str = 'car-shadow', count: int = 40) -> List[np.ndarray]:
    """Return the first ``count`` BGR frames of a DAVIS 2016 sequence.

    Without the shared data (a plain ``colcon test`` of the package) the frames come from the
    packaged demo clip instead (640x360, moving shapes), so the node tests still run; tests
    take the image size from the frames, never assume one.
    """
    import cv2
    files = sorted((DAVIS / sequence).glob('*.jpg'))[:count]
    if files:
        return [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    return demo_frames(count)


def demo_frames(count: int = 40) -> List[np.ndarray]:
    """Return the first ``count`` frames of the packaged demo clip (BGR)."""
    import cv2
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    while len(frames) < count:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    if not frames:
        pytest.fail(f'cannot read the packaged clip {DEMO_CLIP}', pytrace=False)
    return frames


def image_msg(pixels: np.ndarray, stamp_ns: int, encoding: str = 'bgr8',
              frame_id: str = 'camera') -> Any:
    """Build a ``sensor_msgs/Image`` with the given stamp (encoding names the array layout)."""
    from motionseg_ros.ros.conversions import numpy_to_image
    from std_msgs.msg import Header
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return numpy_to_image(pixels, encoding, header)


def stamp_ns(stamp: Any) -> int:
    """Return a ``builtin_interfaces/Time`` in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def diag_values(status: Any) -> Dict[str, str]:
    """Return a DiagnosticStatus's key/values as a dict."""
    return {kv.key: kv.value for kv in status.values}


def dump_parameters(probe: Probe, node_name: str) -> Dict[str, Any]:
    """Do what ``ros2 param dump`` does over the real services: list all names, get them all.

    Returns name -> rcl_interfaces/ParameterValue; fails if the services answer short.
    """
    from rcl_interfaces.srv import GetParameters, ListParameters
    answers = []
    for srv, name, request in ((ListParameters, 'list_parameters', ListParameters.Request()),
                               (GetParameters, 'get_parameters', None)):
        client = probe.node.create_client(srv, f'{node_name}/{name}')
        assert client.wait_for_service(20.0), f'{name} service not found'
        if request is None:
            request = GetParameters.Request(names=list(answers[0].result.names))
        future = client.call_async(request)
        assert probe.wait_for(future.done, 20.0), f'{name} did not answer'
        answers.append(future.result())
        probe.node.destroy_client(client)
    names = list(answers[0].result.names)
    assert len(answers[1].values) == len(names), 'get_parameters answered short: ' \
        f'{len(answers[1].values)} values for {len(names)} names'
    return dict(zip(names, answers[1].values))


class NodeProcess:
    """A node executable run as a subprocess; stopped with SIGINT like a terminal would."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None,
                 own_group: bool = False) -> None:
        """Start ``args`` with this process's (isolated) environment, output to a temp file.

        ``own_group``: run it in its own session / process group, so a signal can go to the
        whole group as a terminal's Ctrl-C does (see :meth:`interrupt_group`).
        """
        self.log = tempfile.NamedTemporaryFile('w+', prefix='node-', suffix='.log', delete=False)
        self.proc = subprocess.Popen(list(args), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})), cwd=str(ROOT),
                                     start_new_session=own_group)
        self.returncode: Optional[int] = None

    def output(self) -> str:
        """Return everything the process printed so far."""
        return Path(self.log.name).read_text(errors='replace')

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def wait_output(self, text: str, timeout: float = 30.0) -> bool:
        """Wait until ``text`` appears in the output (False on timeout or exit)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output():
                return True
            if not self.alive():
                return text in self.output()
            time.sleep(0.05)
        return False

    def interrupt(self, timeout: float = 10.0) -> float:
        """Send SIGINT, wait for exit; return seconds it took (kills it after ``timeout``)."""
        if not self.alive():
            self.returncode = self.proc.returncode
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        return time.monotonic() - t0

    def interrupt_group(self, times: int = 2, gap: float = 0.1,
                        timeout: float = 30.0) -> float:
        """SIGINT the process group ``times`` times, ``gap`` s apart, as Ctrl-C on ``ros2 launch``
        does (the terminal signals launch and node, then launch signals the node again); wait
        for exit and return the seconds it took (kills the group after ``timeout``)."""
        t0 = time.monotonic()
        pgid = os.getpgid(self.proc.pid)
        for i in range(times):
            if i:
                time.sleep(gap)
            try:
                os.killpg(pgid, signal.SIGINT)
            except ProcessLookupError:
                break
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.returncode = self.proc.wait()
        return time.monotonic() - t0

    def close(self) -> None:
        """Stop the process if still running and remove its log."""
        self.interrupt()
        self.log.close()
        os.unlink(self.log.name)


class Probe:
    """An in-process rclpy node that feeds a node under test and records its outputs.

    Spins in a background thread; every received message is appended to ``self.got[topic]``.
    """

    def __init__(self, context: Any, name: str = 'probe') -> None:
        """Create the node in ``context`` (an initialised rclpy Context) and start spinning."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.node = rclpy.create_node(name, context=context)
        self.got: Dict[str, List[Any]] = {}
        self._lock = threading.Lock()
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running:
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down while stopping
                if self._running:
                    raise

    def subscribe(self, msg_type: Any, topic: str, reliable: bool = True,
                  depth: int = 100) -> None:
        """Record every message on ``topic``."""
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy
        qos = QoSProfile(depth=depth, reliability=QoSReliabilityPolicy.RELIABLE if reliable
                         else QoSReliabilityPolicy.BEST_EFFORT)
        self.got.setdefault(topic, [])

        def keep(msg: Any, topic: str = topic) -> None:
            with self._lock:
                self.got[topic].append(msg)
        self.node.create_subscription(msg_type, topic, keep, qos)

    def publisher(self, msg_type: Any, topic: str, reliable: bool = False,
                  depth: int = 5) -> Any:
        """Return a publisher (best effort by default, like a camera driver)."""
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy
        qos = QoSProfile(depth=depth, reliability=QoSReliabilityPolicy.RELIABLE if reliable
                         else QoSReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    def messages(self, topic: str) -> List[Any]:
        """Return a copy of what arrived on ``topic``."""
        with self._lock:
            return list(self.got.get(topic, []))

    def clear(self, topic: str) -> None:
        """Forget what arrived on ``topic``."""
        with self._lock:
            self.got[topic] = []

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0,
                 period: float = 0.05) -> bool:
        """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(period)
        return predicate()

    def wait_matched(self, publisher: Any, topics: Sequence[str] = (),
                     timeout: float = 20.0) -> bool:
        """Wait until ``publisher`` has a subscriber and each topic in ``topics`` a publisher.

        Then waits ``SETTLE_S`` more: the remote side may complete its half of the match a
        little later, and a best-effort sample sent before that is lost.
        """
        ok = self.wait_for(lambda: publisher.get_subscription_count() > 0 and all(
            self.node.count_publishers(t) > 0 for t in topics), timeout)
        time.sleep(SETTLE_S)
        return ok

    def latest_diagnostics(self, name_part: str = 'segment') -> Optional[Dict[str, str]]:
        """Return the key/values of the newest /diagnostics status whose name has name_part."""
        for msg in reversed(self.messages('/diagnostics')):
            for status in msg.status:
                if name_part in status.name:
                    out = diag_values(status)
                    out['_level'] = str(ord(status.level) if isinstance(status.level, bytes)
                                        else status.level)
                    out['_message'] = status.message
                    return out
        return None

    def close(self) -> None:
        """Stop spinning and destroy the node."""
        self._running = False
        self._thread.join(2.0)
        self.executor.remove_node(self.node)
        self.node.destroy_node()


@contextlib.contextmanager
def segment_node_session(probe_name: str, remaps: Sequence[str] = (),
                         params: Sequence[str] = ()) -> Iterator[Tuple[Probe, NodeProcess]]:
    """An isolated DDS domain, a :class:`Probe` and a ready ``segment_node``; all torn down.

    The node runs as users start it: ``--ros-args -r image:=/camera/image_raw``, the extra
    ``remaps`` (``'from:=to'``), ``--params-file config/segment.yaml``, then ``params``
    (``'name:=value'``, overriding the file). Exiting closes the node, the probe and the
    rclpy context, whatever happened inside.
    """
    import rclpy
    isolate_dds()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    probe = Probe(ctx, probe_name)
    args = ['--ros-args', '-r', 'image:=/camera/image_raw']
    for remap in remaps:
        args += ['-r', remap]
    args += ['--params-file', str(SEGMENT_YAML)]
    for param in params:
        args += ['-p', param]
    node = NodeProcess(node_executable() + args)
    try:
        assert node.wait_output('ready', 60), node.output()
        yield probe, node
    finally:
        node.close()
        probe.close()
        rclpy.shutdown(context=ctx)
