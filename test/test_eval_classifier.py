"""``motionseg eval-classifier`` on real DAVIS frames: tracks, labels, figures per classifier."""

import json

import numpy as np
import torch

from motionseg_ros.cli import main
from motionseg_ros.models.checkpoint import save_checkpoint
from motionseg_ros.models.config import MosegConfig
from motionseg_ros.models.moseg import MosegModel


def test_eval_classifier_scores_learned_and_geometric(davis_root, tmp_path, capsys):
    torch.manual_seed(0)
    model = MosegModel(MosegConfig(feature_dim=0, use_depth=False, ego_residual=True,
                                   geo_evidence=True, space_keys=32, net_channels=32,
                                   decoder_ffn=64, decoder_blocks=1, num_encoder_layers=1,
                                   num_decoder_layers=1))
    save_checkpoint(tmp_path / 'tiny.pth', model)
    (tmp_path / 'geo.yaml').write_text('classifier: {name: geometric, params: {threads: 1}}\n')
    (tmp_path / 'tiny.yaml').write_text(
        f"classifier: {{name: moseg, params: {{weights: '{tmp_path / 'tiny.pth'}', "
        "threads: 1, group_size: 200}}\n")
    out = tmp_path / 'figures.json'
    rc = main(['eval-classifier', str(davis_root), '--sequences', 'car-shadow',
               '--max-frames', '24', '--classifier-config', str(tmp_path / 'geo.yaml'),
               str(tmp_path / 'tiny.yaml'), '--json', str(out),
               '--save-scores', str(tmp_path / 'scores.npz')])
    assert rc == 0
    printed = capsys.readouterr().out
    assert 'geo: pooled F1' in printed and 'tiny: pooled F1' in printed
    res = json.loads(out.read_text())['results']
    geo, tiny = res['geo'], res['tiny']
    assert geo['car-shadow']['tracks'] == tiny['car-shadow']['tracks'] > 1000
    assert 0 < geo['car-shadow']['moving'] < geo['car-shadow']['tracks']
    # the car is easy for the geometric classifier (0.96 on the whole sequence)
    assert geo['overall']['auc'] > 0.85 and geo['overall']['recall'] > 0.8
    assert 0.0 <= tiny['overall']['auc'] <= 1.0       # an untrained model: any ranking
    scores = np.load(tmp_path / 'scores.npz')
    assert scores['tiny|car-shadow|prob'].shape == scores['geo|car-shadow|lab'].shape
