"""DAVIS region (J) and boundary (F) measures, written from the benchmark's definition.

J is the intersection over union of two binary masks (1 when both are empty). F is the
boundary F-measure: boundaries are one-pixel contours (``seg2bmap``) matched within a
tolerance of ``ceil(0.008 * image diagonal)`` pixels (a disk dilation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008


def jaccard(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """Region similarity J: |pred ∩ gt| / |pred ∪ gt|; 1 when both are empty."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in size')
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred = pred & keep
        gt = gt & keep
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt)) / float(union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask (the DAVIS toolkit's definition)."""
    seg = np.asarray(seg, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """Binary disk structuring element of the given radius (x² + y² <= r²)."""
    r = int(radius)
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def boundary_tolerance_px(shape: tuple, tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Return the matching distance in pixels for an image of ``shape``."""
    if tolerance >= 1:
        return int(tolerance)
    return int(math.ceil(tolerance * math.hypot(shape[0], shape[1])))


def f_measure(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE
              ) -> float:
    """Boundary F-measure of ``pred`` against ``gt``."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in size')
    radius = boundary_tolerance_px(pred.shape, tolerance)
    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_pred = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    kernel = _disk(radius)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
    precision = np.count_nonzero(pred_b & gt_dil) / n_pred
    recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def j_and_f(pred: np.ndarray, gt: np.ndarray) -> tuple:
    """(J, F, (J+F)/2) of one frame."""
    j = jaccard(pred, gt)
    f = f_measure(pred, gt)
    return j, f, (j + f) / 2.0


# ---------------------------------------------------------------------------------------------
# Merged foreground ("MOS"), per-object matching, aggregation and runtime figures.
# ---------------------------------------------------------------------------------------------

def j_recall(values: Sequence[float], threshold: float = 0.5) -> float:
    """Fraction of frames whose score exceeds ``threshold`` (the DAVIS "recall")."""
    values = np.asarray(list(values), float)
    if values.size == 0:
        return float('nan')
    return float(np.mean(values > threshold))


def decay(values: Sequence[float], bins: int = 4) -> float:
    """Score of the first quarter of the frames minus that of the last (DAVIS "decay")."""
    values = np.asarray(list(values), float)
    if values.size < bins:
        return 0.0
    parts = np.array_split(values, bins)
    return float(np.mean(parts[0]) - np.mean(parts[-1]))


def foreground(labels: np.ndarray, void_value: Optional[int] = None) -> np.ndarray:
    """Return the merged foreground of a label image: every non-zero, non-void label."""
    labels = np.asarray(labels)
    fg = labels != 0
    if void_value is not None:
        fg &= labels != void_value
    return fg


def mos_frame(pred_labels: np.ndarray, gt_labels: np.ndarray,
              void: Optional[np.ndarray] = None) -> Tuple[float, float]:
    """(J, F) of one frame with all predicted and all GT objects merged into one mask."""
    pred = foreground(pred_labels)
    gt = foreground(gt_labels)
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred = pred & keep
        gt = gt & keep
    return jaccard(pred, gt), f_measure(pred, gt)


@dataclass
class SequenceScore:
    """Scores of one sequence: per-frame J and F plus their means (DAVIS protocol)."""

    name: str
    frames: List[str]
    j: List[float]
    f: List[float]
    objects: Optional[Dict[str, Any]] = None   # per-object scores, when evaluated
    runtime: Optional[Dict[str, float]] = None
    missing: List[str] = field(default_factory=list)  # frames with no prediction

    @property
    def j_mean(self) -> float:
        """Mean J over the frames."""
        return float(np.mean(self.j)) if self.j else float('nan')

    @property
    def f_mean(self) -> float:
        """Mean F over the frames."""
        return float(np.mean(self.f)) if self.f else float('nan')

    @property
    def jf(self) -> float:
        """(mean J + mean F) / 2."""
        return (self.j_mean + self.f_mean) / 2.0

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary plus the per-frame values."""
        out: Dict[str, Any] = {
            'name': self.name, 'num_frames': len(self.j),
            'J': self.j_mean, 'F': self.f_mean, 'JF': self.jf,
            'J_recall': j_recall(self.j), 'F_recall': j_recall(self.f),
            'J_decay': decay(self.j), 'F_decay': decay(self.f),
            'frames': list(self.frames), 'J_per_frame': [float(v) for v in self.j],
            'F_per_frame': [float(v) for v in self.f], 'missing_frames': list(self.missing)}
        if self.objects is not None:
            out['objects'] = self.objects
        if self.runtime is not None:
            out['runtime'] = self.runtime
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> 'SequenceScore':
        """Inverse of :meth:`to_dict` (used to resume from the per-sequence cache)."""
        return SequenceScore(
            name=str(data['name']), frames=list(data.get('frames', [])),
            j=[float(v) for v in data['J_per_frame']], f=[float(v) for v in data['F_per_frame']],
            objects=data.get('objects'), runtime=data.get('runtime'),
            missing=list(data.get('missing_frames', [])))


def score_sequence_mos(name: str, frames: Sequence[str], preds: Sequence[np.ndarray],
                       gts: Sequence[np.ndarray],
                       voids: Optional[Sequence[Optional[np.ndarray]]] = None
                       ) -> SequenceScore:
    """Merged-foreground scores of one sequence (prediction and GT label images per frame)."""
    if not (len(frames) == len(preds) == len(gts)):
        raise ValueError('frames, predictions and ground truth differ in length')
    js, fs = [], []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        void = voids[i] if voids is not None else None
        j, f = mos_frame(pred, gt, void)
        js.append(j)
        fs.append(f)
    return SequenceScore(name=name, frames=list(frames), j=js, f=fs)


def object_ids(label_images: Iterable[np.ndarray], void_value: Optional[int] = None
               ) -> List[int]:
    """Sorted non-zero labels present anywhere in a sequence of label images."""
    ids: set = set()
    for lab in label_images:
        ids.update(int(v) for v in np.unique(lab))
    ids.discard(0)
    if void_value is not None:
        ids.discard(int(void_value))
    return sorted(ids)


def match_objects(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                  voids: Optional[Sequence[Optional[np.ndarray]]] = None,
                  max_pred_objects: int = 20) -> Dict[str, Any]:
    """Match predicted to GT objects one-to-one over a sequence (DAVIS-2017 unsupervised).

    For every (GT object, predicted object) pair, J and F are computed per frame and averaged
    over the frames; the Hungarian assignment maximises the mean (J+F)/2. Each GT object takes
    its matched prediction's per-frame scores; an unmatched GT object scores 0 on every frame
    (fewer predictions than GT objects, or none at all). Predicted objects beyond the
    ``max_pred_objects`` largest are ignored (the benchmark caps proposals the same way).
    Returns per-GT-object J/F means and per-frame J, the assignment and the sequence means
    (mean over GT objects).
    """
    from scipy.optimize import linear_sum_assignment

    if len(preds) != len(gts):
        raise ValueError('predictions and ground truth differ in length')
    gt_ids = object_ids(gts)
    pred_ids = object_ids(preds)
    if len(pred_ids) > max_pred_objects:
        areas = {i: sum(int(np.count_nonzero(p == i)) for p in preds) for i in pred_ids}
        pred_ids = sorted(sorted(pred_ids, key=lambda i: -areas[i])[:max_pred_objects])
    n_frames = len(gts)
    jm = np.zeros((len(gt_ids), len(pred_ids), n_frames))
    fm = np.zeros_like(jm)
    for t in range(n_frames):
        void = voids[t] if voids is not None else None
        keep = None if void is None else ~np.asarray(void, bool)
        for a, g in enumerate(gt_ids):
            gmask = gts[t] == g
            if keep is not None:
                gmask = gmask & keep
            for b, p in enumerate(pred_ids):
                pmask = preds[t] == p
                if keep is not None:
                    pmask = pmask & keep
                jm[a, b, t] = jaccard(pmask, gmask)
                fm[a, b, t] = f_measure(pmask, gmask)
    per_object: Dict[str, Any] = {}
    assignment: Dict[int, Optional[int]] = {g: None for g in gt_ids}
    if gt_ids and pred_ids:
        score = (jm.mean(axis=2) + fm.mean(axis=2)) / 2.0
        rows, cols = linear_sum_assignment(-score)
        for r, c in zip(rows, cols):
            assignment[gt_ids[r]] = pred_ids[c]
    for a, g in enumerate(gt_ids):
        p = assignment[g]
        if p is None:
            jf_frames = np.zeros(n_frames)
            ff_frames = np.zeros(n_frames)
        else:
            b = pred_ids.index(p)
            jf_frames = jm[a, b]
            ff_frames = fm[a, b]
        per_object[str(g)] = {
            'matched_prediction': p, 'J': float(jf_frames.mean()) if n_frames else 0.0,
            'F': float(ff_frames.mean()) if n_frames else 0.0,
            'J_per_frame': [float(v) for v in jf_frames]}
        per_object[str(g)]['JF'] = (per_object[str(g)]['J'] + per_object[str(g)]['F']) / 2.0
    if per_object:
        j_mean = float(np.mean([o['J'] for o in per_object.values()]))
        f_mean = float(np.mean([o['F'] for o in per_object.values()]))
    else:
        j_mean = f_mean = float('nan')
    return {'objects': per_object, 'num_gt_objects': len(gt_ids),
            'num_pred_objects': len(pred_ids), 'J': j_mean, 'F': f_mean,
            'JF': (j_mean + f_mean) / 2.0}


def score_predictions(name: str, frame_names: Sequence[str], preds: Sequence[np.ndarray],
                      gts: Sequence[Tuple[np.ndarray, Optional[np.ndarray]]],
                      per_object: bool) -> SequenceScore:
    """MOS scores (and per-object ones when asked) of one sequence's annotated frames."""
    labels = [g for g, _ in gts]
    voids = [v for _, v in gts]
    score = score_sequence_mos(name, list(frame_names), preds, labels, voids)
    if per_object:
        score.objects = match_objects(preds, labels, voids)
    return score


def aggregate(sequences: Sequence[SequenceScore]) -> Dict[str, Any]:
    """Dataset means: per-sequence means first, then the mean over sequences (DAVIS)."""
    if not sequences:
        return {'num_sequences': 0, 'num_frames': 0, 'J': float('nan'),
                'F': float('nan'), 'JF': float('nan')}
    j = float(np.mean([s.j_mean for s in sequences]))
    f = float(np.mean([s.f_mean for s in sequences]))
    out: Dict[str, Any] = {
        'num_sequences': len(sequences), 'num_frames': int(sum(len(s.j) for s in sequences)),
        'J': j, 'F': f, 'JF': (j + f) / 2.0,
        'J_recall': float(np.mean([j_recall(s.j) for s in sequences])),
        'F_recall': float(np.mean([j_recall(s.f) for s in sequences])),
        'missing_frames': int(sum(len(s.missing) for s in sequences))}
    with_objects = [s.objects for s in sequences if s.objects]
    if with_objects:
        oj = float(np.mean([o['J'] for o in with_objects]))
        of = float(np.mean([o['F'] for o in with_objects]))
        out['per_object'] = {'J': oj, 'F': of, 'JF': (oj + of) / 2.0}
    return out


def runtime_stats(latencies_ms: Sequence[float], frames_sent: Optional[int] = None,
                  wall_s: Optional[float] = None) -> Dict[str, float]:
    """Throughput and latency figures of a run.

    ``latencies_ms`` holds one value per frame that got a result; ``frames_sent`` (default: as
    many as results) makes the drop rate; fps is results per wall-clock second when ``wall_s``
    is given, else 1000 / mean latency (sequential processing).
    """
    lat = np.asarray(list(latencies_ms), float)
    received = int(lat.size)
    sent = received if frames_sent is None else int(frames_sent)
    if received > sent:
        raise ValueError(f'{received} results for {sent} frames sent')
    out: Dict[str, float] = {'frames_sent': sent, 'frames_received': received,
                             'dropped': sent - received,
                             'drop_rate': (sent - received) / sent if sent else 0.0}
    if received:
        out.update({'latency_mean_ms': float(lat.mean()),
                    'latency_p50_ms': float(np.percentile(lat, 50)),
                    'latency_p95_ms': float(np.percentile(lat, 95)),
                    'latency_max_ms': float(lat.max())})
    else:
        out.update({'latency_mean_ms': float('nan'), 'latency_p50_ms': float('nan'),
                    'latency_p95_ms': float('nan'), 'latency_max_ms': float('nan')})
    if wall_s is not None and wall_s > 0:
        out['fps'] = received / wall_s
    elif received and lat.mean() > 0:
        out['fps'] = 1000.0 / float(lat.mean())
    else:
        out['fps'] = float('nan')
    return out
