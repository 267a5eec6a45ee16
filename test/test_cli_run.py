"""``motionseg run`` end to end on the packaged demo clip, and its errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motionseg_ros.cli import main
from motionseg_ros.io.sources import SourceError, open_source

DEMO = Path(__file__).resolve().parents[1] / 'motionseg_ros' / 'assets' / 'demo.mp4'


def test_run_demo_writes_outputs(tmp_path, capsys):
    out = tmp_path / 'out'
    rc = main(['run', str(DEMO), '--output', str(out), '--max-frames', '6', '--quiet'])
    assert rc == 0
    masks = sorted((out / 'masks').glob('*.png'))
    assert [m.stem for m in masks] == [f'{i:05d}' for i in range(6)]
    for m in masks:
        im = Image.open(m)
        assert im.mode == 'P' and im.size == (640, 360)
        assert np.array(im).max() < 16
    assert any(np.array(Image.open(m)).any() for m in masks[2:])  # something moves
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames'] == 6
    assert summary['timing_ms']['total']['count'] == 6
    assert 'p95' in summary['timing_ms']['densifier']
    assert (out / 'overlay.mp4').stat().st_size > 1000
    traj = np.load(out / 'trajectories.npz')
    assert traj['xy'].shape[0] == traj['track_id'].shape[0] > 0
    assert 'outputs in' in capsys.readouterr().out


def test_run_image_folder_with_set(tmp_path):
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i, f in enumerate(open_source(DEMO)):
        if i == 4:
            break
        Image.fromarray(f.image[:, :, ::-1]).save(folder / f'img_{i:03d}.jpg')
    out = tmp_path / 'out'
    rc = main(['run', str(folder), '-o', str(out), '--no-video', '-q',
               '--set', 'classifier.params.threshold=0.7'])
    assert rc == 0
    assert sorted(p.stem for p in (out / 'masks').glob('*.png')) == \
        [f'img_{i:03d}' for i in range(4)]
    assert not (out / 'overlay.mp4').exists()


@pytest.mark.parametrize('kind', ['missing', 'garbage', 'empty_dir'])
def test_unreadable_input_exit_2(tmp_path, capsys, kind):
    if kind == 'missing':
        path = tmp_path / 'nope.mp4'
    elif kind == 'garbage':
        path = tmp_path / 'bad.mp4'
        path.write_bytes(b'not a video at all' * 10)
    else:
        path = tmp_path / 'empty'
        path.mkdir()
    rc = main(['run', str(path), '--output', str(tmp_path / 'o')])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'motionseg run: error:' in err and str(path) in err
    assert 'Traceback' not in err


def test_bad_override_exit_2(tmp_path, capsys):
    rc = main(['run', str(DEMO), '-o', str(tmp_path / 'o'), '--set',
               'classifier.params.no_such_param=1', '-q'])
    assert rc == 2
    assert 'error' in capsys.readouterr().err


def test_open_source_api():
    src = open_source(DEMO)
    assert len(src) == 60 and src.name == 'demo'
    frame = next(iter(src))
    assert frame.image.shape == (360, 640, 3) and frame.name == '00000'
    with pytest.raises(SourceError):
        open_source(DEMO, fps=0)
