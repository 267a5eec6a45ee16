"""``motionseg eval-classifier``: per-track moving/static quality on annotated video.

Any layout ``motionseg evaluate`` reads (DAVIS, FBMS-59, SegTrack v2, CDnet 2014). Tracks come
from the pipeline's tracker (as configured, default ``klt``), run online over each sequence;
every classifier sees the same window at every frame. A track visible in the newest frame of an
annotated frame is labelled moving when the ground truth has an object at its (rounded)
position there; tracks on void pixels (DAVIS-2017 255, CDnet boundaries and outside the ROI)
are not scored. Reported per sequence and overall (tracks of all frames pooled): precision,
recall and F1 of the classifier's own decision, and ROC-AUC of its probability.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from motionseg_ros.cli import CliError

if TYPE_CHECKING:  # pragma: no cover
    from motionseg_ros.evaluation.datasets import SequenceData

DEFAULT_CLASSIFIERS: List[Tuple[str, Dict[str, Any]]] = [
    ('geometric', {'name': 'geometric', 'params': {}}),
    ('moseg motion_only', {'name': 'moseg', 'params': {'weights': 'builtin:motion_only'}}),
    ('moseg motion_depth', {'name': 'moseg', 'params': {'weights': 'builtin:motion_depth'}}),
    ('moseg motion_geo', {'name': 'moseg', 'params': {'weights': 'builtin:motion_geo'}}),
]


def add_parser(subparsers) -> None:
    """Register the sub-command."""
    p = subparsers.add_parser(
        'eval-classifier', help='compare trajectory classifiers on annotated video',
        description='Track each sequence with the pipeline tracker, classify every window with '
                    'each classifier, score tracks against the ground-truth masks.')
    p.add_argument('davis_root', metavar='dataset_root',
                   help='dataset folder (DAVIS, FBMS-59, SegTrack v2 or CDnet layout)')
    p.add_argument('--sequences', nargs='+', default=None, help='sequence names (default all)')
    p.add_argument('--classifier-config', nargs='+', default=None, metavar='YAML',
                   help='YAML files each naming a classifier ({classifier: {name, params}} or '
                        '{name, params}); default: geometric, moseg motion_only, motion_depth, '
                        'motion_geo')
    p.add_argument('--config', default=None, help='pipeline YAML for the tracker settings')
    p.add_argument('--max-frames', type=int, default=0, help='frames per sequence (0 = all)')
    p.add_argument('--every', type=int, default=1,
                   help='score every K-th frame only (stateless classifiers then run only on '
                        'those frames; stateful ones still see every frame)')
    p.add_argument('--json', default=None, help='write all figures to this JSON file')
    p.add_argument('--save-scores', default=None, metavar='NPZ',
                   help='write every scored track (probability, decision, label) to this .npz')
    p.set_defaults(func=run)


def _load_classifier_specs(paths: Optional[List[str]]) -> List[Tuple[str, Dict[str, Any]]]:
    if not paths:
        return list(DEFAULT_CLASSIFIERS)
    import yaml
    specs = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise CliError(f'classifier config not found: {p}')
        data = yaml.safe_load(p.read_text()) or {}
        spec = data.get('classifier', data) if isinstance(data, dict) else None
        if not isinstance(spec, dict) or 'name' not in spec:
            raise CliError(f'{p}: expected {{classifier: {{name: ..., params: {{...}}}}}}')
        specs.append((p.stem, {'name': spec['name'], 'params': dict(spec.get('params') or {})}))
    return specs


def score(prob: np.ndarray, decision: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Precision, recall, F1 (of ``decision``) and ROC-AUC (of ``prob``) over tracks."""
    from motionseg_ros.training.train import binary_metrics, roc_auc
    out = binary_metrics(decision, labels)
    out['auc'] = roc_auc(prob, labels)
    out['tracks'] = int(labels.size)
    out['moving'] = int(np.sum(labels))
    return out


def evaluate_sequence(seq: 'SequenceData', tracker_spec: Dict[str, Any], window: int,
                      classifier_specs: List[Tuple[str, Dict[str, Any]]], every: int = 1
                      ) -> Tuple[Dict[str, Dict[str, np.ndarray]], Dict[str, float]]:
    """Run tracker + classifiers over one sequence; return pooled arrays and timings (ms)."""
    from motionseg_ros import registry
    from motionseg_ros.evaluation.datasets import DatasetError
    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    params = dict(tracker_spec.get('params') or {})
    params.setdefault('window', window)
    tracker = registry.create('tracker', tracker_spec['name'], params)
    classifiers = [(label, registry.create('classifier', spec['name'], spec['params']))
                   for label, spec in classifier_specs]
    ctxs = {label: StageContext() for label, _ in classifiers}
    track_ctx = StageContext()
    pooled = {label: {'prob': [], 'dec': [], 'lab': []} for label, _ in classifiers}
    times = {label: 0.0 for label, _ in classifiers}
    calls = {label: 0 for label, _ in classifiers}
    annotated = set(seq.annotated)
    for i in range(len(seq)):
        try:
            image = seq.image(i)
        except DatasetError as exc:
            raise CliError(str(exc)) from exc
        frame = Frame(image=image, stamp_ns=int(i * 1e9 / seq.fps), index=i,
                      name=seq.image_paths[i].stem)
        track_ctx.new_frame(frame)
        win = tracker.update(frame, track_ctx)
        track_ctx.background_homography = None
        scored = i in annotated and win.num_tracks > 0 and win.num_frames >= 2 and \
            i % max(1, every) == 0
        if not scored:
            for label, clf in classifiers:   # stateful classifiers must see every frame
                if win.num_tracks and not getattr(clf, 'stateless', False):
                    ctxs[label].new_frame(frame)
                    clf.classify(win, ctxs[label])
            continue
        try:
            gt, void = seq.gt(i)
        except DatasetError as exc:
            raise CliError(str(exc)) from exc
        if gt.shape != image.shape[:2]:
            raise CliError(f'{seq.name} frame {i}: ground truth {gt.shape} does not match the '
                           f'image {image.shape[:2]}')
        alive = win.visible[:, -1].copy()
        xy = np.rint(win.xy[:, -1]).astype(int)
        xy[:, 0] = np.clip(xy[:, 0], 0, gt.shape[1] - 1)
        xy[:, 1] = np.clip(xy[:, 1], 0, gt.shape[0] - 1)
        if void is not None:
            alive &= ~void[xy[:, 1], xy[:, 0]]
        labels = gt[xy[alive, 1], xy[alive, 0]] > 0
        for label, clf in classifiers:
            ctx = ctxs[label]
            ctx.new_frame(frame)
            t0 = time.perf_counter()
            prob = np.asarray(clf.classify(win, ctx), np.float32)
            times[label] += (time.perf_counter() - t0) * 1e3
            calls[label] += 1
            dec = np.asarray(clf.decide(prob), bool)
            pooled[label]['prob'].append(prob[alive])
            pooled[label]['dec'].append(dec[alive])
            pooled[label]['lab'].append(labels)
    arrays = {label: {k: np.concatenate(v) if v else np.zeros(0) for k, v in d.items()}
              for label, d in pooled.items()}
    return arrays, {label: t / max(1, calls[label]) for label, t in times.items()}


def _fmt(v: float) -> str:
    return '  nan' if not np.isfinite(v) else f'{v:.3f}'


def score_sequences(root: str, names: Optional[List[str]], max_frames: int,
                    config: Optional[str], specs: List[Tuple[str, Dict[str, Any]]],
                    every: int = 1
                    ) -> Iterator[Tuple[str, Dict[str, Dict[str, np.ndarray]], Dict[str, float]]]:
    """Yield (sequence name, arrays, timings) of :func:`evaluate_sequence` for each sequence.

    ``root``: any dataset layout; ``names``: the sequences (None: all); ``config``: the pipeline
    YAML whose tracker and window are used. Bad input raises ``CliError``.
    """
    from motionseg_ros.config import ConfigError, load_config
    from motionseg_ros.evaluation.datasets import DatasetError, open_dataset
    from motionseg_ros.registry import BackendError
    try:
        sequences = open_dataset(root).select(names)
        cfg = load_config(config) if config else load_config()
    except (ConfigError, DatasetError) as exc:
        raise CliError(str(exc)) from exc
    if max_frames > 0:
        sequences = [s.truncated(max_frames) for s in sequences]
    window = int(cfg.get('pipeline', {}).get('window', 16))
    for data in sequences:
        try:
            arrays, ms = evaluate_sequence(data, cfg['tracker'], window, specs, every)
        except BackendError as exc:
            raise CliError(str(exc)) from exc
        yield data.name, arrays, ms


def run(args: argparse.Namespace) -> int:
    """Evaluate every classifier on every sequence and print the tables."""
    if args.every < 1:
        raise CliError('--every must be >= 1')
    specs = _load_classifier_specs(args.classifier_config)
    results: Dict[str, Dict[str, Any]] = {label: {} for label, _ in specs}
    all_arrays: Dict[str, Dict[str, List[np.ndarray]]] = {
        label: {'prob': [], 'dec': [], 'lab': []} for label, _ in specs}
    timing: Dict[str, List[float]] = {label: [] for label, _ in specs}
    seqs: List[str] = []
    for seq, arrays, ms in score_sequences(args.davis_root, args.sequences, args.max_frames,
                                           args.config, specs, args.every):
        seqs.append(seq)
        for label, arr in arrays.items():
            results[label][seq] = score(arr['prob'], arr['dec'], arr['lab'] > 0.5)
            for k in ('prob', 'dec', 'lab'):
                all_arrays[label][k].append(arr[k])
            timing[label].append(ms[label])
        print(f'{seq}: ' + '; '.join(
            f"{label} AUC {_fmt(results[label][seq]['auc'])} F1 "
            f"{_fmt(results[label][seq]['f1'])}" for label, _ in specs), flush=True)
    if args.save_scores:
        np.savez_compressed(args.save_scores, **{
            f'{label}|{seq}|{k}': all_arrays[label][k][i]
            for label, _ in specs for i, seq in enumerate(seqs) for k in ('prob', 'dec', 'lab')})
    for label, _ in specs:
        arr = {k: np.concatenate(v) for k, v in all_arrays[label].items()}
        overall = score(arr['prob'], arr['dec'], arr['lab'] > 0.5)
        per = list(results[label].values())
        overall['mean_seq_auc'] = float(np.nanmean([r['auc'] for r in per]))
        overall['mean_seq_f1'] = float(np.mean([r['f1'] for r in per]))
        overall['ms_per_frame'] = float(np.mean(timing[label]))
        results[label]['overall'] = overall
    print()
    head = f"{'sequence':<20}" + ''.join(f' | {label[:22]:^22}' for label, _ in specs)
    print(head)
    print(f"{'':<20}" + ''.join(f" | {'P    R    F1   AUC':^22}" for _ in specs))
    for seq in seqs + ['overall']:
        row = f'{seq:<20}'
        for label, _ in specs:
            r = results[label][seq]
            row += ' | ' + ' '.join(_fmt(r[k])[1:] if r[k] < 1 else _fmt(r[k])[:4]
                                    for k in ('precision', 'recall', 'f1', 'auc')).ljust(22)
        print(row)
    for label, _ in specs:
        o = results[label]['overall']
        print(f"{label}: pooled F1 {o['f1']:.3f} AUC {o['auc']:.3f}; mean over sequences F1 "
              f"{o['mean_seq_f1']:.3f} AUC {o['mean_seq_auc']:.3f}; classifier "
              f"{o['ms_per_frame']:.1f} ms/frame")
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump({'classifiers': {label: spec for label, spec in specs},
                       'results': results}, f, indent=1)
    return 0
