"""Live evaluation: replay a sequence to a ``segment_node`` subprocess over DDS, score its output.

Per sequence: the node is started (``python -m motionseg_ros.ros.segment_node`` with the input
remapped to the bag's image topic, the packaged ``config/segment.yaml`` and the evaluation's
pipeline config, unless a command is given), this process subscribes to ``motion_masks``, waits
until both sides are matched, replays the bag at its recorded timing times ``rate`` and waits
``settle_s`` for late results. Results are matched to inputs by header stamp; an annotated frame
without a result scores as an empty prediction and is listed in ``missing``. The node's own
frame counters (received / processed / dropped / rejected) are kept with the runtime figures so
the drop accounting can be checked end to end (sent = received by the node + lost in transport;
received = processed + dropped + rejected). They are read from the node's ``/diagnostics``
(the values of its status whose ``image_topic`` is the replayed topic), once the node reports
nothing in flight after the last result: structured values, not its log text.

Large images need Fast DDS's shared-memory transport with a big segment (see
``config/fastdds_shm.xml``); it is used for both processes unless the environment names a
profile already.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import yaml

from motionseg_ros.evaluation import metrics
from motionseg_ros.evaluation.bag_sequence import BagSequence
from motionseg_ros.evaluation.datasets import SequenceData
from motionseg_ros.evaluation.options import EvalOptions, EvaluationError
from motionseg_ros.stamps import stamp_to_ns

LIVE_START_NS = 1_700_000_000_000_000_000
#: the node's frame counters, as its diagnostics name them
COUNTERS = ('received', 'processed', 'dropped', 'rejected', 'in_flight')
#: longest wait (s) for a diagnostics report after the last result (the node reports at 1 Hz)
COUNTERS_WAIT_S = 3.0


def _config_dir() -> Path:
    from motionseg_ros.config import package_config_dir
    return package_config_dir()


def default_node_command(image_topic: str, params_file: Optional[str],
                         pipeline_yaml: Optional[str], compressed: bool = False) -> List[str]:
    """Return the segment_node command line used when none is configured."""
    params = params_file or str(_config_dir() / 'segment.yaml')
    base = image_topic[:-len('/compressed')] if compressed and image_topic.endswith(
        '/compressed') else image_topic
    cmd = [sys.executable, '-m', 'motionseg_ros.ros.segment_node', '--ros-args',
           '-r', f'image:={base}', '--params-file', params]
    if compressed:
        cmd += ['-p', 'compressed:=true']
    if pipeline_yaml:
        cmd += ['-p', f'pipeline_config:={pipeline_yaml}']
    return cmd


def _dds_env() -> Dict[str, str]:
    """Environment for both processes: the big shared-memory segment profile unless set."""
    env = dict(os.environ)
    if not env.get('FASTDDS_DEFAULT_PROFILES_FILE') and not env.get(
            'FASTRTPS_DEFAULT_PROFILES_FILE'):
        xml = _config_dir() / 'fastdds_shm.xml'
        if xml.is_file():
            # Humble's Fast DDS 2.6 reads the old name; newer ones warn that it is deprecated.
            key = ('FASTRTPS_DEFAULT_PROFILES_FILE' if env.get('ROS_DISTRO') == 'humble'
                   else 'FASTDDS_DEFAULT_PROFILES_FILE')
            env[key] = str(xml)
    return env


def evaluate_live_sequence(seq: SequenceData, options: EvalOptions) -> metrics.SequenceScore:
    """Write the sequence into a temporary bag, then evaluate it live."""
    from motionseg_ros.bags.writer import BagWriter
    fps = options.fps or seq.fps
    n = len(seq) if options.max_frames is None else min(len(seq), options.max_frames)
    with tempfile.TemporaryDirectory(prefix='motionseg_live_') as tmp:
        bag_path = Path(tmp) / seq.name
        gt: Dict[int, Tuple[np.ndarray, Optional[np.ndarray]]] = {}
        names: Dict[int, str] = {}
        with BagWriter(bag_path) as bag:
            for i in range(n):
                stamp = LIVE_START_NS + int(round(i * 1e9 / fps))
                bag.write_image('/camera/image_raw', seq.image(i), stamp)
                names[stamp] = seq.frame_names[i]
                if i in seq.gt_paths:
                    gt[stamp] = seq.gt(i)
        return run_live(seq.name, bag_path, '/camera/image_raw', gt, names, options)


def evaluate_live_bag(bseq: BagSequence, options: EvalOptions) -> metrics.SequenceScore:
    """Evaluate a bag with /gt/masks live."""
    gt = {s: (g, None) for s, g in bseq.gt_by_stamp.items()}
    return run_live(bseq.name, bseq.path, bseq.image_topic, gt, None, options,
                    compressed=bseq.image_type.endswith('CompressedImage'))


def node_counters(status: Any) -> Optional[Dict[str, Any]]:
    """Return the frame counters (and ``image_topic``) of a segment_node ``DiagnosticStatus``.

    None for a status that carries no frame counters (another node's).
    """
    values = {kv.key: kv.value for kv in status.values}
    try:
        counters: Dict[str, Any] = {k: int(values[k]) for k in COUNTERS}
    except (KeyError, ValueError):
        return None
    counters['image_topic'] = values.get('image_topic', '')
    return counters


class _Collector:
    """Collects the node's output: label images by stamp, frame counters from diagnostics.

    Keeps (receive time, label image) per header stamp of ``motion_masks`` and the latest frame
    counters each node reports on ``/diagnostics``, with their receive time.
    """

    def __init__(self, node: Any, image_topic: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from motionseg_ros.msg import MotionMasks
        self.image_topic = image_topic
        self.results: Dict[int, Tuple[float, np.ndarray]] = {}
        self.reports: Dict[str, Tuple[float, Dict[str, Any]]] = {}   # status name -> latest
        self.duplicates = 0
        self.errors: List[str] = []
        self.lock = threading.Lock()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.sub = node.create_subscription(MotionMasks, 'motion_masks', self._on_masks, qos)
        self.diag_sub = node.create_subscription(DiagnosticArray, '/diagnostics',
                                                 self._on_diagnostics, 10)

    def _on_masks(self, msg: Any) -> None:
        from motionseg_ros.image_codec import ImageCodecError, decode_raw
        now = time.time()
        stamp = stamp_to_ns(msg.header.stamp)
        try:
            labels = decode_raw(msg.label_image).pixels
        except ImageCodecError as exc:
            with self.lock:
                self.errors.append(f'label image at {stamp}: {exc}')
            return
        with self.lock:
            if stamp in self.results:
                self.duplicates += 1
            self.results[stamp] = (now, np.array(labels, copy=True))

    def _on_diagnostics(self, msg: Any) -> None:
        now = time.time()
        for status in msg.status:
            counters = node_counters(status)
            if counters is not None:
                with self.lock:
                    self.reports[status.name] = (now, counters)

    def _latest(self) -> Optional[Tuple[float, Dict[str, Any]]]:
        """Return the node's latest report: the one for our image topic, else the only one."""
        with self.lock:
            reports = list(self.reports.values())
        ours = [r for r in reports if r[1]['image_topic'] == self.image_topic]
        if len(ours) == 1:
            return ours[0]
        return reports[0] if len(reports) == 1 else None

    def settled_counters(self, after: float, results: int, timeout: float
                         ) -> Optional[Dict[str, int]]:
        """Return the node's frame counters once it is idle.

        Idle: reported after ``after`` (time.time), nothing in flight, at least ``results``
        frames processed. When the wait times out the latest counters are returned
        (``in_flight`` then says what was still being processed); None when the node never
        reported any.
        """
        deadline = time.monotonic() + timeout
        while True:
            latest = self._latest()
            if latest is not None:
                at, c = latest
                if at > after and c['in_flight'] == 0 and c['processed'] >= results:
                    break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if latest is None:
            return None
        return {k: v for k, v in latest[1].items() if k in COUNTERS}


def run_live(name: str, bag: Path, image_topic: str,
             gt: Dict[int, Tuple[np.ndarray, Optional[np.ndarray]]],
             names: Optional[Dict[int, str]], options: EvalOptions,
             compressed: bool = False) -> metrics.SequenceScore:
    """Replay ``bag`` to a node subprocess and score its results against ``gt`` (by stamp)."""
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
    except ImportError as exc:
        raise EvaluationError(f'live mode needs rclpy ({exc}); source env.sh') from None
    try:
        from motionseg_ros.msg import MotionMasks  # noqa: F401
    except ImportError as exc:
        raise EvaluationError(f'live mode needs the built messages ({exc}); run colcon build '
                              'and source env.sh') from None
    from motionseg_ros.bags.player import BagPlayer

    env = _dds_env()
    for key in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
        if key in env and key not in os.environ:
            os.environ[key] = env[key]   # this process's participant too (read at creation)
    work = Path(tempfile.mkdtemp(prefix='motionseg_live_node_'))
    pipeline_yaml = work / 'pipeline.yaml'
    pipeline_yaml.write_text(yaml.safe_dump(options.config))
    cmd = options.node_command or default_node_command(image_topic, options.node_params_file,
                                                       str(pipeline_yaml), compressed)
    log_path = work / 'node.log'
    log = open(log_path, 'w')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('motionseg_live_eval', context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    stop_spin = threading.Event()

    def spin() -> None:
        while not stop_spin.is_set() and ctx.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    published: Dict[int, float] = {}
    counters: Optional[Dict[str, int]] = None
    try:
        collector = _Collector(node, image_topic)
        player = BagPlayer(node, bag, topics=[image_topic], rate=options.rate, reliable=True,
                           depth=10)
        deadline = time.monotonic() + options.startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EvaluationError(f'{name}: node exited with code {proc.returncode} before '
                                      f'it was ready: {_tail(log_path)}')
            if (player.publishers[image_topic].get_subscription_count() >= 1
                    and collector.sub.get_publisher_count() >= 1):
                break
            time.sleep(0.1)
        else:
            raise EvaluationError(f'{name}: node did not subscribe to {image_topic} and '
                                  f'publish motion_masks within {options.startup_timeout_s:g} s: '
                                  f'{_tail(log_path)}')
        time.sleep(0.5)   # let discovery settle on every transport

        def on_publish(m: Any, wall: float) -> None:
            published[stamp_to_ns(m.msg.header.stamp)] = wall

        t_play = time.time()
        player.play(on_publish=on_publish)
        t_played = time.time()
        end = time.monotonic() + options.settle_s
        while time.monotonic() < end:
            with collector.lock:
                if all(s in collector.results for s in published):
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.1)
        with collector.lock:
            results = dict(collector.results)
            duplicates = collector.duplicates
            errors = list(collector.errors)
        after = max([t_played] + [r[0] for r in results.values()])
        counters = collector.settled_counters(after, len(results), COUNTERS_WAIT_S)
    finally:
        _stop_node(proc, log)
        shutil.rmtree(work, ignore_errors=True)
        stop_spin.set()
        spinner.join(timeout=2.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    if errors:
        raise EvaluationError(f'{name}: {errors[0]}')
    sent = sorted(published)
    received = [s for s in sent if s in results]
    frame_names, preds, gts, missing = [], [], [], []
    for k, stamp in enumerate(sent):
        if stamp not in gt:
            continue
        labels, void = gt[stamp]
        fname = names[stamp] if names and stamp in names else f'{k:05d}'
        if stamp in results:
            pred = results[stamp][1]
            if pred.shape != labels.shape:
                raise EvaluationError(f'{name} frame {fname}: node output {pred.shape} and '
                                      f'ground truth {labels.shape} differ in size')
        else:
            pred = np.zeros_like(labels)
            missing.append(fname)
        frame_names.append(fname)
        preds.append(pred)
        gts.append((labels, void))
    if not frame_names:
        raise EvaluationError(f'{name}: no published frame has ground truth')
    score = metrics.score_predictions(name, frame_names, preds, gts, options.per_object)
    score.missing = missing
    latencies = [(results[s][0] - published[s]) * 1e3 for s in received]
    # throughput over the span from the first frame sent to the last result received
    last = max([results[s][0] for s in received] + [published[s] for s in sent])
    wall = max(last - min(published.values(), default=t_play), 1e-6)
    runtime = metrics.runtime_stats(latencies, len(sent), wall)
    runtime['unknown_results'] = len([s for s in results if s not in published])
    runtime['duplicate_results'] = duplicates
    runtime['rate'] = options.rate
    if counters is not None:
        runtime.update({f'node_{k}': v for k, v in counters.items()
                        if k != 'in_flight' or v})
        runtime['lost_in_transport'] = len(sent) - counters['received']
    score.runtime = runtime
    return score


def _stop_node(proc: subprocess.Popen, log: Any) -> None:
    """SIGINT the node (Fast DDS cleans its shared memory) and wait for it to exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    log.close()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors='replace').strip().splitlines()
    except OSError:
        return '(no node log)'
    return ' | '.join(text[-lines:]) or '(node printed nothing)'
