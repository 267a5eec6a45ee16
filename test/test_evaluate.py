"""`motionseg evaluate` in direct mode: outputs, scoring plumbing, resume, jobs, bags."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DAVIS, require_data

from motionseg_ros.cli import main as cli_main
from motionseg_ros.config import load_config
from motionseg_ros.evaluation import metrics as M
from motionseg_ros.evaluation.datasets import open_dataset
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.types import Frame

H, W, N = 120, 160, 8


def write_dataset(root: Path, seqs=('left', 'right')) -> None:
    """DAVIS-2016 layout: a textured static background and a textured square moving on it."""
    rng = np.random.default_rng(7)
    for s, seq in enumerate(seqs):
        bg = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (5, 5), 0)
        obj = cv2.GaussianBlur(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8), (3, 3), 0)
        img_dir = root / 'JPEGImages' / '480p' / seq
        ann_dir = root / 'Annotations' / '480p' / seq
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for i in range(N):
            x = 20 + (4 + 2 * s) * i
            img = bg.copy()
            img[40:70, x:x + 30] = obj
            mask = np.zeros((H, W), np.uint8)
            mask[40:70, x:x + 30] = 255
            cv2.imwrite(str(img_dir / f'{i:05d}.png'), img)
            cv2.imwrite(str(ann_dir / f'{i:05d}.png'), mask)


def run_cli(*args) -> int:
    return cli_main(['evaluate', *map(str, args)])


def test_direct_mode_outputs_and_scores_match_the_pipeline(tmp_path, capsys):
    write_dataset(tmp_path / 'data')
    out = tmp_path / 'out'
    assert run_cli(tmp_path / 'data', '--output', out, '--per-object') == 0
    printed = capsys.readouterr().out
    assert 'MEAN' in printed and 'left' in printed and 'right' in printed
    res = json.loads((out / 'results.json').read_text())
    assert res['meta']['layout'] == 'davis2016' and res['meta']['mode'] == 'direct'
    assert set(res['sequences']) == {'left', 'right'}
    for name in ('results.csv', 'per_frame.csv', 'report.md', 'jf_per_sequence.png',
                 'j_over_time.png', 'sequences/left.json'):
        assert (out / name).is_file(), name
    assert '![jf_per_sequence.png]' in (out / 'report.md').read_text()
    left = res['sequences']['left']
    assert left['num_frames'] == N and len(left['J_per_frame']) == N
    assert left['runtime']['frames_sent'] == N and left['runtime']['dropped'] == 0
    assert 'objects' in left
    # independent recomputation: run the pipeline here and score with the metrics module
    seq = open_dataset(tmp_path / 'data').sequences['left']
    pipe = StreamingPipeline(load_config())
    js = []
    for i in range(N):
        result = pipe.process(Frame(image=seq.image(i), stamp_ns=int(round(i * 1e9 / 24)),
                                    index=i, name=seq.frame_names[i]))
        js.append(M.jaccard(result.foreground(), seq.gt(i)[0] > 0))
    assert left['J_per_frame'] == pytest.approx(js)
    summary = res['summary']
    means = [res['sequences'][s]['JF'] for s in ('left', 'right')]
    assert summary['JF'] == pytest.approx(np.mean(means))
    csv_lines = (out / 'results.csv').read_text().splitlines()
    assert csv_lines[0].startswith('sequence,frames,J,F,JF') and csv_lines[-1].startswith('MEAN')


def test_resume_jobs_and_determinism(tmp_path, capsys):
    write_dataset(tmp_path / 'data', seqs=('a', 'b', 'c'))
    out1, out2 = tmp_path / 'o1', tmp_path / 'o2'
    assert run_cli(tmp_path / 'data', '-o', out1, '--sequences', 'a', 'b') == 0
    first = json.loads((out1 / 'results.json').read_text())
    assert set(first['sequences']) == {'a', 'b'}
    capsys.readouterr()
    # rerun with one more sequence: a and b come from the cache, only c is computed
    assert run_cli(tmp_path / 'data', '-o', out1) == 0
    printed = capsys.readouterr().out
    assert 'a: cached' in printed and 'b: cached' in printed and 'c: cached' not in printed
    second = json.loads((out1 / 'results.json').read_text())
    assert second['meta']['reused'] == ['a', 'b']
    # a changed config is a different fingerprint: nothing reused
    assert run_cli(tmp_path / 'data', '-o', out1, '--sequences', 'a', '--set',
                   'pipeline.stride=3') == 0
    assert json.loads((out1 / 'results.json').read_text())['meta']['reused'] == []
    # parallel processes give the same scores as the sequential run (deterministic)
    assert run_cli(tmp_path / 'data', '-o', out2, '--jobs', '2') == 0
    par = json.loads((out2 / 'results.json').read_text())
    for name in ('a', 'b', 'c'):
        assert par['sequences'][name]['J_per_frame'] == second['sequences'][name]['J_per_frame']
        assert par['sequences'][name]['F_per_frame'] == second['sequences'][name]['F_per_frame']
    # a sequence alone scores as it does after others (no state carried between sequences)
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'o3', '--sequences', 'c') == 0
    alone = json.loads((tmp_path / 'o3' / 'results.json').read_text())['sequences']['c']
    assert alone['J_per_frame'] == second['sequences']['c']['J_per_frame']


def test_bag_with_gt_scores_like_the_dataset(tmp_path):
    write_dataset(tmp_path / 'data', seqs=('left',))
    bag = tmp_path / 'left_bag'
    assert cli_main(['make-bag', str(tmp_path / 'data' / 'JPEGImages' / '480p' / 'left'),
                     '-o', str(bag), '--gt-masks', 'auto']) == 0
    assert run_cli(bag, '-o', tmp_path / 'ob') == 0
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'od') == 0
    rb = json.loads((tmp_path / 'ob' / 'results.json').read_text())
    rd = json.loads((tmp_path / 'od' / 'results.json').read_text())
    assert rb['meta']['layout'] == 'bag'
    b = rb['sequences']['left_bag']
    d = rd['sequences']['left']
    assert b['num_frames'] == d['num_frames'] == N
    assert b['J_per_frame'] == pytest.approx(d['J_per_frame'], abs=1e-9)


def test_evaluate_errors(tmp_path, capsys):
    assert run_cli(tmp_path / 'missing', '-o', tmp_path / 'o') == 2
    (tmp_path / 'empty').mkdir()
    assert run_cli(tmp_path / 'empty', '-o', tmp_path / 'o') == 2
    write_dataset(tmp_path / 'data', seqs=('a',))
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'o', '--sequences', 'zz') == 2
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'o', '--config', 'nope.yaml') == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and 'zz' in err
    # a bag without ground truth
    from motionseg_ros.bags.writer import BagWriter
    with BagWriter(tmp_path / 'nogt') as bag:
        bag.write_image('/camera/image_raw', np.zeros((H, W, 3), np.uint8), 1)
    assert run_cli(tmp_path / 'nogt', '-o', tmp_path / 'o') == 2
    assert '/gt/masks' in capsys.readouterr().err
    # a truncated bag: one line naming the file, no traceback
    mcap = next((tmp_path / 'nogt').glob('*.mcap'))
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(mcap.read_bytes()[:200])
    assert run_cli(cut, '-o', tmp_path / 'o') == 2
    err = capsys.readouterr().err
    assert 'cut.mcap' in err and 'Traceback' not in err


def test_real_davis_sequence_few_frames(tmp_path):
    require_data(DAVIS)
    out = tmp_path / 'out'
    assert run_cli(DAVIS, '-o', out, '--sequences', 'car-shadow', '--max-frames', '4',
                   '--no-plots') == 0
    res = json.loads((out / 'results.json').read_text())
    seq = res['sequences']['car-shadow']
    assert seq['num_frames'] == 4 and seq['frames'] == ['00000', '00001', '00002', '00003']
    assert 0.0 <= seq['JF'] <= 1.0


@pytest.mark.ros
def test_live_mode_against_segment_node(tmp_path):
    """Replay to a real segment_node subprocess over DDS; drop accounting adds up exactly."""
    from conftest import require_ros
    require_ros()
    write_dataset(tmp_path / 'data', seqs=('left',))
    # 8 small frames recorded at 24 fps replayed at x0.15 (3.6 fps): a rate the node sustains
    # even on a busy 2-core machine; stamps stay those of the direct run
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'live', '--mode', 'live', '--rate',
                   '0.15', '--settle', '5') == 0
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'direct') == 0
    live = json.loads((tmp_path / 'live' / 'results.json').read_text())['sequences']['left']
    direct = json.loads((tmp_path / 'direct' / 'results.json').read_text())['sequences']['left']
    rt = live['runtime']
    assert rt['frames_sent'] == N
    # every frame the node got was processed, dropped or rejected; every processed one arrived
    assert rt['node_received'] + rt['lost_in_transport'] == N
    assert rt['node_received'] == rt['node_processed'] + rt['node_dropped'] + rt['node_rejected']
    assert rt['frames_received'] == rt['node_processed']
    assert rt['dropped'] == len(live['missing_frames'])
    assert rt['unknown_results'] == 0
    assert live['num_frames'] == N
    print('live runtime:', rt)
    if rt['dropped'] == 0:
        # same frames, same config, same order: the node's masks equal the in-process ones
        assert live['J_per_frame'] == pytest.approx(direct['J_per_frame'], abs=1e-9)
    else:
        # a frame without a result is scored as an empty prediction (the GT is never empty)
        missing = set(live['missing_frames'])
        for name, j in zip(live['frames'], live['J_per_frame']):
            if name in missing:
                assert j == 0.0


@pytest.mark.ros
def test_live_mode_node_that_fails_to_start_is_reported(tmp_path, capsys):
    from conftest import require_ros
    require_ros()
    write_dataset(tmp_path / 'data', seqs=('left',))
    cmd = f'{sys.executable} -c "import sys; print(\'boom\'); sys.exit(3)"'
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'o', '--mode', 'live',
                   '--node-command', cmd) == 1
    out = capsys.readouterr().out
    assert 'left: FAILED' in out and 'exited with code 3' in out and 'boom' in out


# ------------------------------------------------------------------ structure and shared rules
def test_evaluation_modules_import_each_other_without_cycle():
    """evaluate.py and live.py share their parts through modules both use, not each other."""
    import ast

    pkg = Path(__file__).resolve().parents[1] / 'motionseg_ros' / 'evaluation'
    graph = {}
    for path in pkg.glob('*.py'):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):   # lazy imports count too
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith(
                    'motionseg_ros.evaluation'):
                mod = node.module.split('.')[-1]
                deps |= {a.name for a in node.names} if mod == 'evaluation' else {mod}
        graph[path.stem] = deps & {p.stem for p in pkg.glob('*.py')}

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, seen + (d,)))
                   for d in graph.get(start, ()))
    cycles = [m for m in graph if reaches(m, m)]
    assert not cycles, {m: graph[m] for m in cycles}
    assert 'evaluate' not in graph['live']


def _two_camera_bag(path: Path, topics=('/cam_a/image', '/cam_b/image')) -> None:
    from motionseg_ros.bags.writer import BagWriter
    rng = np.random.default_rng(3)
    with BagWriter(path) as bag:
        for i in range(3):
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            for t in topics:
                bag.write_image(t, rng.integers(0, 256, (H, W, 3), dtype=np.uint8), stamp)
            bag.write_labels('/gt/masks', np.zeros((H, W), np.uint8), stamp)


def test_bag_topic_choice_is_the_one_of_motionseg_run(tmp_path, capsys):
    """Several camera topics: evaluate and run both ask for --topic; the GT is never one."""
    _two_camera_bag(tmp_path / 'bag')
    assert run_cli(tmp_path / 'bag', '-o', tmp_path / 'o') == 2
    err_eval = capsys.readouterr().err
    assert cli_main(['run', str(tmp_path / 'bag'), '-o', str(tmp_path / 'r'), '-q',
                     '--no-video']) == 2
    err_run = capsys.readouterr().err
    assert 'choose one with --topic' in err_eval
    assert err_eval.split(': error: ')[1] == err_run.split(': error: ')[1]
    assert "'/cam_a/image', '/cam_b/image']" in err_eval and '/gt/masks' not in err_eval
    assert run_cli(tmp_path / 'bag', '-o', tmp_path / 'o', '--topic', '/cam_b/image',
                   '--no-plots') == 0
    res = json.loads((tmp_path / 'o' / 'results.json').read_text())
    assert res['sequences']['bag']['num_frames'] == 3
    # one camera topic besides the ground truth: both take it
    _two_camera_bag(tmp_path / 'one', topics=('/front/image_raw',))
    from motionseg_ros.io.sources import open_source
    assert open_source(tmp_path / 'one').topic == '/front/image_raw'
    assert run_cli(tmp_path / 'one', '-o', tmp_path / 'o1', '--no-plots') == 0


def test_jobs_share_the_cores(tmp_path):
    """--jobs N: each worker runs torch and OpenCV on cores // N threads (at least 1)."""
    from motionseg_ros.evaluation.evaluate import job_threads, usable_cores
    assert job_threads(2, cores=2) == 1 and job_threads(3, cores=2) == 1
    assert job_threads(1, cores=2) == 2 and job_threads(2, cores=16) == 8
    write_dataset(tmp_path / 'data', seqs=('a', 'b'))
    # thread counts 0 ("library default: every core") leave the whole budget to each worker
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'o', '--jobs', '2', '--no-plots',
                   '--set', 'classifier.params.threads=0', '--set',
                   'pipeline.opencv_threads=0') == 0
    res = json.loads((tmp_path / 'o' / 'results.json').read_text())
    budget = max(1, usable_cores() // 2)
    for name in ('a', 'b'):
        rt = res['sequences'][name]['runtime']
        assert (rt['torch_threads'], rt['opencv_threads']) == (budget, budget), rt
    # the default config's 2 torch threads are capped by the budget too
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'o2', '--jobs', '2', '--no-plots') == 0
    res = json.loads((tmp_path / 'o2' / 'results.json').read_text())
    for name in ('a', 'b'):
        rt = res['sequences'][name]['runtime']
        assert rt['torch_threads'] == min(2, budget) and rt['opencv_threads'] == 1, rt


@pytest.mark.ros
def test_live_node_counters_come_from_diagnostics_not_its_log(tmp_path):
    """The node's output goes nowhere: its frame counters still arrive (from /diagnostics)."""
    from conftest import require_ros
    require_ros()
    write_dataset(tmp_path / 'data', seqs=('left',))
    node = (f'{sys.executable} -m motionseg_ros.ros.segment_node --ros-args '
            '-r image:=/camera/image_raw')
    cmd = f"sh -c 'exec {node} >/dev/null 2>&1'"
    assert run_cli(tmp_path / 'data', '-o', tmp_path / 'live', '--mode', 'live', '--rate',
                   '0.15', '--settle', '5', '--node-command', cmd, '--no-plots') == 0
    rt = json.loads((tmp_path / 'live' / 'results.json').read_text())['sequences']['left'][
        'runtime']
    assert rt['node_received'] + rt['lost_in_transport'] == N
    assert rt['node_received'] == rt['node_processed'] + rt['node_dropped'] + rt['node_rejected']
    assert rt['frames_received'] == rt['node_processed']
