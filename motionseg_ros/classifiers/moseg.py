"""The paper's learned trajectory classifier as a pipeline backend.

Weights: ``builtin:motion_only`` / ``builtin:motion_depth`` (trained here on synthetic data,
shipped under ``motionseg_ros/weights/``), a checkpoint written by ``motionseg
train-classifier``, or the paper's released ``moseg.pth`` (needs 768-d DINOv2 features from the
``features`` stage and, ideally, depth). The model sees the window the tracker hands over; its
probabilities can be smoothed over time per track id, like the geometric classifier's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence

import numpy as np

from motionseg_ros.classifiers.geometric import GeometricClassifier
from motionseg_ros.registry import BackendError, register
from motionseg_ros.runtime_params import THRESHOLD, table
from motionseg_ros.stages import Classifier, StageContext
from motionseg_ros.types import TrackWindow
from motionseg_ros.weights import resolve_weights

#: the paper's adaptive schedule (section 8): first threshold leaving >= 10 dynamic tracks
ADAPTIVE_THRESHOLDS = (0.95, 0.93, 0.9, 0.85, 0.8, 0.75, 0.7)


def track_groups(ids: np.ndarray, group_size: int) -> list:
    """Split tracks into near-equal groups of at most ``group_size``, spread over the image.

    Attention cost grows with the square of the track count, and a model trained on windows of
    a few hundred tracks sees a different attention distribution on a thousand. Each group is a
    pseudo-random sample of the tracks (ordered by a hash of the track id, then dealt out in
    turn), so every group covers the whole image and the split does not depend on the order
    of the tracks in the window.
    """
    n = int(ids.shape[0])
    if group_size <= 0 or n <= group_size:
        return [np.arange(n)]
    key = (np.asarray(ids, np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32)
    order = np.argsort(key, kind='stable')
    count = -(-n // group_size)
    return [np.sort(order[j::count]) for j in range(count)]


@register('classifier', 'moseg')
class MosegClassifier(Classifier):
    """Spatio-temporal trajectory attention + MSDE decoder (SegAnyMo) on each window."""

    runtime_params = (THRESHOLD,) + table("""
adaptive_threshold bool  -          The paper's threshold schedule (0.95 ... down to threshold)
  instead of the fixed threshold.
smoothing          float 0..0.99    Weight of a track's previous probability (0: none).
min_dynamic        int   0..100000  Dynamic tracks the adaptive schedule must leave.
""")  # the model, device and threads are fixed once loaded

    def __init__(self, weights: str = 'builtin:motion_geo_real', device: str = 'auto',
                 threshold: Optional[float] = None, adaptive_threshold: bool = False,
                 reference_quirks: bool = False, smoothing: float = 0.0,
                 min_dynamic: int = 10, threads: int = 2, group_size: int = 0,
                 geometric: Optional[Dict[str, Any]] = None) -> None:
        """Load the weights (strictly) and pick the device.

        ``threshold``: fixed decision threshold (None: the one stored with the weights, chosen
        for the best F1 on synthetic validation, else 0.5); ``adaptive_threshold``: the paper's
        schedule (falls back to ``threshold`` when no schedule step leaves ``min_dynamic``
        tracks, so a static scene stays static); ``reference_quirks``: feed the input the way
        the reference code did (for parity with ``moseg.pth``); ``smoothing``: blend with the
        track's previous probability (0 = none); ``threads``: torch CPU threads (0 = leave as is);
        ``group_size``: classify the tracks in groups of at most this many (0 = all at once),
        see :func:`track_groups`; ``geometric``: parameters of the geometric classifier that
        feeds a ``geo_evidence`` model its residual scores.
        """
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a dependency of this backend
            raise BackendError('classifier moseg needs torch (pip install torch)') from exc
        from motionseg_ros.models.checkpoint import load_checkpoint
        self._torch = torch
        if device not in ('auto', 'cpu', 'cuda') and not str(device).startswith('cuda:'):
            raise BackendError(f'moseg: device must be auto, cpu or cuda, not {device!r}')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if str(device).startswith('cuda') and not torch.cuda.is_available():
            raise BackendError('moseg: device cuda requested but torch sees no CUDA device')
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise BackendError('moseg: threshold must be in [0, 1]')
        if not 0.0 <= float(smoothing) < 1.0:
            raise BackendError('moseg: smoothing must be in [0, 1)')
        if int(threads) > 0:
            torch.set_num_threads(int(threads))
        if int(group_size) < 0:
            raise BackendError('moseg: group_size must be >= 0 (0 = all tracks at once)')
        self.group_size = int(group_size)
        self.weights = str(weights)
        self.device = str(device)
        self.threshold = 0.5 if threshold is None else float(threshold)
        self.adaptive_threshold = bool(adaptive_threshold)
        self.reference_quirks = bool(reference_quirks)
        self.smoothing = float(smoothing)
        self.min_dynamic = int(min_dynamic)
        path = resolve_weights(self.weights, 'classifier moseg', kind='file',
                               hub_id='Changearthmore/moseg moseg.pth')
        self.model, self.meta = load_checkpoint(path)
        self.model.to(self.device).eval()
        self.cfg = self.model.cfg
        if threshold is None and isinstance(self.meta.get('threshold'), float):
            self.threshold = float(self.meta['threshold'])
        self._geometric: Optional[GeometricClassifier] = None
        if self.cfg.geo_evidence:
            try:
                params = dict(geometric or {})
                params.setdefault('epipolar_scores', bool(self.cfg.geo_epipolar))
                self._geometric = GeometricClassifier(**params)
            except (TypeError, ValueError) as exc:
                raise BackendError(f'moseg: bad geometric parameters {geometric}: {exc}') from exc
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def stateless(self) -> bool:
        """Tell whether a result depends on the current window only (no smoothing, no quirks)."""
        return self.smoothing == 0 and not self.reference_quirks and self._geometric is None

    def reset(self) -> None:
        """Forget smoothed probabilities, stored depth maps and the geometric state."""
        self._prev: Dict[int, float] = {}
        self._depth_maps: 'OrderedDict[int, np.ndarray]' = OrderedDict()
        if self._geometric is not None:
            self._geometric.reset()

    def close(self) -> None:
        """Free the model (and the GPU cache) and stop the geometric fitting threads."""
        if self._geometric is not None:
            self._geometric.close()
        self.model = self.model.to('cpu')
        if self.device.startswith('cuda'):
            self._torch.cuda.empty_cache()

    # ------------------------------------------------------------------ decisions
    def decide(self, prob: np.ndarray) -> np.ndarray:
        """Apply the fixed threshold, or the paper's adaptive schedule."""
        prob = np.asarray(prob, np.float32)
        if self.adaptive_threshold:
            for thr in ADAPTIVE_THRESHOLDS:
                dyn = prob >= thr
                if int(dyn.sum()) >= self.min_dynamic:
                    return dyn
        return prob >= self.threshold

    # ------------------------------------------------------------------ inference
    def _check(self, window: TrackWindow) -> None:
        n, t = window.num_tracks, window.num_frames
        if window.xy.shape != (n, t, 2) or window.visible.shape != (n, t) or \
                window.confidence.shape != (n, t):
            raise ValueError(f'moseg: inconsistent window shapes xy {window.xy.shape}, '
                             f'visible {window.visible.shape}, confidence '
                             f'{window.confidence.shape} for N={n}, T={t}')
        for name in ('depth', 'visibility'):
            values = getattr(window, name)
            if values is not None and values.shape != (n, t):
                raise ValueError(f'moseg: window.{name} has shape {values.shape}, expected '
                                 f'{(n, t)}')
        if self.cfg.feature_dim:
            feats = window.features
            if feats is None:
                raise ValueError(
                    f'moseg: weights {self.weights} need {self.cfg.feature_dim}-d semantic '
                    'features per track; configure a features stage (e.g. dinov2) or use '
                    'builtin:motion_only / builtin:motion_depth')
            if feats.shape != (n, self.cfg.feature_dim):
                raise ValueError(f'moseg: features have shape {feats.shape}, the weights need '
                                 f'{(n, self.cfg.feature_dim)}')

    @property
    def needs_depth_maps(self) -> bool:
        """Tell the pipeline to hand over whole depth maps (``reference_quirks`` samples them)."""
        return bool(self.cfg.use_depth and self.reference_quirks)

    def _remember_depth(self, ctx: Optional[StageContext], stamps: Sequence[int]) -> None:
        """Keep the depth maps of recent frames seen in ``ctx`` (callers without a pipeline)."""
        if ctx is None:
            return
        for frame in ctx.history:
            if frame.depth is not None:
                self._depth_maps[int(frame.stamp_ns)] = np.asarray(frame.depth, np.float32)
        keep = set(int(s) for s in stamps)
        for stamp in list(self._depth_maps):
            if stamp not in keep and len(self._depth_maps) > len(keep):
                del self._depth_maps[stamp]

    def window_disparity_maps(self, window: TrackWindow, ctx: Optional[StageContext] = None
                              ) -> Optional[np.ndarray]:
        """Return (T, H, W) disparity (1 / depth, 0 unknown) for ``reference_quirks``, or None.

        From ``window.depth_maps`` (the pipeline keeps them when :attr:`needs_depth_maps`),
        else from the frames this classifier saw in ``ctx``; None (with a warning) when a frame
        of the window has no map: the model then reads the per-track depth instead.
        """
        if not self.needs_depth_maps:
            return None
        depth = window.depth_maps
        if depth is None:
            self._remember_depth(ctx, window.stamps_ns)
            stamps = [int(s) for s in window.stamps_ns]
            if stamps and all(s in self._depth_maps for s in stamps):
                depth = np.stack([self._depth_maps[s] for s in stamps])
        if depth is None:
            if ctx is not None and window.depth is not None:
                ctx.scratch.setdefault('warnings', []).append(
                    'moseg: reference_quirks without a depth map for every frame of the window: '
                    'depth read from the per-track samples instead')
            return None
        with np.errstate(divide='ignore', invalid='ignore'):
            maps = 1.0 / np.asarray(depth, np.float32)
        maps[~np.isfinite(maps)] = 0.0
        return maps

    def model_arguments(self, window: TrackWindow, idx: Any,
                        maps: Optional[np.ndarray] = None,
                        evidence: Optional[np.ndarray] = None) -> Dict[str, Any]:
        """Keyword arguments of ``self.model.classify`` for the tracks ``idx`` of ``window``."""
        torch, dev = self._torch, self.device

        def tensor(values: Optional[np.ndarray], dtype) -> Any:
            return None if values is None else torch.from_numpy(
                np.ascontiguousarray(np.asarray(values)[idx], dtype)).to(dev)

        return dict(
            xy=tensor(window.xy, np.float32), visible=tensor(window.visible, bool),
            confidence=tensor(window.confidence, np.float32), image_size=window.image_size,
            depth=tensor(window.depth if self.cfg.use_depth else None, np.float32),
            features=tensor(window.features if self.cfg.feature_dim else None, np.float32),
            reference_quirks=self.reference_quirks,
            depth_maps=None if maps is None else torch.from_numpy(maps).to(dev),
            evidence=tensor(evidence, np.float32),
            visibility=tensor(window.visibility, np.float32))

    def classify(self, window: TrackWindow, ctx: Optional[StageContext] = None) -> np.ndarray:
        """Return (N,) probabilities that each track moves in the world.

        Tracks never visible in the window stay out of the model input, as in the reference
        (they would otherwise take part in the attention over tracks), and get probability 0:
        the window holds no evidence that they move.
        """
        torch = self._torch
        self._check(window)
        n = window.num_tracks
        if n == 0 or window.num_frames == 0:
            return np.zeros(n, np.float32)
        maps = self.window_disparity_maps(window, ctx)
        evidence = None if self._geometric is None else self._geometric.evidence(
            window, ctx if ctx is not None else StageContext(), self.cfg.geo_epipolar)
        seen = np.flatnonzero(np.asarray(window.visible).any(axis=1))
        groups = [seen[g] for g in track_groups(np.asarray(window.ids)[seen], self.group_size)]
        if seen.size == n and len(groups) == 1:
            groups = [slice(None)]   # one group: views of the window, no per-frame copies
        prob = np.zeros(n, np.float32)
        with torch.no_grad():
            for idx in groups:
                if isinstance(idx, np.ndarray) and idx.size == 0:
                    continue
                logits = self.model.classify(**self.model_arguments(window, idx, maps, evidence))
                prob[idx] = torch.sigmoid(logits).float().cpu().numpy()
        if self.smoothing > 0:
            prev = np.array([self._prev.get(int(i), np.nan) for i in window.ids], np.float32)
            seen = np.isfinite(prev)
            prob[seen] = self.smoothing * prev[seen] + (1 - self.smoothing) * prob[seen]
            self._prev = {int(i): float(p) for i, p in zip(window.ids, prob)}
        return prob
