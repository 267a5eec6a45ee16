"""Training data of the mask head: the real pipeline's inputs per frame, with the ground truth.

Each train sequence runs through :class:`~motionseg_ros.pipeline.StreamingPipeline` with the
packaged default config, except that the densifier is :class:`RecordingDensifier`: the
``mask_head`` densifier's own input code, which records the inputs instead of predicting. So
the inputs at training are the inputs at inference (same tracker, classifier, flows, splatting).
The previous-mask channel is the one exception: at inference it is the net's previous mask
warped by the flow; for training it is rebuilt per sample from the previous *ground truth*,
warped by the recorded flow and corrupted (:func:`corrupt_mask`), so the net learns to trust it
only as far as the other channels agree.

Cache: ``CACHE/<config hash>/<sequence>.npz`` (inputs float16, flow float16, ground truth
uint8 at input scale); the hash covers the pipeline config and the input version, so a changed
pipeline never reuses stale inputs.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from motionseg_ros.densifiers.mask_head import MaskHeadDensifier
from motionseg_ros.densifiers.mask_head_inputs import INPUTS_VERSION, InputBuilder, small_size
from motionseg_ros.stages import StageContext
from motionseg_ros.types import Frame, ObjectMask, TrackWindow

RECORDED = 9   # channels recorded: all but the previous mask
TRAIN_EXPORT_HINT = ('export DAVIS-2016 train with ../shared/tools/davis2016_train.sh '
                     '(see its header)')


class DataError(ValueError):
    """Training data that cannot be found or read."""


class RecordingDensifier(MaskHeadDensifier):
    """The mask head's input code without a net: records inputs, carries the ground truth.

    Set ``gt_small`` (the frame's ground truth at input scale) before each ``process``; it
    plays the previous mask for the next frame's background fit, as the net's mask does at
    inference.
    """

    def __init__(self, scale: float = 0.25, threads: int = 2) -> None:
        """No weights: this backend never predicts."""
        self.weights = ''
        self.min_area = 0.0
        self.threads = int(threads)
        self.threshold = 0.5
        self.meta: Dict[str, Any] = {}
        self.builder = InputBuilder(float(scale))
        self._pool = None
        self._pending = None
        self.gt_small: Optional[np.ndarray] = None
        self.records: List[Tuple[int, np.ndarray, np.ndarray]] = []
        self.reset()

    def densify(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                object_ids: np.ndarray, prob: np.ndarray, ctx: StageContext
                ) -> List[ObjectMask]:
        """Record (frame index, inputs, backward flow); no objects."""
        step = self.inputs(frame, window, prob)
        if step is not None:
            x, motion = step
            hs, ws = motion.gray.shape
            gx, gy = np.meshgrid(np.arange(ws, dtype=np.float32), np.arange(hs, dtype=np.float32))
            flow = np.stack([motion.map_x - gx, motion.map_y - gy])
            self.records.append((frame.index, x[:RECORDED].astype(np.float16),
                                 flow.astype(np.float16)))
        if self.gt_small is not None:
            self._prev_labels = (self.gt_small > 0.5).astype(np.int64)
        return []


def recording_config(base: Optional[Mapping[str, Any]] = None, scale: float = 0.25
                     ) -> Dict[str, Any]:
    """Return the pipeline config (the packaged default unless ``base``) with the recorder."""
    import copy

    from motionseg_ros.config import load_config
    cfg = copy.deepcopy(dict(base)) if base is not None else load_config()
    cfg['densifier'] = {'name': f'{__name__}:RecordingDensifier',
                        'params': {'scale': float(scale)}}
    return cfg


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Return a short hash of the pipeline config and the input version (the cache key)."""
    text = json.dumps({'config': cfg, 'inputs_version': INPUTS_VERSION}, sort_keys=True,
                      default=str)
    return hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]


def gt_small(labels: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Return the merged foreground at input scale as uint8 0..255 (area average)."""
    fg = (labels > 0).astype(np.float32)
    return np.round(cv2.resize(fg, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) * 255
                    ).astype(np.uint8)


def record_sequence(seq: Any, cfg: Mapping[str, Any], scale: float, out: Path) -> Path:
    """Run the pipeline over ``seq`` (a dataset SequenceData) and write its npz."""
    from motionseg_ros.pipeline import StreamingPipeline
    box: Dict[str, Any] = {}

    def target() -> None:  # a fresh thread: OpenCV's per-thread RNG starts fresh per sequence
        pipe = StreamingPipeline(cfg)
        rec = pipe.stages['densifier']
        gts: List[np.ndarray] = []
        try:
            for i in range(len(seq)):
                image = seq.image(i)
                labels, _ = seq.gt(i)
                g = gt_small(labels, small_size(image.shape[:2], scale))
                gts.append(g)
                rec.gt_small = g.astype(np.float32) / 255.0
                pipe.process(Frame(image=image, stamp_ns=int(round(i * 1e9 / seq.fps)),
                                   index=i, name=seq.frame_names[i]))
        finally:
            pipe.close()
        box['gts'], box['records'] = gts, rec.records

    thread = threading.Thread(target=target, name=f'record-{seq.name}')
    thread.start()
    thread.join()
    if 'records' not in box:
        raise DataError(f'{seq.name}: recording failed (see the traceback above)')
    records = box['records']
    if not records:
        raise DataError(f'{seq.name}: no frame recorded (a sequence needs 2 frames)')
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + '.tmp.npz')
    np.savez(tmp, index=np.array([r[0] for r in records], np.int64),
             inputs=np.stack([r[1] for r in records]), flow=np.stack([r[2] for r in records]),
             gt=np.stack(box['gts']))
    tmp.replace(out)
    return out


def _record_job(args: Tuple[str, str, Dict[str, Any], float, str]) -> str:
    root, name, cfg, scale, out = args
    import torch

    from motionseg_ros.evaluation.datasets import open_dataset
    from motionseg_ros.evaluation.evaluate import thread_budget_config
    torch.set_num_threads(1)
    seq = open_dataset(root).sequences[name]
    return str(record_sequence(seq, thread_budget_config(cfg, 1), scale, Path(out)))


def check_root(root: Path) -> None:
    """Raise DataError naming the export script when the DAVIS-2016 train root is missing."""
    if not (Path(root) / 'JPEGImages').is_dir():
        raise DataError(f'DAVIS-2016 train not found at {root} (no JPEGImages/): '
                        f'{TRAIN_EXPORT_HINT}')


def build_cache(root: Path, cache: Path, sequences: Optional[Sequence[str]] = None,
                scale: float = 0.25, jobs: int = 1, max_frames: Optional[int] = None,
                log: Callable[[str], None] = print) -> List[Path]:
    """Record every (or the named) sequence of ``root`` not yet cached; return the npz paths."""
    from motionseg_ros.evaluation.datasets import DatasetError, open_dataset
    root = Path(root)
    check_root(root)
    try:
        dataset = open_dataset(root)
    except DatasetError as exc:
        raise DataError(f'{exc} ({TRAIN_EXPORT_HINT})') from exc
    cfg = recording_config(scale=scale)
    key = config_hash(cfg) + (f'-first{max_frames}' if max_frames else '')
    folder = Path(cache) / key
    seqs = dataset.select(list(sequences) if sequences else None)
    if max_frames:
        seqs = [s.truncated(max_frames) for s in seqs]
    paths = [folder / f'{s.name}.npz' for s in seqs]
    todo = [(s, p) for s, p in zip(seqs, paths) if not p.is_file()]
    if todo:
        log(f'recording {len(todo)} of {len(seqs)} sequences into {folder} ({jobs} jobs)')
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'config.json').write_text(json.dumps(cfg, indent=1, default=str))
    if jobs <= 1 or len(todo) <= 1:
        for s, p in todo:
            record_sequence(s, cfg, scale, p)
            log(f'  recorded {s.name} ({len(s)} frames)')
    else:
        args = [(str(root), s.name, cfg, scale, str(p)) for s, p in todo]
        if max_frames:  # truncated sequences: record in this process
            for s, p in todo:
                record_sequence(s, cfg, scale, p)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for path in pool.map(_record_job, args):
                    log(f'  recorded {Path(path).stem}')
    return paths


@dataclass
class SequenceInputs:
    """One recorded sequence, in memory."""

    name: str
    index: np.ndarray    # (T,) frame index of each record (the first frame has none)
    inputs: np.ndarray   # (T, 9, h, w) float16
    flow: np.ndarray     # (T, 2, h, w) float16, current -> previous, input-scale px
    gt: np.ndarray       # (N, h, w) uint8 for every frame of the sequence

    @classmethod
    def load(cls, path: Path) -> 'SequenceInputs':
        """Read one cached npz."""
        try:
            with np.load(path) as z:
                return cls(Path(path).stem, z['index'], z['inputs'], z['flow'], z['gt'])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f'cannot read cached inputs {path}: {exc}; delete it to record '
                            'it again') from exc

    def __len__(self) -> int:
        """Return the number of records."""
        return int(self.index.shape[0])

    def target(self, t: int) -> np.ndarray:
        """Return record ``t``'s ground truth in [0, 1] (h, w) float32."""
        return self.gt[self.index[t]].astype(np.float32) / 255.0

    def previous_gt_warped(self, t: int) -> np.ndarray:
        """Return the previous frame's ground truth warped to record ``t`` (h, w) float32."""
        prev = self.gt[self.index[t] - 1].astype(np.float32) / 255.0
        return warp_by_flow(prev, self.flow[t].astype(np.float32))


def warp_by_flow(prev: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Warp a previous-frame map with the (2, h, w) current -> previous flow (0 outside)."""
    hs, ws = prev.shape
    gx, gy = np.meshgrid(np.arange(ws, dtype=np.float32), np.arange(hs, dtype=np.float32))
    return cv2.remap(prev, gx + flow[0], gy + flow[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def corrupt_mask(m: np.ndarray, rng: np.random.Generator, drop: float = 0.3) -> np.ndarray:
    """Return the warped previous ground truth as an imperfect previous prediction.

    Dropped (all zero) with probability ``drop`` (a first frame, a lost object); otherwise
    eroded or dilated, shifted by up to 4 px, scaled by up to 10 % about its centre, holes
    cut and blobs added, blurred.
    """
    if rng.random() < drop or not m.any():
        return np.zeros_like(m)
    hs, ws = m.shape
    out = m.astype(np.float32)
    r = int(rng.integers(0, 3))
    if r:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        out = cv2.erode(out, kernel) if rng.random() < 0.5 else cv2.dilate(out, kernel)
    ys, xs = np.nonzero(out > 0.5)
    cx, cy = (xs.mean(), ys.mean()) if xs.size else (ws / 2, hs / 2)
    s = float(rng.uniform(0.9, 1.1))
    dx, dy = rng.uniform(-4, 4, size=2)
    affine = np.array([[s, 0, (1 - s) * cx + dx], [0, s, (1 - s) * cy + dy]], np.float32)
    out = cv2.warpAffine(out, affine, (ws, hs), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if xs.size and rng.random() < 0.3:  # holes inside the object
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(xs.size))
            axes = (int(rng.integers(2, 10)), int(rng.integers(2, 10)))
            cv2.ellipse(out, (int(xs[j]), int(ys[j])), axes, float(rng.uniform(0, 180)), 0, 360,
                        0.0, -1)
    if rng.random() < 0.3:  # false blobs anywhere
        for _ in range(int(rng.integers(1, 3))):
            c = (int(rng.integers(ws)), int(rng.integers(hs)))
            axes = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
            cv2.ellipse(out, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    sigma = float(rng.uniform(0, 2))
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    return np.clip(out, 0, 1)
