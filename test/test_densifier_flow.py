"""Flow densifier: the helper-thread prefetch gives the same masks, and runs repeat exactly."""

from pathlib import Path

import numpy as np
import pytest

from motionseg_ros.densifiers.flow import FlowDensifier
from motionseg_ros.io.sources import open_source
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.types import Frame

DEMO = Path(__file__).resolve().parents[1] / 'motionseg_ros' / 'assets' / 'demo.mp4'
NS = 33_333_333


@pytest.fixture(scope='module')
def frames():
    out = []
    for f in open_source(DEMO):
        out.append(f.image)
        if len(out) == 12:
            break
    return out


def run(frames, prefetch: bool):
    pipe = StreamingPipeline()
    if not prefetch:  # without prepare, densify computes the flows itself
        pipe.stages['densifier'].prepare = lambda frame, ctx=None: None
    labels = [pipe.process(Frame(img, i * NS, index=i)).label_image() for i, img in
              enumerate(frames)]
    pipe.close()
    return labels


def test_prefetch_matches_inline_and_repeats(frames):
    a = run(frames, True)
    b = run(frames, True)
    c = run(frames, False)
    assert any(x.any() for x in a)  # the demo's moving objects are found
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x, y)
        assert np.array_equal(x, z)


def test_prepare_for_a_frame_never_densified_is_dropped(frames):
    pipe = StreamingPipeline()
    dens = pipe.stages['densifier']
    assert isinstance(dens, FlowDensifier)
    for i, img in enumerate(frames[:3]):
        pipe.process(Frame(img, i * NS, index=i))
    dens.prepare(Frame(frames[3], 3 * NS, index=3))  # e.g. the tracker raised afterwards
    res = pipe.process(Frame(frames[4], 4 * NS, index=4))
    assert res.label_image().shape == frames[0].shape[:2]
    pipe.close()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match='preset'):
        FlowDensifier(preset='slow')
    with pytest.raises(ValueError, match='scale'):
        FlowDensifier(scale=2.0)
