"""Health statistics and level of the node, from real pipeline warnings (no ROS needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from motionseg_ros.config import load_config
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.runtime.health import (OK, WARN, HealthStats, Throttle, warning_code)
from motionseg_ros.types import Frame

DEMO = Path(__file__).resolve().parents[1] / 'motionseg_ros' / 'assets' / 'demo.mp4'
COUNTS = {'received': 3, 'processed': 3, 'dropped': 0, 'rejected': 0, 'in_flight': 0}


def _frames(n: int):
    cap = cv2.VideoCapture(str(DEMO))
    out = [cap.read()[1] for _ in range(n)]
    cap.release()
    return out


def _judge(stats: HealthStats, counts=COUNTS):
    return stats.judge(counts, {}, True, 'active', '/camera/image_raw')


def test_pipeline_reset_warnings_are_classified_and_reported():
    pipe = StreamingPipeline(load_config('geometric.yaml'))
    imgs = _frames(3)
    stats = HealthStats()
    results = [pipe.process(Frame(image=imgs[0], stamp_ns=2_000_000_000)),
               pipe.process(Frame(image=np.ascontiguousarray(imgs[1][:200, :300]),
                                  stamp_ns=2_100_000_000)),
               pipe.process(Frame(image=np.ascontiguousarray(imgs[2][:200, :300]),
                                  stamp_ns=1_000_000_000))]
    warnings = [w for r in results for w in r.warnings]
    codes = [stats.pipeline_warning(w) for w in warnings]
    assert 'resolution_change' in codes and 'stamp_backwards' in codes, warnings
    values = stats.values()
    assert values['events.resolution_change'] == 1 and values['events.stamp_backwards'] == 1
    assert values['pipeline_warnings'] == len(warnings)
    assert 'stamp went backwards' in values['last_pipeline_warning']
    level, message = _judge(stats)
    assert level == WARN and 'pipeline warning' in message
    assert _judge(stats)[0] == OK, 'a reset is news for one report, not a lasting state'


def _raising_first(call, errors):
    """Wrap ``call`` so that it raises the next of ``errors`` until they run out."""
    def wrapped(*args, **kwargs):
        err = next(errors, None)
        if err is not None:
            raise err
        return call(*args, **kwargs)
    return wrapped


def test_out_of_memory_degradation_holds_warn():
    torch = pytest.importorskip('torch')
    pytest.importorskip('transformers')
    from tiny_gpu_models import make_depth_anything
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        model = make_depth_anything(Path(tmp) / 'depth')
        pipe = StreamingPipeline(load_config('geometric.yaml', [
            'depth.name=depth_anything', f'depth.params.model={model}',
            'depth.params.device=cpu', 'depth.params.input_size=280']))
        stage = pipe.stages['depth']
        # fault injection: the first forward pass runs out of GPU memory, as on a busy GPU
        calls = iter([torch.cuda.OutOfMemoryError('CUDA out of memory (injected)')])
        stage.model.forward = _raising_first(stage.model.forward, calls)
        result = pipe.process(Frame(image=_frames(1)[0], stamp_ns=1))
    stats = HealthStats()
    for w in result.warnings:
        stats.pipeline_warning(w)
    assert stats.values()['events.gpu_out_of_memory'] == 1, result.warnings
    for _ in range(2):  # the degradation lasts: WARN in the following reports too
        level, message = _judge(stats)
        assert level == WARN and 'out of memory' in message


def test_rejected_frames_and_slow_processing_warn_errors_are_errors():
    stats = HealthStats()
    assert _judge(stats)[0] == OK
    bad = dict(COUNTS, received=5, rejected=2)
    assert _judge(stats, bad)[0] == WARN
    assert stats.judge(bad, {'pipeline_error': 1}, True, 'active', 't')[0] == 2
    slow = dict(bad, received=25, processed=5, dropped=18)
    level, message = stats.judge(slow, {'pipeline_error': 1}, True, 'active', 't')
    assert level == WARN and 'slower than input' in message
    level, message = stats.judge(slow, {'pipeline_error': 1}, False, 'inactive', 't')
    assert level == OK and message.startswith('inactive')


def test_throttle_lets_the_same_message_through_once_per_period():
    t = Throttle(2.0)
    assert t.allow('stamp went backwards (5 -> 3 ns)', now=10.0)
    assert not t.allow('stamp went backwards (7 -> 1 ns)', now=11.0)  # same, other numbers
    assert t.allow('resolution changed (1, 2) -> (3, 4)', now=11.0)
    assert t.allow('stamp went backwards (9 -> 2 ns)', now=12.5)


def test_unknown_warning_keeps_a_generic_code():
    assert warning_code('frame (8, 8) too small') == 'pipeline_warning'
