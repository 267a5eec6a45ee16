"""Training: loss, metrics, a tiny resumable run, the CLI."""

import json

import numpy as np
import pytest
import torch

from motionseg_ros.cli import main as cli_main
from motionseg_ros.models.checkpoint import load_checkpoint
from motionseg_ros.training.train import (
    TrainingError, load_training_config, roc_auc, train, training_window, weighted_bce)


#: tiny models on a shared 2-core machine are much faster on one torch thread
pytestmark = pytest.mark.usefixtures('one_torch_thread')


TINY = {
    'model': {'feature_dim': 0, 'use_depth': True, 'net_channels': 16, 'decoder_ffn': 32,
              'decoder_blocks': 1, 'dim_feedforward': 32},
    'data': {'max_tracks': [16, 32], 'val_windows': 2, 'val_max_tracks': 32,
             'depth_drop': 0.5},
    'schedule': {'steps': 4, 'time_budget_min': 5, 'log_every': 2, 'val_every': 2,
                 'checkpoint_every': 2},
    'optim': {'warmup_steps': 1},
}


def test_roc_auc_known_values():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1])) == 0.5
    assert np.isnan(roc_auc(np.array([0.3, 0.4]), np.array([1, 1])))


def test_weighted_bce_balances_classes():
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0])
    logits = torch.zeros(4)
    # pos weight 3: the positive term counts three times
    expected = (3 * np.log(2) + 3 * np.log(2)) / 4
    assert abs(float(weighted_bce(logits, labels)) - expected) < 1e-6


def test_short_windows_sets_the_share_of_windows_under_16_frames():
    def lengths(share):
        cfg = load_training_config(overrides={'data': {'short_windows': share}})
        return np.array([training_window(cfg, i).window.num_frames for i in range(40)])

    assert (lengths(0.0) == 16).all()
    short = lengths(1.0)
    assert (short < 16).all() and (short >= 2).all() and len(set(short.tolist())) > 5
    half = lengths(0.5)
    assert 8 <= int(np.count_nonzero(half < 16)) <= 32
    generator = lengths(None)     # the generator's own draw: 1 in 4 short
    assert int(np.count_nonzero(generator < 16)) < int(np.count_nonzero(half < 16))


def test_unknown_options_are_rejected(tmp_path):
    with pytest.raises(TrainingError, match='unknown training option'):
        load_training_config(overrides={'optim': {'lrr': 1}})
    with pytest.raises(ValueError, match='unknown moseg model option'):
        load_training_config(overrides={'model': {'layers': 3}})
    with pytest.raises(TrainingError, match='not found'):
        load_training_config(tmp_path / 'nope.yaml')


def test_tiny_run_logs_checkpoints_and_resumes(tmp_path):
    out = tmp_path / 'run'
    cfg = load_training_config(overrides=TINY)
    summary = train(cfg, out, log=lambda m: None)
    assert summary['steps'] == 4
    for name in ('config.yaml', 'train_log.jsonl', 'val_log.csv', 'last.pth', 'model.pth',
                 'best.pth', 'summary.json'):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / 'train_log.jsonl').read_text().splitlines()]
    assert [x['step'] for x in lines] == [2, 4]
    model, meta = load_checkpoint(out / 'model.pth')
    assert model.cfg.net_channels == 16 and meta['generator_version']
    with pytest.raises(TrainingError, match='not empty'):
        train(cfg, out, log=lambda m: None)
    cfg2 = load_training_config(overrides={**TINY, 'schedule': {**TINY['schedule'],
                                                                'steps': 6}})
    summary2 = train(cfg2, out, resume=True, log=lambda m: None)
    assert summary2['steps'] == 6
    lines = [json.loads(x) for x in (out / 'train_log.jsonl').read_text().splitlines()]
    assert [x['step'] for x in lines] == [2, 4, 6]


def test_resume_gives_the_same_weights_as_one_run(tmp_path):
    cfg = load_training_config(overrides=TINY)
    train(cfg, tmp_path / 'a', log=lambda m: None)
    half = load_training_config(overrides={**TINY, 'schedule': {**TINY['schedule'],
                                                                'steps': 2}})
    train(half, tmp_path / 'b', log=lambda m: None)
    train(cfg, tmp_path / 'b', resume=True, log=lambda m: None)
    a, _ = load_checkpoint(tmp_path / 'a' / 'model.pth')
    b, _ = load_checkpoint(tmp_path / 'b' / 'model.pth')
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-6), k


def test_cli_reports_bad_input(tmp_path, capsys):
    assert cli_main(['train-classifier', '--config', str(tmp_path / 'x.yaml'),
                     '--output', str(tmp_path / 'o')]) == 2
    assert 'training config not found' in capsys.readouterr().err
    (tmp_path / 'o').mkdir()
    (tmp_path / 'o' / 'f').write_text('x')
    cfg = tmp_path / 'c.yaml'
    cfg.write_text('seed: 1\n')
    assert cli_main(['train-classifier', '--config', str(cfg), '--output',
                     str(tmp_path / 'o'), '--resume']) == 2
    assert 'cannot resume' in capsys.readouterr().err
