"""Train the mask head densifier from scratch on DAVIS-2016 train (CPU, one thread).

Data: the recorded pipeline inputs of :mod:`.mask_head_data` (every train sequence, each frame
after the first). A sample is one frame: its 9 recorded channels plus the previous ground truth
warped and corrupted (the previous-mask channel), a random crop resized to 96x176, a horizontal
flip (the residual's x negated) and colour jitter. Loss: BCE + soft Dice. AdamW with a warm-up
and cosine decay; the schedule's progress is the larger of steps done / steps and time spent /
time budget, so a slow machine still ends on a decayed learning rate inside the budget (such a
run is not bit-reproducible; one that reaches its step count is, for a given seed and thread
count). The decision threshold is chosen afterwards on the train sequences (mean J, running
each sequence causally with the net's own previous mask) and stored in the checkpoint: nothing
is chosen on validation data.

Output folder: ``config.yaml``, ``train_log.jsonl``, ``step_NNNNN.pth`` every
``checkpoint_every`` steps, ``model.pth`` (what ``densifier.params.weights`` loads) and
``summary.json``.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml

from motionseg_ros.densifiers.mask_head_inputs import BGR, CHANNELS, RESIDUAL_X, STD
from motionseg_ros.models.mask_head import MaskHeadNet, num_params, save_mask_head
from motionseg_ros.training.mask_head_data import (DataError, SequenceInputs, build_cache,
                                                   corrupt_mask, warp_by_flow)
from motionseg_ros.training.settings import TrainingError, read_settings

DEFAULTS: Dict[str, Any] = {
    'seed': 0,
    'threads': 1,
    'data': {'scale': 0.25, 'sequences': None, 'jobs': 2, 'max_frames': None,
             'prev_drop': 0.3, 'crop': [96, 176], 'crop_scale': [0.6, 1.0],
             'aspect_jitter': 0.1, 'hflip': 0.5, 'jitter': 0.2},
    'model': {'widths': [16, 32, 64, 96]},
    'optim': {'lr': 2.0e-3, 'min_lr': 2.0e-5, 'weight_decay': 1.0e-4, 'warmup_steps': 100,
              'batch': 16, 'dice_weight': 1.0},
    'schedule': {'steps': 3000, 'time_budget_min': 65.0, 'log_every': 25,
                 'checkpoint_every': 500},
    'threshold': {'candidates': [round(0.2 + 0.05 * i, 2) for i in range(13)],
                  'chain_threshold': 0.5},
}


def load_training_config(path: Optional[Union[str, Path]] = None,
                         overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Return DEFAULTS merged with the YAML at ``path`` and ``overrides`` (unknown keys: error)."""
    return read_settings(DEFAULTS, path, overrides)


# ----------------------------------------------------------------------------- samples
class SampleMaker:
    """Draws augmented (input, target) crops from the recorded sequences."""

    def __init__(self, seqs: Sequence[SequenceInputs], data: Mapping[str, Any]) -> None:
        """Index every record of every sequence."""
        self.seqs = list(seqs)
        self.d = data
        self.items = [(i, t) for i, s in enumerate(self.seqs) for t in range(len(s))]
        if not self.items:
            raise TrainingError('no recorded frames to train on')

    def full(self, i: int, t: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Return the whole-frame (CHANNELS, h, w) input and (h, w) target of one record."""
        s = self.seqs[i]
        prev = corrupt_mask(s.previous_gt_warped(t), rng, float(self.d['prev_drop']))
        x = np.concatenate([s.inputs[t].astype(np.float32), prev[None]])
        return x, s.target(t)

    def sample(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Return one augmented crop: (CHANNELS, ch, cw) input and (ch, cw) target."""
        i, t = self.items[int(rng.integers(len(self.items)))]
        x, y = self.full(i, t, rng)
        _, hs, ws = x.shape
        out_h, out_w = (int(v) for v in self.d['crop'])
        lo, hi = (float(v) for v in self.d['crop_scale'])
        ch = min(hs, max(8, int(round(rng.uniform(lo, hi) * hs))))
        aspect = out_w / out_h * (1 + rng.uniform(-1, 1) * float(self.d['aspect_jitter']))
        cw = min(ws, max(8, int(round(ch * aspect))))
        y0 = int(rng.integers(0, hs - ch + 1))
        x0 = int(rng.integers(0, ws - cw + 1))
        stack = np.concatenate([x, y[None]])[:, y0:y0 + ch, x0:x0 + cw].transpose(1, 2, 0)
        stack = cv2.resize(np.ascontiguousarray(stack), (out_w, out_h),
                           interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        x, y = stack[:-1].copy(), stack[-1].copy()
        if rng.random() < float(self.d['hflip']):
            x = x[:, :, ::-1].copy()
            y = y[:, ::-1].copy()
            x[RESIDUAL_X] *= -1.0
        j = float(self.d['jitter'])
        if j > 0:  # contrast, brightness and a per-channel gain, in normalised units
            contrast = 1 + rng.uniform(-j, j)
            bright = rng.uniform(-j, j) / STD * 0.5
            gain = 1 + rng.uniform(-j, j, size=3) * 0.25
            x[BGR] = (x[BGR] * contrast + bright) * gain[:, None, None]
        return x, y

    def batch(self, n: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return n stacked samples: inputs (n, CHANNELS, H, W), targets (n, 1, H, W)."""
        xs, ys = zip(*(self.sample(rng) for _ in range(n)))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)[:, None])


def loss_fn(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0
            ) -> torch.Tensor:
    """BCE plus soft Dice (per sample, averaged): Dice keeps small objects from vanishing."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    den = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (den + 1)
    return bce + dice_weight * dice.mean()


def lr_at(progress: float, optim: Mapping[str, Any], steps: int, step: int) -> float:
    """Warm-up for ``warmup_steps``, then cosine from ``lr`` to ``min_lr`` over the progress."""
    lr, min_lr = float(optim['lr']), float(optim['min_lr'])
    warm = int(optim['warmup_steps'])
    if step < warm:
        return lr * (step + 1) / warm
    p = min(1.0, max(0.0, progress))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------- threshold
@torch.inference_mode()
def sequence_probabilities(model: MaskHeadNet, seq: SequenceInputs, chain: float
                           ) -> List[np.ndarray]:
    """Run one sequence causally: the previous-mask channel is the net's own mask, warped."""
    model.eval()
    out: List[np.ndarray] = []
    prev: Optional[np.ndarray] = None
    for t in range(len(seq)):
        if prev is not None and seq.index[t] - 1 == seq.index[t - 1]:
            pm = warp_by_flow(prev, seq.flow[t].astype(np.float32))
        else:
            pm = np.zeros(seq.gt.shape[1:], np.float32)
        x = np.concatenate([seq.inputs[t].astype(np.float32), pm[None]])
        p = torch.sigmoid(model(torch.from_numpy(x)[None]))[0, 0].numpy()
        out.append(p)
        prev = (p >= chain).astype(np.float32)
    return out


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Return J (IoU); 1 when both are empty (the DAVIS convention)."""
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def choose_threshold(model: MaskHeadNet, seqs: Sequence[SequenceInputs],
                     candidates: Sequence[float], chain: float) -> Tuple[float, Dict[str, float]]:
    """Return the candidate with the best mean per-sequence J on ``seqs``, and J per candidate."""
    per_cand = {float(c): [] for c in candidates}
    for seq in seqs:
        probs = sequence_probabilities(model, seq, chain)
        gts = [seq.gt[seq.index[t]] > 127 for t in range(len(seq))]
        for c in per_cand:
            per_cand[c].append(float(np.mean([jaccard(p >= c, g) for p, g in zip(probs, gts)])))
    mean_j = {c: float(np.mean(v)) for c, v in per_cand.items()}
    best = max(mean_j, key=lambda c: (mean_j[c], -abs(c - 0.5)))
    return best, mean_j


# ----------------------------------------------------------------------------- training
def train(cfg: Mapping[str, Any], data_root: Union[str, Path], cache: Union[str, Path],
          output: Union[str, Path], log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Record (or reuse) the inputs, train, choose the threshold, write ``model.pth``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'config.yaml').write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
    threads = int(cfg['threads'])
    if threads > 0:
        torch.set_num_threads(threads)
    seed = int(cfg['seed'])
    d = cfg['data']
    t0 = time.perf_counter()
    try:
        paths = build_cache(Path(data_root), Path(cache), d['sequences'], float(d['scale']),
                            int(d['jobs']), d['max_frames'], log)
        seqs = [SequenceInputs.load(p) for p in paths]
    except DataError as exc:
        raise TrainingError(str(exc)) from exc
    record_s = time.perf_counter() - t0
    maker = SampleMaker(seqs, d)
    log(f'{len(seqs)} sequences, {len(maker.items)} training frames '
        f'(inputs ready in {record_s:.0f} s)')
    # seeded and threaded here, after the recording (its pipeline may draw from torch's
    # generator and sets torch's thread count): the same run with or without a cache
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MaskHeadNet(CHANNELS, cfg['model']['widths'])
    o = cfg['optim']
    opt = torch.optim.AdamW(model.parameters(), lr=float(o['lr']),
                            weight_decay=float(o['weight_decay']))
    s = cfg['schedule']
    steps = int(s['steps'])
    budget_s = float(s['time_budget_min']) * 60.0
    log(f'model: {num_params(model)} parameters; {steps} steps, batch {o["batch"]}, '
        f'budget {budget_s / 60:.0f} min, {threads} thread(s)')
    log_file = open(out / 'train_log.jsonl', 'w', encoding='utf-8')
    t_train = time.perf_counter()
    recent: List[float] = []
    step = 0
    progress = 0.0
    try:
        while step < steps and progress < 1.0:
            model.train()
            lr = lr_at(progress, o, steps, step)
            for group in opt.param_groups:
                group['lr'] = lr
            x, y = maker.batch(int(o['batch']), rng)
            loss = loss_fn(model(x), y, float(o['dice_weight']))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            recent = (recent + [loss.item()])[-100:]
            elapsed = time.perf_counter() - t_train
            progress = max(step / steps, elapsed / budget_s if budget_s > 0 else 0.0)
            if step % int(s['log_every']) == 0 or step == 1:
                row = {'step': step, 'loss': recent[-1], 'loss_avg100': float(np.mean(recent)),
                       'lr': lr, 'elapsed_s': round(elapsed, 1)}
                log_file.write(json.dumps(row) + '\n')
                log_file.flush()
                log(f'step {step} loss {row["loss_avg100"]:.4f} lr {lr:.2e} '
                    f'{elapsed / step:.2f} s/step')
            if int(s['checkpoint_every']) > 0 and step % int(s['checkpoint_every']) == 0:
                save_mask_head(model, out / f'step_{step:05d}.pth', 0.5, {'step': step})
    finally:
        log_file.close()
    train_s = time.perf_counter() - t_train
    t_thr = time.perf_counter()
    tcfg = cfg['threshold']
    threshold, j_by_thr = choose_threshold(model, seqs, tcfg['candidates'],
                                           float(tcfg['chain_threshold']))
    thr_s = time.perf_counter() - t_thr
    log(f'threshold {threshold} (train mean J {j_by_thr[threshold]:.4f}; chosen in '
        f'{thr_s:.0f} s)')
    meta = {
        'data': 'DAVIS-2016 train (' + ', '.join(s_.name for s_ in seqs) + ')',
        'steps': step, 'training_time_s': round(train_s, 1),
        'final_loss_avg100': float(np.mean(recent)) if recent else None,
        'threshold_chosen_on': 'DAVIS-2016 train, mean J per sequence (quarter resolution)',
        'train_mean_j_at_threshold': j_by_thr[threshold], 'seed': seed, 'threads': threads,
        'machine': f'{platform.machine()} {platform.processor() or ""}'.strip(),
        'torch': str(torch.__version__),
    }
    save_mask_head(model, out / 'model.pth', threshold, meta)
    summary = dict(meta, threshold=threshold, j_by_threshold=j_by_thr,
                   record_time_s=round(record_s, 1), parameters=num_params(model),
                   frames=len(maker.items))
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))
    return summary
