"""The node's ROS-free run-time parts: newest-frame worker and depth pairing (no ROS needed)."""

from __future__ import annotations

import threading
import time

from motionseg_ros.runtime.depth_pairing import DepthPairer
from motionseg_ros.runtime.frame_worker import FrameWorker


def _balanced(c: dict) -> bool:
    return c['received'] == c['processed'] + c['dropped'] + c['rejected'] + c['in_flight']


class Recorder:
    """A handler that blocks until released, so a test controls when an item is done."""

    def __init__(self) -> None:
        self.seen, self.rejections, self.errors = [], [], []
        self.gate = threading.Event()
        self.started = threading.Event()

    def handle(self, item):
        self.started.set()
        self.gate.wait(5.0)
        self.seen.append(item)
        if item == 'bad':
            return 'invalid_frame', 'bad item'
        if item == 'boom':
            raise RuntimeError('exploded')
        return None


def _worker(rec: Recorder) -> FrameWorker:
    return FrameWorker(rec.handle, lambda c, t: rec.rejections.append((c, t)),
                       rec.errors.append)


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_newest_item_wins_and_counters_always_add_up():
    rec = Recorder()
    w = _worker(rec)
    w.start()
    w.offer(1)
    assert rec.started.wait(5.0)      # the worker is busy with 1
    for item in (2, 3, 4):            # 2 and 3 are replaced before the worker is free
        w.offer(item)
        assert _balanced(w.counters())
    assert w.counters() == {'received': 4, 'processed': 0, 'dropped': 2, 'rejected': 0,
                            'in_flight': 2}
    rec.gate.set()
    assert _wait(lambda: w.counters()['processed'] == 2)
    assert rec.seen == [1, 4]
    assert w.stop()
    assert w.counters() == {'received': 4, 'processed': 2, 'dropped': 2, 'rejected': 0,
                            'in_flight': 0}


def test_rejections_and_errors_are_counted_and_the_worker_survives():
    rec = Recorder()
    rec.gate.set()
    w = _worker(rec)
    w.start()
    for item in ('bad', 'boom', 'good'):
        w.offer(item)
        assert _wait(lambda: w.counters()['in_flight'] == 0)
    assert w.reasons() == {'invalid_frame': 1, 'pipeline_error': 1}
    assert rec.rejections[0] == ('invalid_frame', 'bad item')
    assert 'exploded' in rec.rejections[1][1] and 'RuntimeError' in rec.errors[0]
    assert w.counters()['processed'] == 1 and w.counters()['rejected'] == 2
    w.stop()


def test_stop_drops_the_waiting_item_and_restart_keeps_counting():
    rec = Recorder()
    w = _worker(rec)
    w.start()
    w.offer('a')
    assert rec.started.wait(5.0)
    w.offer('b')                            # waiting while 'a' is processed
    assert not w.stop(timeout=0.05)         # 'a' still in progress
    rec.gate.set()
    assert _wait(lambda: w.counters()['in_flight'] == 0)
    c = w.counters()
    assert c['received'] == 2 and c['dropped'] >= 1 and _balanced(c)
    w.start()                               # a reconfigured node restarts its worker
    w.offer('c')
    assert _wait(lambda: 'c' in rec.seen)
    assert w.stop() and _balanced(w.counters())


def test_depth_nearest_within_slop_is_paired():
    p = DepthPairer()
    for i in range(5):
        p.add(1_000_000_000 + i * 100_000_000, f'd{i}')
    assert p.pair(1_210_000_000, slop_s=0.05, wait_s=0.0).payload == 'd2'
    far = p.pair(1_550_000_000, slop_s=0.05, wait_s=0.0)
    assert far.payload is None and 'no depth within 0.050 s' in far.problem
    assert 'nearest -0.150 s' in far.problem


def test_depth_trailing_its_image_is_waited_for():
    p = DepthPairer()
    p.add(1_000_000_000, 'old')             # the depth stream is live
    threading.Timer(0.1, p.add, args=(2_000_000_000, 'late')).start()
    assert p.pair(2_000_000_000, slop_s=0.01, wait_s=5.0).payload == 'late'


def test_depth_wait_ends_on_cancel_and_without_a_stream():
    assert 'no depth image received yet' in DepthPairer().pair(5, 0.01, 5.0).problem
    p = DepthPairer()
    p.add(1_000_000_000, 'old')
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    out = p.pair(9_000_000_000, slop_s=0.01, wait_s=30.0, cancelled=stop.is_set)
    assert out.payload is None and time.monotonic() - t0 < 29.0
