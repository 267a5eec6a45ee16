"""StreamingPipeline with the default config: odd input, resets, and a real sequence."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import demo_frames

from motionseg_ros.evaluation.metrics import j_and_f
from motionseg_ros.io.sources import open_source
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.types import Frame

DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
DAVIS = DATA / 'davis2016'
NS = 33_333_333


@pytest.fixture(scope='module')
def frames():
    return demo_frames()


def test_gray_and_bgra_frames(frames):
    pipe = StreamingPipeline()
    for i, img in enumerate(frames[:4]):
        if i % 2 == 0:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
        res = pipe.process(Frame(img, i * NS, index=i))
        assert res.image_size == frames[0].shape[:2]
        assert res.label_image().shape == frames[0].shape[:2]
    assert res.tracks.num_tracks > 50


def test_tiny_frame_gives_empty_result():
    pipe = StreamingPipeline()
    res = pipe.process(Frame(np.zeros((1, 1, 3), np.uint8), 0))
    assert res.objects == [] and res.warnings
    assert res.label_image().shape == (1, 1)


def test_black_frames_give_empty_results():
    pipe = StreamingPipeline()
    for i in range(4):
        res = pipe.process(Frame(np.zeros((120, 160, 3), np.uint8), i * NS, index=i))
        assert res.objects == []
        assert res.tracks.num_tracks == 0
        assert not res.label_image().any()


def test_resolution_change_resets_and_goes_on(frames):
    pipe = StreamingPipeline()
    for i, img in enumerate(frames[:3]):
        pipe.process(Frame(img, i * NS, index=i))
    small = cv2.resize(frames[3], (320, 180))
    res = pipe.process(Frame(small, 3 * NS, index=3))
    assert any('resolution changed' in w for w in res.warnings)
    assert pipe.resets == 1
    res = pipe.process(Frame(cv2.resize(frames[4], (320, 180)), 4 * NS, index=4))
    assert res.image_size == (180, 320)
    assert res.tracks.num_tracks > 0


def test_stamps_backwards_reset(frames):
    pipe = StreamingPipeline()
    for i, img in enumerate(frames[:3]):
        pipe.process(Frame(img, (10 + i) * NS, index=i))
    res = pipe.process(Frame(frames[3], 0, index=3))
    assert any('backwards' in w for w in res.warnings)
    assert pipe.resets == 1
    assert res.tracks.num_frames == 1


def test_reset_and_ids_unique(frames):
    pipe = StreamingPipeline()
    for i, img in enumerate(frames):
        res = pipe.process(Frame(img, i * NS, index=i))
    ids_before = set(res.tracks.ids.tolist())
    pipe.reset()
    res = pipe.process(Frame(frames[0], 0))
    assert res.tracks.num_frames == 1
    assert not ids_before & set(res.tracks.ids.tolist())


def test_demo_clip_finds_moving_objects(frames):
    pipe = StreamingPipeline()
    found = 0
    for i, img in enumerate(demo_frames(20)):
        res = pipe.process(Frame(img, i * NS, index=i))
        found += bool(res.objects)
        labels = res.label_image()
        assert labels.dtype == np.uint8
        assert set(np.unique(labels)) <= set(range(len(res.objects) + 1))
    assert found >= 15


@pytest.mark.skipif(not (DAVIS / 'JPEGImages' / '480p' / 'dog').is_dir(),
                    reason='shared DAVIS data absent')
def dog_scores(pipe, frames=25):
    """Per-frame J&F and dynamic-track counts of ``pipe`` on the first DAVIS dog frames."""
    scores, dynamic = [], []
    for i, frame in enumerate(open_source(DAVIS / 'JPEGImages' / '480p' / 'dog')):
        if i >= frames:
            break
        res = pipe.process(frame)
        gt = cv2.imread(str(DAVIS / 'Annotations' / '480p' / 'dog' / f'{frame.name}.png'),
                        cv2.IMREAD_GRAYSCALE) > 127
        scores.append(j_and_f(res.foreground(), gt)[2])
        dynamic.append(int(np.count_nonzero(res.dynamic)))
    return scores, dynamic


def test_davis_dog_first_frames_above_floor():
    """The default: the shipped motion_geo weights in the CPU pipeline."""
    if not DAVIS.is_dir():
        pytest.skip(f'shared data not found: {DAVIS}')
    pipe = StreamingPipeline()
    assert type(pipe.stages['classifier']).__name__ == 'MosegClassifier'
    scores, dynamic = dog_scores(pipe)
    pipe.close()
    assert max(dynamic) > 10
    assert np.mean(scores) > 0.45, np.mean(scores)


def test_geometric_profile_on_davis_dog_above_floor():
    """config/geometric.yaml: the weights-free, torch-free classifier."""
    from motionseg_ros.config import load_config
    if not DAVIS.is_dir():
        pytest.skip(f'shared data not found: {DAVIS}')
    cfg = load_config('geometric.yaml')
    params = {'threshold', 'baselines', 'ransac_px', 'z0', 'use_epipolar', 'threads'}
    assert set(cfg['classifier']['params']) == params   # nothing of the default's moseg
    scores, _ = dog_scores(StreamingPipeline(cfg))
    assert np.mean(scores) > 0.45, np.mean(scores)  # 0.58 measured
