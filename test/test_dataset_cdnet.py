"""CDnet 2014 layout: movers, static shadows, void labels, temporal ROI; eval-classifier on it."""

import json

import cv2
import numpy as np
from conftest import SHARED_DATA, require_data

from motionseg_ros.cli import main
from motionseg_ros.evaluation.datasets import detect_layout, open_dataset


def write_cdnet(root, frames=6, roi=None):
    (root / 'input').mkdir(parents=True)
    (root / 'groundtruth').mkdir()
    for i in range(1, frames + 1):
        cv2.imwrite(str(root / 'input' / f'in{i:06d}.jpg'), np.full((24, 32, 3), 9 * i, np.uint8))
        gt = np.zeros((24, 32), np.uint8)
        gt[2:6, 2:6] = 255     # moving
        gt[8:12, 2:6] = 50     # hard shadow: static
        gt[14:18, 2:6] = 170   # unknown (boundary): void
        gt[20:24, :] = 85      # outside the ROI: void
        cv2.imwrite(str(root / 'groundtruth' / f'gt{i:06d}.png'), gt)
    if roi is not None:
        (root / 'temporalROI.txt').write_text(f'{roi[0]} {roi[1]}\n')


def test_cdnet_labels_void_and_temporal_roi(tmp_path):
    write_cdnet(tmp_path / 'highway', roi=(3, 5))
    assert detect_layout(tmp_path / 'highway') == 'cdnet'
    assert detect_layout(tmp_path) == 'cdnet'     # a folder of categories
    seq = open_dataset(tmp_path).sequences['highway']
    assert len(seq) == 6 and seq.annotated == [2, 3, 4]   # frames 3..5 (1-based) only
    labels, void = seq.gt(2)
    assert labels[3, 3] == 1 and labels[9, 3] == 0 and labels[0, 20] == 0
    assert void[15, 3] and void[21, 10] and not void[3, 3] and not void[9, 3]
    assert labels[void].max() == 0


def test_eval_classifier_on_the_cdnet_highway_slice(tmp_path, capsys):
    root = require_data(SHARED_DATA / 'cdnet2014_highway')
    (tmp_path / 'geo.yaml').write_text('classifier: {name: geometric, params: {threads: 1}}\n')
    out = tmp_path / 'figures.json'
    assert main(['eval-classifier', str(root), '--max-frames', '30', '--classifier-config',
                 str(tmp_path / 'geo.yaml'), '--json', str(out)]) == 0
    assert 'geo: pooled F1' in capsys.readouterr().out
    res = json.loads(out.read_text())['results']['geo']['cdnet2014_highway']
    # a static camera: cars are the only movers, and the geometric classifier finds them
    assert 0 < res['moving'] < res['tracks'] and res['auc'] > 0.8 and res['recall'] > 0.6
    # tracks on void pixels (boundaries, outside the ROI) are left out of the scoring
    seq = open_dataset(root).sequences['cdnet2014_highway']
    assert any(seq.gt(i)[1] is not None for i in range(30))


def test_calibrate_threshold_writes_the_best_f1_threshold(tmp_path, capsys):
    import torch

    from motionseg_ros.classifiers.moseg import MosegClassifier
    from motionseg_ros.models.moseg import MosegConfig, MosegModel, save_checkpoint
    from motionseg_ros.training.train import best_f1_threshold
    root = require_data(SHARED_DATA / 'cdnet2014_highway')
    torch.manual_seed(0)
    model = MosegModel(MosegConfig(feature_dim=0, use_depth=False, geo_evidence=True,
                                   space_keys=16, net_channels=16, decoder_ffn=32,
                                   decoder_blocks=1, num_encoder_layers=1,
                                   num_decoder_layers=1))
    save_checkpoint(tmp_path / 'tiny.pth', model, threshold=0.5)
    out = tmp_path / 'calibrated.pth'
    assert main(['calibrate-threshold', str(tmp_path / 'tiny.pth'), str(root), '--output',
                 str(out), '--max-frames', '12', '--params', '{"threads": 1}']) == 0
    assert 'written to' in capsys.readouterr().out
    saved = torch.load(str(out), weights_only=True)
    assert 'cdnet2014_highway' in saved['threshold_source']
    # the stored threshold is the best-F1 one of the same tracks, scored independently here
    json_out = tmp_path / 'scores.npz'
    (tmp_path / 'tiny.yaml').write_text(
        f"classifier: {{name: moseg, params: {{weights: '{tmp_path / 'tiny.pth'}', "
        "threads: 1}}\n")
    assert main(['eval-classifier', str(root), '--max-frames', '12', '--classifier-config',
                 str(tmp_path / 'tiny.yaml'), '--save-scores', str(json_out)]) == 0
    scores = np.load(json_out)
    prob = scores['tiny|cdnet2014_highway|prob']
    lab = scores['tiny|cdnet2014_highway|lab'] > 0.5
    assert saved['threshold'] == best_f1_threshold(prob, lab)[0]
    assert MosegClassifier(weights=str(out), threads=1).threshold == saved['threshold']
    assert main(['calibrate-threshold', str(out), str(root), '--output', str(out)]) == 2
