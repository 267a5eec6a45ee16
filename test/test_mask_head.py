"""The mask head densifier: its inputs, its checkpoints, the shipped weights, its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DAVIS, DAVIS_TRAIN, REPO, require_data

from motionseg_ros.config import load_config
from motionseg_ros.densifiers.mask_head import NEW_ID_BASE, MaskHeadDensifier
from motionseg_ros.densifiers.mask_head_inputs import CHANNELS, LEVEL, TRACK_COVER
from motionseg_ros.evaluation.datasets import open_dataset
from motionseg_ros.models.mask_head import MaskHeadNet, load_mask_head, num_params, save_mask_head
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.training.mask_head_data import (RECORDED, SequenceInputs, corrupt_mask,
                                                   record_sequence, recording_config)
from motionseg_ros.training.mask_head_train import (TrainingError, load_training_config,
                                                    train)
from motionseg_ros.types import Frame
from motionseg_ros.weights import WeightsError


@pytest.fixture(scope='module')
def car_shadow():
    return open_dataset(require_data(DAVIS)).sequences['car-shadow']


@pytest.fixture(scope='module')
def recorded(car_shadow, tmp_path_factory):
    """Five frames of car-shadow through the real pipeline with the recording densifier."""
    out = tmp_path_factory.mktemp('rec') / 'car-shadow.npz'
    record_sequence(car_shadow.truncated(5), recording_config(), 0.25, out)
    return SequenceInputs.load(out)


def test_inputs_have_their_shapes_and_the_moving_car_stands_out(recorded, car_shadow):
    assert recorded.inputs.shape == (4, RECORDED, 120, 214)   # the first frame has no flow
    assert recorded.flow.shape == (4, 2, 120, 214) and recorded.gt.shape == (5, 120, 214)
    assert list(recorded.index) == [1, 2, 3, 4]
    x = recorded.inputs[-1].astype(np.float32)
    assert np.isfinite(x).all()
    car = recorded.target(3) > 0.5
    assert car.sum() > 200
    # residual motion is higher on the car than on the background the camera follows
    assert x[LEVEL][car].mean() > x[LEVEL][~car].mean() + 0.2
    assert 0.0 <= x[TRACK_COVER].min() and x[TRACK_COVER].max() <= 1.0
    assert x[TRACK_COVER].mean() > 0.3   # the tracker covers most of the frame
    # the previous ground truth, warped by the recorded flow, lands on the current car
    warped = recorded.previous_gt_warped(3) > 0.5
    assert (warped & car).sum() / max(1, (warped | car).sum()) > 0.8


def test_corruption_keeps_the_mask_near_but_not_equal():
    m = np.zeros((120, 214), np.float32)
    m[40:80, 60:140] = 1
    rng = np.random.default_rng(0)
    outs = [corrupt_mask(m, rng) for _ in range(200)]
    dropped = sum(not o.any() for o in outs)
    assert 30 < dropped < 90   # about 30 %
    kept = [o for o in outs if o.any()]
    ious = [((o > 0.5) & (m > 0)).sum() / ((o > 0.5) | (m > 0)).sum() for o in kept]
    assert 0.5 < np.mean(ious) < 0.99 and min(ious) < 0.9


def test_model_size_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MaskHeadNet(CHANNELS).eval()
    assert 380_000 < num_params(model) < 395_000
    x = torch.randn(1, CHANNELS, 120, 214)
    path = save_mask_head(model, tmp_path / 'm.pth', 0.42, {'note': 'test'})
    loaded, threshold, meta = load_mask_head(path, CHANNELS)
    assert threshold == pytest.approx(0.42) and meta == {'note': 'test'}
    with torch.inference_mode():
        assert loaded(x).shape == (1, 1, 120, 214)
        assert torch.equal(model(x), loaded(x))


def test_mismatched_checkpoints_are_refused_naming_the_file(tmp_path):
    nine = save_mask_head(MaskHeadNet(9), tmp_path / 'nine.pth', 0.5)
    with pytest.raises(WeightsError, match=r'nine\.pth.*9 input channels'):
        load_mask_head(nine, CHANNELS)
    ckpt = torch.load(save_mask_head(MaskHeadNet(CHANNELS), tmp_path / 'a.pth', 0.5))
    ckpt['state_dict'].pop('head.bias')
    torch.save(ckpt, tmp_path / 'broken.pth')
    with pytest.raises(WeightsError, match=r'broken\.pth.*state dict'):
        load_mask_head(tmp_path / 'broken.pth', CHANNELS)
    torch.save({'weights': torch.zeros(3)}, tmp_path / 'other.pth')
    with pytest.raises(WeightsError, match=r'other\.pth.*not a mask head checkpoint'):
        load_mask_head(tmp_path / 'other.pth', CHANNELS)


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match='densifier mask_head.*nowhere.pth.*not found'):
        MaskHeadDensifier(weights=str(tmp_path / 'nowhere.pth'))
    with pytest.raises(WeightsError, match="no built-in weights 'nothing'"):
        MaskHeadDensifier(weights='builtin:nothing')


def test_shipped_weights_find_the_car(car_shadow):
    """End to end on a DAVIS val clip (reporting data, nothing is chosen here)."""
    pipe = StreamingPipeline(load_config())
    ious = []
    try:
        assert pipe.backends['densifier'] == 'mask_head'
        for i in range(12):
            result = pipe.process(Frame(image=car_shadow.image(i), stamp_ns=int(i * 1e9 / 24),
                                        index=i))
            if i >= 6:
                pred = result.label_image() > 0
                gt = car_shadow.gt(i)[0] > 0
                ious.append((pred & gt).sum() / max(1, (pred | gt).sum()))
                assert all(o.id >= 0 for o in result.objects)
        densifier = pipe.stages['densifier']
        assert 0.0 < densifier.threshold < 1.0   # the stored one
        pipe.set_params({'densifier.threshold': 0.6})
        assert densifier.threshold == 0.6
    finally:
        pipe.close()
    assert np.mean(ious) > 0.5, ious


def test_components_without_evidence_get_new_ids_above_grouping(car_shadow, tmp_path):
    torch.manual_seed(0)
    path = save_mask_head(MaskHeadNet(CHANNELS), tmp_path / 'random.pth', 0.5)
    densifier = MaskHeadDensifier(weights=str(path), min_area=0.0)
    from motionseg_ros.types import TrackWindow
    empty = TrackWindow(ids=np.zeros(0, np.int64), xy=np.zeros((0, 1, 2), np.float32),
                        visible=np.zeros((0, 1), bool), confidence=np.zeros((0, 1), np.float32),
                        stamps_ns=np.zeros(1, np.int64), image_size=(480, 854))
    from motionseg_ros.stages import StageContext
    ctx = StageContext()
    none = np.zeros(0)
    outs = []
    for i in range(2):
        frame = Frame(image=car_shadow.image(i), stamp_ns=i, index=i)
        outs.append(densifier.densify(frame, empty, none.astype(bool), none.astype(np.int64),
                                      none.astype(np.float32), ctx))
    densifier.close()
    assert outs[0] == []   # a first frame has no flow
    # an untrained net and no tracks: whatever it finds is new, with ids out of grouping's way
    assert all(o.id >= NEW_ID_BASE for o in outs[1])


def test_tiny_training_is_deterministic_and_missing_data_is_named(tmp_path):
    cache = tmp_path / 'cache'
    train_root = DAVIS_TRAIN
    root = train_root if train_root.is_dir() else require_data(DAVIS)
    overrides = {'data': {'sequences': ['bear'] if root == train_root else ['car-shadow'],
                          'max_frames': 4, 'jobs': 1},
                 'optim': {'batch': 2, 'warmup_steps': 1},
                 'schedule': {'steps': 3, 'log_every': 1, 'checkpoint_every': 2},
                 'threshold': {'candidates': [0.4, 0.5]}}
    cfg = load_training_config(REPO / 'config' / 'training' / 'mask_head.yaml', overrides)
    runs = [train(cfg, root, cache, tmp_path / f'run{k}', log=lambda m: None) for k in (0, 1)]
    assert runs[0]['steps'] == 3 and runs[0]['threshold'] in (0.4, 0.5)
    a = torch.load(tmp_path / 'run0' / 'model.pth')['state_dict']
    b = torch.load(tmp_path / 'run1' / 'model.pth')['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / 'run0' / 'step_00002.pth').is_file()
    with pytest.raises(TrainingError, match='davis2016_train.sh'):
        train(cfg, tmp_path / 'no_such_root', cache, tmp_path / 'run2', log=lambda m: None)
    with pytest.raises(TrainingError, match="unknown training option schedule.'stepz'"):
        load_training_config(None, {'schedule': {'stepz': 1}})
