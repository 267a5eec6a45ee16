"""Weights resolution (clear errors naming the file) and ``motionseg fetch-weights --dry-run``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from motionseg_ros.weights import (ENV_VAR, WeightsError, resolve_device, resolve_dtype,
                                   resolve_weights)


def test_missing_file_names_it_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(WeightsError) as err:
        resolve_weights('sam2.1-hiera-tiny', 'densifier sam2', kind='dir',
                        hub_id='facebook/sam2.1-hiera-tiny')
    msg = str(err.value)
    assert 'sam2.1-hiera-tiny' in msg and str(tmp_path) in msg
    assert 'motionseg fetch-weights --config gpu.yaml' in msg
    assert 'facebook/sam2.1-hiera-tiny' in msg
    with pytest.raises(WeightsError, match='no weights configured'):
        resolve_weights('', 'features dinov2')


def test_relative_names_resolve_under_the_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    folder = tmp_path / 'dinov2-small'
    folder.mkdir()
    with pytest.raises(WeightsError, match='config.json'):
        resolve_weights('dinov2-small', 'features dinov2', kind='dir')
    (folder / 'config.json').write_text('{}')
    assert resolve_weights('dinov2-small', 'features dinov2', kind='dir') == folder
    assert resolve_weights(str(folder), 'features dinov2', kind='dir') == folder
    ckpt = tmp_path / 'cotracker3' / 'scaled_online.pth'
    ckpt.parent.mkdir()
    ckpt.write_bytes(b'x')
    assert resolve_weights('cotracker3/scaled_online.pth', 'tracker', kind='file') == ckpt
    with pytest.raises(WeightsError, match='not a file'):
        resolve_weights('cotracker3', 'tracker', kind='file')


def test_builtin_names_resolve_to_the_shipped_files():
    from motionseg_ros.weights import BUILTIN_DIR
    assert resolve_weights('builtin:motion_geo', 'classifier moseg') == \
        BUILTIN_DIR / 'motion_geo.pth'
    with pytest.raises(WeightsError, match=r"no built-in weights 'nope'.*motion_geo"):
        resolve_weights('builtin:nope', 'classifier moseg')


def test_device_and_dtype_choices():
    import torch
    assert resolve_device('cpu') == 'cpu'
    assert resolve_device('auto') in ('cpu', 'cuda')
    assert resolve_dtype('auto', 'cpu') == torch.float32
    assert resolve_dtype('bf16', 'cpu') == torch.bfloat16
    with pytest.raises(ValueError, match='dtype'):
        resolve_dtype('int3', 'cpu')
    with pytest.raises(ValueError, match='device'):
        resolve_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA'):
            resolve_device('cuda')


def test_backends_report_missing_weights(tmp_path, monkeypatch):
    pytest.importorskip('transformers')
    from motionseg_ros import registry
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    for kind, name, value in (('densifier', 'sam2', 'sam2.1-hiera-tiny'),
                              ('features', 'dinov2', 'dinov2-base'),
                              ('depth', 'depth_anything', 'depth-anything-v2-small')):
        with pytest.raises(WeightsError, match=value):
            registry.create(kind, name, {'model': value})


def run_cli(*args):
    """The real command line in a subprocess (stdin is not a terminal there)."""
    return subprocess.run([sys.executable, '-m', 'motionseg_ros', *args], cwd=str(REPO),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_fetch_weights_dry_run_lists_ids_sizes_licences(tmp_path):
    res = run_cli('fetch-weights', '--config', 'gpu.yaml', '--dest', str(tmp_path), '--dry-run')
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for expected in ('facebook/sam2.1-hiera-tiny', 'facebook/dinov2-base',
                     'depth-anything/Depth-Anything-V2-Small-hf', 'Changearthmore/moseg',
                     'scaled_online.pth', 'CC-BY-NC-4.0', 'Apache-2.0', 'MB', str(tmp_path)):
        assert expected in out, out
    assert list(tmp_path.iterdir()) == []          # a dry run writes nothing


def test_fetch_weights_refuses_without_yes_off_a_terminal(tmp_path):
    res = run_cli('fetch-weights', '--config', 'gpu.yaml', '--dest', str(tmp_path))
    assert res.returncode == 2 and '--yes' in res.stderr
    bad = run_cli('fetch-weights', '--config', str(tmp_path / 'nope.yaml'), '--dry-run')
    assert bad.returncode == 2 and 'nope.yaml' in bad.stderr
