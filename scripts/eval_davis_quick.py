#!/usr/bin/env python3
"""Quick DAVIS-2016 tuning helper: per-sequence J, F, J&F of the pipeline (merged foreground).

Not the product's evaluator (``motionseg evaluate``): a small loop for tuning the default
config. Mean over frames per sequence, then mean over sequences (DAVIS definition).

    python scripts/eval_davis_quick.py [--root ../shared/data/davis2016] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'davis2016'


def run_sequence(args: tuple) -> tuple:
    """Run the pipeline over one sequence; return (seq, J, F, JF, fps)."""
    root, seq, config_path, overrides, max_frames = args
    cv2.setNumThreads(1)
    from motionseg_ros.config import load_config
    from motionseg_ros.evaluation.metrics import j_and_f
    from motionseg_ros.io.sources import open_source
    from motionseg_ros.pipeline import StreamingPipeline
    pipe = StreamingPipeline(load_config(config_path, overrides))
    src = open_source(Path(root) / 'JPEGImages' / '480p' / seq)
    js, fs = [], []
    t0 = time.perf_counter()
    n = 0
    for frame in src:
        if max_frames and n >= max_frames:
            break
        res = pipe.process(frame)
        gt = cv2.imread(str(Path(root) / 'Annotations' / '480p' / seq / f'{frame.name}.png'),
                        cv2.IMREAD_GRAYSCALE) > 127
        j, f, _ = j_and_f(res.foreground(), gt)
        js.append(j)
        fs.append(f)
        n += 1
    fps = n / (time.perf_counter() - t0)
    j, f = float(np.mean(js)), float(np.mean(fs))
    return seq, j, f, (j + f) / 2, fps


def main() -> int:
    """Parse arguments, evaluate, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--root', default=str(DEFAULT_ROOT))
    ap.add_argument('--config', default=None)
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--seq', action='append', default=[], help='only these sequences')
    ap.add_argument('--max-frames', type=int, default=0)
    ap.add_argument('--jobs', type=int, default=2)
    args = ap.parse_args()
    root = Path(args.root)
    seqs = args.seq or sorted(os.listdir(root / 'JPEGImages' / '480p'))
    work = [(str(root), s, args.config, args.set, args.max_frames) for s in seqs]
    jobs = max(1, min(2, args.jobs))
    if jobs == 1:
        rows = [run_sequence(w) for w in work]
    else:
        with mp.get_context('spawn').Pool(jobs) as pool:
            rows = pool.map(run_sequence, work, chunksize=1)
    print(f'{"sequence":20s} {"J":>6s} {"F":>6s} {"J&F":>6s} {"fps":>6s}')
    for seq, j, f, jf, fps in rows:
        print(f'{seq:20s} {100 * j:6.1f} {100 * f:6.1f} {100 * jf:6.1f} {fps:6.1f}')
    mj = np.mean([r[1] for r in rows])
    mf = np.mean([r[2] for r in rows])
    print(f'{"mean":20s} {100 * mj:6.1f} {100 * mf:6.1f} {100 * (mj + mf) / 2:6.1f}')
    print('overrides:', ' '.join(args.set) or '(default)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
