"""Flow densifier: the helper-thread prefetch gives the same masks, and runs repeat exactly.

The flow densifier is `config/geometric.yaml`'s (the default's is the learned mask head).
"""

import numpy as np
import pytest
from conftest import demo_frames

from motionseg_ros.config import load_config
from motionseg_ros.densifiers.flow import FlowDensifier
from motionseg_ros.densifiers.flow_params import FlowParams
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.types import Frame

NS = 33_333_333


def flow_pipeline() -> StreamingPipeline:
    """The packaged profile that uses the flow densifier."""
    return StreamingPipeline(load_config('geometric.yaml'))


@pytest.fixture(scope='module')
def frames():
    return demo_frames(12)


def run(frames, prefetch: bool):
    pipe = flow_pipeline()
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
    pipe = flow_pipeline()
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


def test_split_grabcut_matches_whole():
    """GrabCut on two overlapping halves (two cores) gives nearly the whole crop's mask."""
    rng = np.random.default_rng(0)
    h, w = 150, 200
    img = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)  # grey clutter
    yy, xx = np.mgrid[:h, :w]
    obj = ((xx - 100) / 70.0) ** 2 + ((yy - 75) / 45.0) ** 2 < 1.0  # an ellipse across both
    img[obj] = (rng.random((int(obj.sum()), 3)) * 40 + (30, 40, 190)).astype(np.uint8)
    prior = ((xx - 104) / 76.0) ** 2 + ((yy - 72) / 50.0) ** 2 < 1.0  # a loose flow mask
    fg = np.stack([xx[obj][::97], yy[obj][::97]], 1).astype(float)
    bg = np.array([[5.0, 5.0], [190.0, 140.0]])
    masks = {}
    for split in (0, 4000):
        dens = FlowDensifier(grabcut_split_px=split, grabcut_side=400)
        masks[split] = dens.refiner.refine(img, prior, fg, bg, oid=1)
        assert set(k[1] for k in dens.refiner.gmm) == ({0} if split == 0 else {1, 2})
        dens.close()
    inter = np.logical_and(masks[0], masks[4000]).sum()
    union = np.logical_or(masks[0], masks[4000]).sum()
    assert inter / union > 0.97
    for m in masks.values():  # both cut the loose prior back to the object
        assert np.logical_and(m, obj).sum() / np.logical_or(m, obj).sum() > 0.9


@pytest.mark.parametrize('key, value', [('densifier.scale', 0.25), ('densifier.preset', 'fast'),
                                        ('densifier.refine_iters', 3)])
def test_construction_only_parameters_are_refused_between_frames(frames, key, value):
    """A change the flow state cannot follow is refused; the stream goes on unharmed."""
    pipe = flow_pipeline()
    for i, img in enumerate(frames[:3]):
        pipe.process(Frame(img, i * NS, index=i))
    with pytest.raises(ValueError, match=rf"no run-time parameter '{key.split('.')[1]}'"):
        pipe.set_params({key: value})
    dens = pipe.stages['densifier']
    assert dens.params.scale == 0.5 and dens.params.preset == 'medium'
    res = pipe.process(Frame(frames[3], 3 * NS, index=3))
    assert res.label_image().shape == frames[0].shape[:2]
    pipe.close()


def test_params_dataclass_is_built_from_the_config():
    cfg = load_config('geometric.yaml')
    dens = FlowDensifier(**cfg['densifier']['params'])
    assert dens.params == FlowParams(**cfg['densifier']['params'])
    assert FlowDensifier(FlowParams(grabcut=False), grow=0.5).params == \
        FlowParams(grabcut=False, grow=0.5)
    with pytest.raises(ValueError, match=r"unknown parameters \['grabcut_sid'\]"):
        FlowDensifier(grabcut_sid=200)
    assert FlowDensifier(grabcut='false').params.grabcut is False  # parsed, not truthy
    with pytest.raises(ValueError, match=r'grabcut must be true or false'):
        FlowDensifier(grabcut='no')
    dens.close()
