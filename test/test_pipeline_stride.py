"""The classification stride (the default runs its classifier every 2nd frame).

Between classifier runs a track keeps the probability of the last run by its id (a track born
in between gets 0), and on the frames the classifier runs the decisions are those of the full
computation: the same pipeline with stride 1 fed the same frames agrees there when the
classifier's state cannot differ (a fresh classifier on every run, below).
"""

import numpy as np
import pytest
from conftest import demo_frames

from motionseg_ros.config import load_config
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.types import Frame

NS = 33_333_333
FRAMES = 14


@pytest.fixture(scope='module')
def frames():
    return demo_frames(FRAMES)


def run(frames, stride: int, stateless: bool = False):
    """Run geometric.yaml (cheap, torch-free) at ``stride``; ``stateless``: the classifier
    forgets its per-track smoothing before every run, so its output depends on the window
    alone."""
    pipe = StreamingPipeline(load_config('geometric.yaml', [f'pipeline.stride={stride}']))
    clf = pipe.stages['classifier']
    results = []
    for i, img in enumerate(frames):
        if stateless:
            clf.reset()
        results.append(pipe.process(Frame(img, i * NS, index=i)))
    pipe.close()
    return results


def test_default_config_runs_the_classifier_every_second_frame():
    assert load_config()['pipeline']['stride'] == 2


def test_probabilities_are_carried_by_track_id_between_runs(frames):
    res = run(frames, 2)
    assert [r.classified for r in res] == [i % 2 == 0 for i in range(FRAMES)]
    carried = 0
    for prev, cur in zip(res[::2], res[1::2]):
        last = dict(zip(prev.tracks.ids.tolist(), prev.dynamic_probability.tolist()))
        for tid, p in zip(cur.tracks.ids.tolist(), cur.dynamic_probability.tolist()):
            assert p == pytest.approx(last.get(tid, 0.0), abs=0.0)
            carried += tid in last
        assert np.array_equal(cur.dynamic, cur.dynamic_probability >= 0.5)
    assert carried > 100


def test_classified_frames_agree_with_the_full_computation(frames):
    full = run(frames, 1, stateless=True)
    strided = run(frames, 2, stateless=True)
    assert any(r.dynamic.any() for r in full)  # the demo's movers are found
    for i in range(0, FRAMES, 2):
        assert np.array_equal(full[i].tracks.ids, strided[i].tracks.ids)
        assert np.array_equal(full[i].dynamic_probability, strided[i].dynamic_probability)
        assert np.array_equal(full[i].dynamic, strided[i].dynamic)
