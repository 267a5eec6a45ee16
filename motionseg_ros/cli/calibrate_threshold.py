"""``motionseg calibrate-threshold``: store the best-F1 decision threshold in moseg weights.

A learned classifier trained with the paper's per-window weighted BCE scores every window as if
movers and static tracks were equally common, so its best decision threshold depends on how
rare movers are in the scenes it is used on, and on how far those scenes are from the training
data. This command runs the classifier over annotated real video (any layout ``motionseg
evaluate`` reads; use data held out from the one you report on), picks the threshold with the
best pooled F1 on a 0.05 grid, and writes a copy of the checkpoint that carries it; the
``moseg`` backend uses it when its ``threshold`` parameter is null.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np

from motionseg_ros.cli import CliError


def add_parser(subparsers) -> None:
    """Register the sub-command."""
    p = subparsers.add_parser(
        'calibrate-threshold', help="set a moseg checkpoint's decision threshold on real data",
        description='Run a moseg checkpoint over annotated video, pick the threshold with the '
                    'best pooled F1, write a copy of the checkpoint that carries it.')
    p.add_argument('weights', help='checkpoint (path or builtin:NAME)')
    p.add_argument('dataset_root', help='annotated dataset folder (DAVIS, FBMS-59, SegTrack v2 '
                                        'or CDnet layout), held out from your test data')
    p.add_argument('--output', required=True, help='checkpoint to write (not the input)')
    p.add_argument('--params', default='{}',
                   help='JSON of further moseg parameters (e.g. the geometric block)')
    p.add_argument('--config', default=None, help='pipeline YAML for the tracker settings')
    p.add_argument('--sequences', nargs='+', default=None, help='sequence names (default all)')
    p.add_argument('--max-frames', type=int, default=0, help='frames per sequence (0 = all)')
    p.add_argument('--every', type=int, default=1,
                   help='score every K-th frame only (the classifier still sees every frame: '
                        'its geometric state runs over the stream)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, choose, write."""
    import torch

    from motionseg_ros.classifiers.moseg import resolve_weights
    from motionseg_ros.cli.eval_classifier import score_sequences
    from motionseg_ros.training.train import best_f1_threshold, binary_metrics, roc_auc
    if args.every < 1:
        raise CliError('--every must be >= 1')
    try:
        params: Dict[str, Any] = json.loads(args.params)
    except ValueError as exc:
        raise CliError(f'--params is not JSON: {exc}') from exc
    if not isinstance(params, dict):
        raise CliError('--params must be a JSON object')
    src = resolve_weights(args.weights)
    out = Path(args.output)
    if out.resolve() == src.resolve():
        raise CliError('--output must differ from the input weights')
    spec = {'name': 'moseg', 'params': {**params, 'weights': str(src)}}
    names, probs, labels = [], [], []
    for name, arrays, _ in score_sequences(args.dataset_root, args.sequences, args.max_frames,
                                           args.config, [('moseg', spec)], args.every):
        names.append(name)
        probs.append(arrays['moseg']['prob'])
        labels.append(arrays['moseg']['lab'] > 0.5)
    prob, lab = np.concatenate(probs), np.concatenate(labels)
    if not lab.any() or lab.all():
        raise CliError(f'{args.dataset_root}: the scored tracks are all of one class '
                       f'({lab.size} tracks); calibration needs movers and static tracks')
    threshold, f1 = best_f1_threshold(prob, lab)
    every = f'every {args.every} frames, ' if args.every > 1 else ''
    source = (f'best pooled F1 on {Path(args.dataset_root).name} '
              f"({', '.join(names)}; {every}{lab.size} tracks)")
    obj = torch.load(str(src), map_location='cpu', weights_only=True)
    if not isinstance(obj, dict) or 'model_state_dict' not in obj:
        raise CliError(f'{src}: not a checkpoint with a model_state_dict')
    previous = obj.get('threshold')
    obj.update({'threshold': float(threshold), 'threshold_source': source,
                'threshold_f1': round(float(f1), 4)})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, str(out))
    metrics = binary_metrics(prob >= threshold, lab)
    print(f'{lab.size} tracks, {int(lab.sum())} moving; ROC-AUC {roc_auc(prob, lab):.3f}')
    print(f'threshold {threshold:.2f} (was {previous}): precision {metrics["precision"]:.3f} '
          f'recall {metrics["recall"]:.3f} F1 {f1:.3f}; written to {out}')
    return 0
