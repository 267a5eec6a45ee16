"""Real training tracks: labels from DAVIS masks, the cache, the mixed loader, shipped weights."""

import re

import cv2
import numpy as np
import pytest
import torch

from conftest import DAVIS
from motionseg_ros.cli import main as cli_main
from motionseg_ros.evaluation.datasets import open_dataset
from motionseg_ros.models.checkpoint import load_checkpoint
from motionseg_ros.training.real_tracks import (
    IGNORE, MOVING, STATIC, RealTrackSet, RealTracksError, cache_key, inference_setup,
    label_tracks)
from motionseg_ros.training.train import (
    TrainingError, load_training_config, open_real_tracks, sample_parts, train,
    training_sample, training_window)

SEQ = 'car-shadow'
TINY = {
    'model': {'feature_dim': 0, 'use_depth': False, 'net_channels': 16, 'decoder_ffn': 32,
              'decoder_blocks': 1, 'dim_feedforward': 32, 'geo_evidence': True,
              'ego_residual': True, 'space_keys': 16},
    'data': {'max_tracks': [16, 32], 'val_windows': 2, 'val_max_tracks': 32,
             'short_windows': 0.5,
             'real': {'ratio': 0.5, 'sequences': [SEQ], 'val_windows': 2}},
    'schedule': {'steps': 6, 'time_budget_min': 5, 'log_every': 2, 'val_every': 3,
                 'checkpoint_every': 3},
    'optim': {'warmup_steps': 1},
}


#: tiny models on a shared 2-core machine are much faster on one torch thread
pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    """Extract car-shadow's windows once for the module into a cache folder."""
    if not (DAVIS / 'JPEGImages').is_dir():
        pytest.skip(f'DAVIS-2016 not found at {DAVIS}')
    folder = tmp_path_factory.mktemp('real_cache')
    RealTrackSet(DAVIS, folder, sequences=[SEQ])
    return folder


@pytest.fixture(scope='module')
def tracks(cache):
    return RealTrackSet(DAVIS, cache, sequences=[SEQ])


def _config(cache, **real):
    over = {**TINY, 'data': {**TINY['data'], 'real': {
        **TINY['data']['real'], 'root': str(DAVIS), 'cache': str(cache), **real}}}
    return load_training_config(overrides=over)


def test_label_rules():
    vis = np.ones((5, 4), bool)
    inside = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]],
                      bool)
    near = np.zeros((5, 4), bool)
    near[2, 1] = True          # passed close to the object once: not surely static
    near[4, -1] = True         # on the object, but at its boundary now
    close = inside | near
    assert label_tracks(vis, inside, near, close).tolist() == [MOVING, STATIC, IGNORE, IGNORE,
                                                               IGNORE]
    vis[3, 1:] = False          # one visible frame, inside: moving
    assert label_tracks(vis, inside, near, close)[3] == MOVING


def test_labels_follow_the_car_mask(tracks):
    seq = open_dataset(DAVIS).select([SEQ])[0]
    counts = {MOVING: 0, STATIC: 0, IGNORE: 0}
    for index in (5, 20, 35):
        sample = tracks.window(0, index)
        gt = seq.gt(sample.meta['frame'])[0] > 0
        alive = sample.window.visible[:, -1]
        xy = np.rint(sample.window.xy[:, -1]).astype(int)
        on_car = gt[np.clip(xy[:, 1], 0, gt.shape[0] - 1), np.clip(xy[:, 0], 0, gt.shape[1] - 1)]
        lab = sample.labels
        assert on_car[alive & (lab == MOVING)].all()      # movers lie on the car now ...
        assert not on_car[alive & (lab == STATIC)].any()  # ... static tracks off it
        # a track exactly on the mask boundary (an inside pixel next to an outside one) is
        # neither: it is left out of the loss
        edge = gt & ~cv2.erode(gt.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        px = np.clip(xy, 0, [gt.shape[1] - 1, gt.shape[0] - 1])
        assert (lab[alive & edge[px[:, 1], px[:, 0]]] == IGNORE).all()
        for k in counts:
            counts[k] += int(np.count_nonzero(alive & (lab == k)))
    assert counts[MOVING] > 50 and counts[STATIC] > counts[MOVING]
    assert 0 < counts[IGNORE] < counts[MOVING]


def test_windows_are_what_the_pipeline_hands_the_classifier(tracks):
    full = tracks.window(0, 30)
    assert full.window.num_frames == 16 and full.evidence.shape == (
        full.window.num_tracks, 16, 2)
    assert tracks.window(0, 0).window.num_frames == 2     # the second frame of the stream
    short = tracks.window(0, 30, 5)
    assert short.window.num_frames == 5 and short.window.visible.any(axis=1).all()
    # shortening keeps the newest frame and the evidence of the baselines shorter than it
    ids = np.flatnonzero(full.window.visible[:, -5:].any(axis=1))
    np.testing.assert_array_equal(short.window.xy, full.window.xy[ids, -5:])
    np.testing.assert_array_equal(short.evidence, full.evidence[ids, -5:])


def test_cache_is_reused_and_keyed_by_the_setup(cache, tracks):
    logged = []
    again = RealTrackSet(DAVIS, cache, sequences=[SEQ], log=logged.append)
    assert not any('extracting' in m for m in logged)
    np.testing.assert_array_equal(again.data[0]['evidence'], tracks.data[0]['evidence'])
    other = inference_setup()
    other['tracker']['params']['max_tracks'] = 300
    assert cache_key(other, 4.0) != tracks.key != cache_key(inference_setup(), 3.0)
    assert cache_key(inference_setup(), 4.0) == tracks.key


def test_missing_root_names_the_export_script(tmp_path):
    with pytest.raises(RealTracksError, match='davis2016_train.sh'):
        RealTrackSet(tmp_path / 'nope', tmp_path / 'cache')
    cfg = load_training_config(overrides={'data': {'real': {'ratio': 0.5}}})
    with pytest.raises(TrainingError, match='davis2016_train.sh'):
        open_real_tracks(cfg)


def test_mixed_loader_draws_both_sources_at_the_ratio(cache):
    cfg = _config(cache, ratio=0.3)
    real = open_real_tracks(cfg)
    kinds = []
    for i in range(300):
        sample = training_sample(cfg, i, real)
        kinds.append('sequence' in sample.meta)
        if not kinds[-1] and i < 20:   # synthetic steps: the synthetic-only run's windows
            np.testing.assert_array_equal(sample.window.xy, training_window(cfg, i).window.xy)
    share = np.mean(kinds)
    assert 0.22 < share < 0.38
    # ignored tracks are out of the loss
    sample = next(training_sample(cfg, i, real) for i in range(300) if kinds[i])
    _, labels, keep, evidence = sample_parts(sample, 'alive')
    assert evidence is not None and not keep[sample.labels == IGNORE].any()
    assert keep.any() and labels[keep].min() == 0 and labels[keep].max() == 1


def test_tiny_mixed_training_is_deterministic(cache, tmp_path):
    cfg = _config(cache)
    first = train(cfg, tmp_path / 'a', log=lambda _: None)
    second = train(cfg, tmp_path / 'b', log=lambda _: None)
    assert first['steps'] == 6 and first['real_data']['sequences'] == [SEQ]
    assert first['final_val_real_train_windows']['auc'] == \
        second['final_val_real_train_windows']['auc']
    a = torch.load(tmp_path / 'a' / 'model.pth', weights_only=True)['model_state_dict']
    b = torch.load(tmp_path / 'b' / 'model.pth', weights_only=True)['model_state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_classifier_cli_real_flags(cache, tmp_path, capsys):
    import yaml
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(TINY))
    rc = cli_main(['train-classifier', '--config', str(path), '--output', str(tmp_path / 'o'),
                   '--steps', '2', '--real-root', str(DAVIS), '--real-ratio', '1.0',
                   '--real-cache', str(cache)])
    assert rc == 0
    saved = yaml.safe_load((tmp_path / 'o' / 'config.yaml').read_text())
    assert saved['data']['real'] == {**saved['data']['real'], 'root': str(DAVIS), 'ratio': 1.0,
                                     'cache': str(cache)}


def test_shipped_real_weights_load_strictly(tracks):
    from motionseg_ros.classifiers.moseg import MosegClassifier
    from motionseg_ros.weights import BUILTIN_DIR
    model, meta = load_checkpoint(BUILTIN_DIR / 'motion_geo_real.pth')
    real = torch.load(BUILTIN_DIR / 'motion_geo_real.pth', weights_only=True)['real_data']
    assert model.cfg.geo_evidence and real['root'] == 'davis2016_train'
    assert len(real['sequences']) == 30 and real['ratio'] == 0.5
    assert 'davis2016_train' in meta['threshold_source']
    clf = MosegClassifier(weights='builtin:motion_geo_real', threads=1)
    assert clf.threshold == meta['threshold']
    sample = tracks.window(0, 30)
    prob = clf.classify(sample.window)
    alive = sample.window.visible[:, -1]
    movers = prob[alive & (sample.labels == MOVING)]
    static = prob[alive & (sample.labels == STATIC)]
    assert np.median(movers) > np.median(static)    # the car's tracks score higher


def test_calibrate_threshold_on_a_davis_root_every_kth_frame(tmp_path, capsys):
    if not (DAVIS / 'JPEGImages').is_dir():
        pytest.skip(f'DAVIS-2016 not found at {DAVIS}')
    counts = {}
    for every in (1, 3):
        out = tmp_path / f'every{every}.pth'
        assert cli_main(['calibrate-threshold', 'builtin:motion_geo', str(DAVIS), '--sequences',
                         SEQ, '--max-frames', '10', '--every', str(every), '--output', str(out),
                         '--params', '{"threads": 1}']) == 0
        saved = torch.load(out, weights_only=True)
        assert 0.05 <= saved['threshold'] <= 0.95
        counts[every] = int(re.search(r'(\d+) tracks', saved['threshold_source']).group(1))
        assert ('every 3 frames' in saved['threshold_source']) == (every == 3)
    assert 0 < counts[3] < counts[1] / 2     # frames 3, 6, 9 of 1..9
    assert cli_main(['calibrate-threshold', 'builtin:motion_geo', str(DAVIS), '--every', '0',
                     '--output', str(tmp_path / 'x.pth')]) == 2
