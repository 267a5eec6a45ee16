"""Train the trajectory classifier on synthetic windows, optionally mixed with real tracks.

One optimisation step = one window (the paper trains with batch 1), weighted BCE with
positive weight #neg/#pos of that window, Adam. Training window i is generated from the seed
sequence (seed, i), so a resumed run sees exactly the windows an uninterrupted one would; the
validation set is a fixed list of windows from ``val_seed``. With ``data.real`` (a DAVIS-layout
root, see :mod:`motionseg_ros.training.real_tracks`) step i takes a real window with probability
``ratio``, drawn from the seed sequence (seed, i, 1); real tracks labelled ignore (near a mask
boundary, on void, or in between) are context only, not in the loss. A fixed sample of real
windows (``data.real.val_windows``, from ``val_seed``) is logged beside the synthetic
validation; it is training data, so it tells fit, not generalisation.

Output folder: ``config.yaml`` (the resolved config), ``train_log.jsonl`` (one line per logged
step), ``val_log.csv``, ``last.pth`` (model + optimizer + step, for ``--resume``), ``best.pth``
and ``model.pth`` (weights only, what the classifier loads), ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from motionseg_ros.classifiers.geometric import GeometricClassifier
from motionseg_ros.models.checkpoint import save_checkpoint
from motionseg_ros.models.config import MosegConfig
from motionseg_ros.models.moseg import MosegModel
from motionseg_ros.stages import StageContext
from motionseg_ros.synthetic.generator import (
    GENERATOR_VERSION, SceneSpec, SyntheticWindow, generate_window)
from motionseg_ros.training.real_tracks import (
    IGNORE, MOVING, RealTracksError, RealTrackSet, RealWindow, inference_setup)
from motionseg_ros.training.settings import TrainingError, read_settings
from motionseg_ros.types import TrackWindow

Sample = Union[SyntheticWindow, RealWindow]

DEFAULTS: Dict[str, Any] = {
    'seed': 0,
    'model': {'feature_dim': 0, 'use_depth': False, 'attn_dropout': 0.0},
    'data': {
        'max_tracks': [64, 192],     # tracks per training window: uniform in this range
        'depth_drop': 0.0,           # probability of hiding the depth of a window
        'val_seed': 1000,
        'val_windows': 120,
        'val_max_tracks': 400,
        # 'alive': loss and metrics on tracks visible in the newest frame (those the pipeline
        # decides on; the others are context); 'all': every track
        'loss_on': 'alive',
        'hard_negatives': False,     # generator 1.1 hard negatives in training windows
        # fraction of training windows shorter than 16 frames (2-15, uniform), as the pipeline
        # sees for the first 15 frames of every stream; null: the generator's own draw (1/4)
        'short_windows': None,
        # real tracks (the pipeline's tracker over annotated video), mixed in per step
        'real': {'root': None, 'ratio': 0.0, 'cache': '~/.cache/motionseg/real_tracks',
                 'boundary_px': 4.0, 'val_windows': 60, 'sequences': None},
    },
    'optim': {'lr': 3.0e-4, 'min_lr': 1.0e-5, 'weight_decay': 1.0e-4, 'warmup_steps': 200,
              'grad_clip': 1.0, 'max_pos_weight': 30.0},
    'schedule': {'steps': 8000, 'time_budget_min': 45.0, 'log_every': 50, 'val_every': 1000,
                 'checkpoint_every': 250},
    'threads': 1,
}


def load_training_config(path: Optional[Union[str, Path]] = None,
                         overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Defaults, updated by the YAML file, updated by ``overrides``; validated."""
    cfg = read_settings(DEFAULTS, path, overrides, free=('model.',))
    MosegConfig.from_dict(cfg['model'])   # raises on unknown model options
    return cfg


# ---------------------------------------------------------------------------- tensors
def window_tensors(window: TrackWindow, model: MosegModel, reference_quirks: bool = False,
                   geo_evidence: Optional[np.ndarray] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Return encoded inputs, invisible mask and features of a window for ``model``.

    ``geo_evidence``: the geometric channels as computed with the classifier's state over the
    stream (real windows); None computes them with a fresh geometric classifier.
    """
    depth = None if window.depth is None else torch.from_numpy(
        np.asarray(window.depth, np.float32))
    evidence = None
    if model.cfg.geo_evidence and geo_evidence is not None:
        evidence = torch.from_numpy(np.asarray(geo_evidence, np.float32))
    elif model.cfg.geo_evidence:   # a fresh classifier: no history, every track a candidate
        epipolar = model.cfg.geo_epipolar
        evidence = torch.from_numpy(GeometricClassifier(
            threads=1, epipolar_scores=epipolar).evidence(window, StageContext(), epipolar))
    visibility = None if window.visibility is None else torch.from_numpy(
        np.asarray(window.visibility, np.float32))
    inputs, invisible = model.prepare(
        torch.from_numpy(np.asarray(window.xy, np.float32)),
        torch.from_numpy(np.asarray(window.visible, bool)),
        torch.from_numpy(np.asarray(window.confidence, np.float32)),
        window.image_size, depth, reference_quirks, evidence=evidence, visibility=visibility)
    feats = None if window.features is None else torch.from_numpy(
        np.asarray(window.features, np.float32))
    return inputs, invisible, feats


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, max_pos_weight: float = 30.0
                 ) -> torch.Tensor:
    """BCE with positive weight #neg/#pos of this window (paper section 9), capped."""
    pos = labels.sum()
    neg = labels.numel() - pos
    weight = torch.clamp(neg / torch.clamp(pos, min=1.0), min=1.0, max=max_pos_weight)
    return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)


# ---------------------------------------------------------------------------- metrics
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties averaged); NaN when only one class is present."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float('nan')
    order = np.argsort(scores, kind='mergesort')
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):   # average ranks of ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def binary_metrics(pred: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Precision, recall, F1 of boolean predictions."""
    pred = np.asarray(pred, bool)
    labels = np.asarray(labels).astype(bool)
    tp = float(np.sum(pred & labels))
    fp = float(np.sum(pred & ~labels))
    fn = float(np.sum(~pred & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {'precision': precision, 'recall': recall, 'f1': f1}


# ---------------------------------------------------------------------------- data
def _subsample(sample: SyntheticWindow, rng: np.random.Generator, max_tracks: int
               ) -> SyntheticWindow:
    n = sample.window.num_tracks
    if n <= max_tracks:
        return sample
    keep = np.sort(rng.choice(n, size=max_tracks, replace=False))
    return SyntheticWindow(sample.window.subset(keep), sample.labels[keep], sample.meta)


def training_window(cfg: Mapping[str, Any], index: int) -> SyntheticWindow:
    """Training window ``index`` of the run (deterministic in seed and index)."""
    rng = np.random.default_rng([int(cfg['seed']), int(index)])
    spec = SceneSpec(hard_negatives=bool(cfg['data']['hard_negatives']))
    short = cfg['data'].get('short_windows')
    if short is not None:
        spec.num_frames = int(rng.integers(2, 16)) if rng.random() < float(short) else 16
    sample = generate_window(rng, spec)
    lo, hi = cfg['data']['max_tracks']
    sample = _subsample(sample, rng, int(rng.integers(int(lo), int(hi) + 1)))
    if sample.window.depth is not None and rng.random() < float(cfg['data']['depth_drop']):
        sample.window.depth = None
    return sample


def validation_windows(cfg: Mapping[str, Any]) -> List[SyntheticWindow]:
    """Return the fixed validation set."""
    data = cfg['data']
    out = []
    for i in range(int(data['val_windows'])):
        rng = np.random.default_rng([int(data['val_seed']), i])
        spec = SceneSpec(hard_negatives=bool(data['hard_negatives']))
        out.append(_subsample(generate_window(rng, spec), rng,
                              int(data['val_max_tracks'])))
    return out


def open_real_tracks(cfg: Mapping[str, Any], log=print) -> Optional[RealTrackSet]:
    """Open the real windows ``data.real`` asks for (extracted or cached); None at ratio 0."""
    real = cfg['data']['real']
    ratio = float(real['ratio'])
    if not 0.0 <= ratio <= 1.0:
        raise TrainingError(f'data.real.ratio must be in [0, 1], not {ratio}')
    if ratio == 0.0:
        return None
    if not real.get('root'):
        raise TrainingError('data.real.ratio > 0 needs data.real.root (or --real-root): a '
                            'DAVIS-layout folder such as the DAVIS-2016 train export of '
                            '../shared/tools/davis2016_train.sh')
    if not real.get('cache'):
        raise TrainingError('data.real.cache (or --real-cache) must name a cache folder')
    setup = inference_setup(geo_epipolar=bool(MosegConfig.from_dict(cfg['model']).geo_epipolar))
    try:
        return RealTrackSet(real['root'], real['cache'], setup, float(real['boundary_px']),
                            real.get('sequences'), log=log)
    except RealTracksError as exc:
        raise TrainingError(str(exc)) from exc


def training_sample(cfg: Mapping[str, Any], index: int, real: Optional[RealTrackSet]
                    ) -> Sample:
    """Training window ``index``: real with probability ``data.real.ratio``, else synthetic.

    The choice and the real draw come from the seed sequence (seed, index, 1), so the
    synthetic windows of a run are those of a synthetic-only run with the same seed.
    """
    if real is not None:
        rng = np.random.default_rng([int(cfg['seed']), int(index), 1])
        if rng.random() < float(cfg['data']['real']['ratio']):
            return real.sample(rng, cfg['data'].get('short_windows'))
    return training_window(cfg, index)


def real_validation_windows(cfg: Mapping[str, Any], real: Optional[RealTrackSet]
                            ) -> List[RealWindow]:
    """Return a fixed sample of real windows (from ``val_seed``); empty without real data."""
    if real is None:
        return []
    data = cfg['data']
    return [real.sample(np.random.default_rng([int(data['val_seed']), i, 1]),
                        data.get('short_windows'))
            for i in range(int(data['real']['val_windows']))]


def sample_parts(sample: Sample, loss_on: str
                 ) -> Tuple[TrackWindow, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(window, float labels, scored-track mask, stored evidence or None) of a sample."""
    keep = scored_tracks(sample.window, loss_on)
    if isinstance(sample, RealWindow):
        keep &= sample.labels != IGNORE
        return sample.window, (sample.labels == MOVING).astype(np.float32), keep, sample.evidence
    return sample.window, sample.labels.astype(np.float32), keep, None


def scored_tracks(window: TrackWindow, loss_on: str) -> np.ndarray:
    """Boolean (N,) mask of the tracks the loss and the metrics count."""
    if loss_on == 'alive':
        return np.asarray(window.visible[:, -1], bool)
    if loss_on == 'all':
        return np.ones(window.num_tracks, bool)
    raise TrainingError(f"data.loss_on must be 'alive' or 'all', not {loss_on!r}")


@torch.no_grad()
def evaluate(model: MosegModel, windows: Sequence[Sample], threshold: float = 0.5,
             loss_on: str = 'alive') -> Dict[str, float]:
    """Pooled ROC-AUC / precision / recall / F1 and mean loss over windows (eval mode)."""
    was_training = model.training
    model.eval()
    probs, labels, losses = [], [], []
    for sample in windows:
        window, lab_np, keep_np, evidence = sample_parts(sample, loss_on)
        keep = torch.from_numpy(keep_np)
        if not bool(keep.any()):
            continue
        inputs, invisible, feats = window_tensors(window, model, geo_evidence=evidence)
        logits = model(inputs, invisible, feats)[keep]
        lab = torch.from_numpy(lab_np)[keep]
        losses.append(float(weighted_bce(logits, lab)))
        probs.append(torch.sigmoid(logits).numpy())
        labels.append(lab.numpy())
    model.train(was_training)
    p = np.concatenate(probs)
    y = np.concatenate(labels)
    out = {'loss': float(np.mean(losses)), 'auc': roc_auc(p, y)}
    out.update(binary_metrics(p >= threshold, y > 0.5))
    out['best_threshold'], out['best_f1'] = best_f1_threshold(p, y > 0.5)
    return out


def best_f1_threshold(prob: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """Threshold in 0.05..0.95 with the highest F1 (ties: the lower one), and that F1."""
    best = (0.5, -1.0)
    for thr in np.round(np.arange(0.05, 0.951, 0.05), 2):
        f1 = binary_metrics(prob >= thr, labels)['f1']
        if f1 > best[1] + 1e-12:
            best = (float(thr), float(f1))
    return best


# ---------------------------------------------------------------------------- the loop
def _lr(cfg: Mapping[str, Any], step: int) -> float:
    opt, total = cfg['optim'], int(cfg['schedule']['steps'])
    warm = int(opt['warmup_steps'])
    if step < warm:
        return float(opt['lr']) * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return float(opt['min_lr']) + 0.5 * (float(opt['lr']) - float(opt['min_lr'])) * (
        1 + math.cos(math.pi * frac))


def train(cfg: Mapping[str, Any], output: Union[str, Path], resume: bool = False,
          log=print) -> Dict[str, Any]:
    """Run (or resume) training as configured; return the summary written to the folder."""
    output = Path(output)
    last = output / 'last.pth'
    if output.exists() and any(output.iterdir()) and not resume:
        raise TrainingError(f'output folder {output} is not empty; use --resume to continue '
                            'or choose a new folder')
    if resume and not last.is_file():
        raise TrainingError(f'cannot resume: {last} does not exist')
    output.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.get('threads', 1)))
    torch.manual_seed(int(cfg['seed']))
    model_cfg = MosegConfig.from_dict(cfg['model'])
    model = MosegModel(model_cfg)
    optim_cfg = cfg['optim']
    optimizer = torch.optim.Adam(model.parameters(), lr=float(optim_cfg['lr']),
                                 weight_decay=float(optim_cfg['weight_decay']))
    step, elapsed, best_auc = 0, 0.0, -1.0
    if resume:
        state = torch.load(str(last), map_location='cpu', weights_only=False)
        if state.get('model_config') != model_cfg.to_dict():
            raise TrainingError('cannot resume: the model options differ from the checkpoint')
        model.load_state_dict(state['model_state_dict'])
        optimizer.load_state_dict(state['optimizer_state_dict'])
        torch.set_rng_state(state['torch_rng'])
        step, elapsed = int(state['step']), float(state['elapsed_s'])
        best_auc = float(state.get('best_auc', -1.0))
        log(f'resumed at step {step} ({elapsed / 60:.1f} min trained)')
    with open(output / 'config.yaml', 'w', encoding='utf-8') as f:
        yaml.safe_dump(json.loads(json.dumps(cfg)), f, sort_keys=False)
    val = validation_windows(cfg)
    real = open_real_tracks(cfg, log)
    val_real = real_validation_windows(cfg, real)
    sched = cfg['schedule']
    total = int(sched['steps'])
    budget = float(sched['time_budget_min']) * 60.0
    val_path = output / 'val_log.csv'
    if not val_path.exists():
        with open(val_path, 'w', newline='') as f:
            csv.writer(f).writerow(['step', 'elapsed_s', 'loss', 'auc', 'precision', 'recall',
                                    'f1', 'best_threshold', 'best_f1'] + (
                ['real_loss', 'real_auc', 'real_f1', 'real_best_threshold', 'real_best_f1']
                if real is not None else []))
    meta: Dict[str, Any] = {'generator_version': GENERATOR_VERSION, 'seed': int(cfg['seed'])}
    if real is not None:
        meta['real_data'] = {'root': Path(str(cfg['data']['real']['root'])).name,
                             'sequences': list(real.names), 'windows': len(real),
                             'ratio': float(cfg['data']['real']['ratio']),
                             'cache_key': real.key}

    def checkpoint(path: Path) -> None:
        tmp = Path(str(path) + '.tmp')
        torch.save({'model_state_dict': model.state_dict(),
                    'optimizer_state_dict': optimizer.state_dict(),
                    'model_config': model_cfg.to_dict(), 'step': step,
                    'elapsed_s': elapsed, 'best_auc': best_auc,
                    'torch_rng': torch.get_rng_state(), **meta}, str(tmp))
        tmp.replace(path)

    def validate() -> Dict[str, float]:
        nonlocal best_auc, final_real
        metrics = evaluate(model, val, loss_on=str(cfg['data']['loss_on']))
        row = [step, round(elapsed, 1)] + [
            round(metrics[k], 5) for k in ('loss', 'auc', 'precision', 'recall', 'f1',
                                           'best_threshold', 'best_f1')]
        log(f'step {step}: val ' + ' '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
        if val_real:
            final_real = evaluate(model, val_real, loss_on=str(cfg['data']['loss_on']))
            row += [round(final_real[k], 5) for k in ('loss', 'auc', 'f1', 'best_threshold',
                                                      'best_f1')]
            log(f'step {step}: real (train windows) ' + ' '.join(
                f'{k} {v:.4f}' for k, v in final_real.items()))
        with open(val_path, 'a', newline='') as f:
            csv.writer(f).writerow(row)
        if metrics['auc'] > best_auc:
            best_auc = metrics['auc']
            save_checkpoint(output / 'best.pth', model, step=step, val=metrics, **meta)
        return metrics

    final_real: Optional[Dict[str, float]] = None
    model.train()
    running: List[float] = []
    t_last = time.perf_counter()
    with open(output / 'train_log.jsonl', 'a', encoding='utf-8') as jlog:
        while step < total and elapsed < budget:
            sample = training_sample(cfg, step, real)
            window, lab_np, keep_np, evidence = sample_parts(sample,
                                                             str(cfg['data']['loss_on']))
            keep = torch.from_numpy(keep_np)
            if not bool(keep.any()):
                step += 1
                continue
            inputs, invisible, feats = window_tensors(window, model, geo_evidence=evidence)
            labels = torch.from_numpy(lab_np)[keep]
            for group in optimizer.param_groups:
                group['lr'] = _lr(cfg, step)
            logits = model(inputs, invisible, feats)[keep]
            loss = weighted_bce(logits, labels, float(optim_cfg['max_pos_weight']))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(optim_cfg['grad_clip']))
            optimizer.step()
            running.append(loss.item())
            step += 1
            now = time.perf_counter()
            elapsed += now - t_last
            t_last = now
            if step % int(sched['log_every']) == 0:
                rec = {'step': step, 'elapsed_s': round(elapsed, 1),
                       'loss': float(np.mean(running)), 'lr': _lr(cfg, step - 1)}
                jlog.write(json.dumps(rec) + '\n')
                jlog.flush()
                running = []
            if step % int(sched['checkpoint_every']) == 0:
                checkpoint(last)
            if step % int(sched['val_every']) == 0:
                validate()
                t_last = time.perf_counter()    # validation time is not training time
    final = validate()
    checkpoint(last)
    # the decision threshold the classifier uses by default: best F1 on synthetic validation
    save_checkpoint(output / 'model.pth', model, step=step, val=final,
                    threshold=final['best_threshold'], training_time_s=round(elapsed, 1),
                    **meta)
    summary = {'steps': step, 'training_time_s': round(elapsed, 1), 'final_val': final,
               'final_val_real_train_windows': final_real,
               'best_val_auc': best_auc, 'model_config': model_cfg.to_dict(), **meta}
    with open(output / 'summary.json', 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    return summary
