"""`motionseg evaluate` over several named roots (splits): one table per split, one summary."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from conftest import DAVIS, REPO, require_data

from motionseg_ros.cli import main as cli_main
from motionseg_ros.evaluation.options import EvaluationError
from motionseg_ros.evaluation.splits import DAVIS2016_TRAIN_SCRIPT, parse_splits

FRAMES = 4
GEOMETRIC = REPO / 'config' / 'geometric.yaml'


def small_davis_root(root: Path, sequences) -> Path:
    """A DAVIS-2016 root holding the first frames of real sequences, at half size (speed)."""
    for seq in sequences:
        for sub, interp in (('JPEGImages', cv2.INTER_AREA), ('Annotations', cv2.INTER_NEAREST)):
            src = sorted((DAVIS / sub / '480p' / seq).iterdir())[:FRAMES]
            dst = root / sub / '480p' / seq
            dst.mkdir(parents=True)
            for path in src:
                img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2),
                                 interpolation=interp)
                cv2.imwrite(str(dst / path.name), img)
    return root


def evaluate(*args) -> int:
    return cli_main(['evaluate', *map(str, args)])


def test_two_splits_one_summary_table_and_json(tmp_path, capsys):
    require_data(DAVIS)
    train = small_davis_root(tmp_path / 'train_root', ('libby', 'car-shadow'))
    val = small_davis_root(tmp_path / 'val_root', ('horsejump-high',))
    out, js = tmp_path / 'out', tmp_path / 'all.json'
    common = ('--config', GEOMETRIC, '--set', 'classifier.params.threads=1', '--no-plots')
    assert evaluate(f'train={train}', f'val={val}', '-o', out, '--json', js, '--jobs', '2',
                    *common) == 0
    printed = capsys.readouterr().out
    # a table per split (each with its MEAN), then the summary with a row per split
    summary_at = printed.index('split ')
    assert printed.count('MEAN') == 2 and printed.rindex('MEAN') < summary_at
    assert printed.index('horsejump-high') > printed.index('car-shadow')
    summary_lines = printed[summary_at:].splitlines()
    assert [ln.split()[0] for ln in summary_lines[2:4]] == ['train', 'val']

    everything = json.loads(js.read_text())
    assert everything == json.loads((out / 'results.json').read_text())
    assert (out / 'report.md').is_file() and 'train/report.md' in (out / 'report.md').read_text()
    assert everything['meta']['config'] == str(GEOMETRIC)
    rows = {r['split']: r for r in everything['summary']}
    assert list(rows) == ['train', 'val']
    for name, seqs in (('train', {'libby', 'car-shadow'}), ('val', {'horsejump-high'})):
        split = everything['splits'][name]
        assert split == json.loads((out / name / 'results.json').read_text())
        assert set(split['sequences']) == seqs and split['meta']['split'] == name
        frames = [s['num_frames'] for s in split['sequences'].values()]
        assert frames == [FRAMES] * len(seqs)
        jf = [s['JF'] for s in split['sequences'].values()]
        row = rows[name]
        assert row['sequences'] == len(seqs) and row['frames'] == sum(frames)
        assert row['JF'] == pytest.approx(sum(jf) / len(jf))
        assert row['JF'] == pytest.approx((row['J'] + row['F']) / 2)
        assert row['fps'] > 0 and row['failed'] == 0
        line = next(ln for ln in summary_lines if ln.startswith(name))
        assert line.split()[1:5] == [str(len(seqs)), str(sum(frames)), f"{100 * row['JF']:.1f}",
                                     f"{100 * row['J']:.1f}"]

    # a split scores as that root alone does with the same options (same config across splits)
    assert evaluate(val, '-o', tmp_path / 'alone', *common) == 0
    alone = json.loads((tmp_path / 'alone' / 'results.json').read_text())
    j_val = everything['splits']['val']['sequences']['horsejump-high']['J_per_frame']
    assert max(j_val) > 0   # a comparison of real masks, not of empty ones
    assert alone['sequences']['horsejump-high']['J_per_frame'] == j_val

    # --sequences across splits: each split runs the named ones it has, from its own cache
    capsys.readouterr()
    assert evaluate(f'train={train}', f'val={val}', '-o', out, '--sequences', 'libby',
                    *common) == 0
    printed = capsys.readouterr().out
    assert 'libby: cached' in printed and 'val: none of --sequences' in printed
    assert [r['split'] for r in json.loads((out / 'results.json').read_text())['summary']] == [
        'train']
    assert evaluate(f'train={train}', f'val={val}', '-o', out, '--sequences', 'zz') == 2
    assert 'zz' in capsys.readouterr().err


def test_missing_or_empty_root_names_the_train_export_script(tmp_path, capsys):
    require_data(DAVIS)
    val = small_davis_root(tmp_path / 'val_root', ('blackswan',))
    out = tmp_path / 'out'
    assert evaluate(f'train={tmp_path / "davis2016_train"}', f'val={val}', '-o', out) == 2
    err = capsys.readouterr().err
    assert DAVIS2016_TRAIN_SCRIPT in err and 'davis2016_train' in err and 'Traceback' not in err
    assert not out.exists()   # checked before anything ran (val was not scored first)
    (tmp_path / 'empty').mkdir()
    assert evaluate(f'val={val}', f'train={tmp_path / "empty"}', '-o', out) == 2
    err = capsys.readouterr().err
    assert DAVIS2016_TRAIN_SCRIPT in err and 'empty' in err and not out.exists()
    # any name: the message still says where the protocol's roots come from
    assert evaluate(tmp_path / 'nothing_here', '-o', out) == 2
    assert DAVIS2016_TRAIN_SCRIPT in capsys.readouterr().err


def test_split_arguments(tmp_path, monkeypatch):
    a, b = parse_splits(['train=/x/y', 'other/val'])
    assert (a.name, a.root, a.named) == ('train', Path('/x/y'), True)
    assert (b.name, b.root, b.named) == ('val', Path('other/val'), False)
    monkeypatch.chdir(tmp_path)
    Path('a=b').mkdir()             # an existing path is never split at '='
    (split,) = parse_splits(['a=b'])
    assert split.root == Path('a=b') and not split.named
    with pytest.raises(EvaluationError, match='two roots named'):
        parse_splits(['x/val', 'y/val'])
