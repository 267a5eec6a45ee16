"""Tracker ``cotracker3``: the official CoTracker3 online predictor, streamed frame by frame.

CoTracker3 (GitHub facebookresearch/co-tracker, CC-BY-NC-4.0, not on PyPI) is an *optional*
extra: it is imported only when this backend is chosen, and a clear error names the package and
the fallback (``tracker: klt``) when it is missing. The online predictor processes the last 16
frames every 8 (window 16, step 8) and needs its queries fixed when a session starts, so:

* every ``session_steps`` steps the session is restarted: the tracks still visible carry over
  as queries at their last measured position (same ids), and a grid re-seeds empty areas;
  restarting also bounds the predictor's memory, whose per-session outputs grow with time;
* frames between two steps get constant-velocity extrapolated positions with confidence
  capped at ``extrapolated_confidence``; the next step overwrites them with measurements;
* the first positions arrive after 16 frames (the model's window); before that the window
  holds no tracks;
* the window's ``visibility`` carries the model's continuous visibility probability (the
  paper's classifier reads it as an input channel); ``visible`` is the predictor's own
  decision (visibility x confidence > 0.6).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

import numpy as np

from motionseg_ros.registry import BackendError, register
from motionseg_ros.stages import StageContext, Tracker
from motionseg_ros.types import Frame, TrackWindow
from motionseg_ros.weights import free_gpu_memory, is_oom, resolve_device, resolve_weights

MISSING = ('tracker cotracker3 needs the optional `cotracker` package (GitHub '
           'facebookresearch/co-tracker, CC-BY-NC-4.0, not on PyPI): '
           '`pip install git+https://github.com/facebookresearch/co-tracker` '
           '(non-commercial use only), or choose `tracker: {name: klt}`')


@register('tracker', 'cotracker3')
class CoTracker3Tracker(Tracker):
    """Persistent-id point tracks from CoTracker3 online, re-seeded on a grid."""

    def __init__(self, window: int = 16, checkpoint: str = 'cotracker3/scaled_online.pth',
                 device: str = 'auto', grid_spacing: int = 16, max_tracks: int = 2000,
                 session_steps: int = 4, extrapolated_confidence: float = 0.5,
                 model_resolution: Optional[List[int]] = None) -> None:
        """Load the predictor from ``checkpoint`` (``scaled_online.pth``).

        ``window``: frames in the returned TrackWindow. ``grid_spacing``: pixels between seeded
        points. ``session_steps``: steps (of 8 frames) before a restart re-seeds the grid.
        ``model_resolution``: internal (H, W), default the model's 384x512; smaller is faster
        and less accurate (multiples of 8).
        """
        try:
            from cotracker.predictor import CoTrackerOnlinePredictor
        except ImportError as exc:
            raise BackendError(f'{MISSING} ({exc})') from exc
        import torch
        ckpt = resolve_weights(checkpoint, 'tracker cotracker3', kind='file',
                               hub_id='facebook/cotracker3 scaled_online.pth')
        self.device = resolve_device(device)
        try:
            self.predictor = CoTrackerOnlinePredictor(checkpoint=str(ckpt), window_len=16)
        except Exception as exc:  # noqa: BLE001 - a corrupt/mismatched file, reported clearly
            raise BackendError(f'tracker cotracker3: cannot load {ckpt}: {exc}') from exc
        self.predictor = self.predictor.to(self.device).eval()
        # the predictor returns only thresholded visibility: keep the model's probability
        self._raw_visibility = None
        self.predictor.model.register_forward_hook(self._keep_visibility)
        if model_resolution is not None:
            res = tuple(int(v) for v in model_resolution)
            if len(res) != 2 or min(res) < 16 or res[0] % 8 or res[1] % 8:
                raise BackendError(f'tracker cotracker3: model_resolution {model_resolution} '
                                   'must be two multiples of 8, >= 16')
            self.predictor.interp_shape = res
            self.predictor.model.model_resolution = res
        self.step = int(self.predictor.step)
        self.chunk = 2 * self.step
        if window < 2:
            raise BackendError('tracker cotracker3: window must be >= 2')
        self.window = int(window)
        self.grid_spacing = int(grid_spacing)
        self.max_tracks = int(max_tracks)
        self.session_steps = max(1, int(session_steps))
        self.extrapolated_confidence = float(extrapolated_confidence)
        self._torch = torch
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._frames: Deque = deque(maxlen=self.chunk)
        self._stamps: Deque[int] = deque(maxlen=self.window)
        self._g = -1
        self._next_id = 0
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, 0, 2), np.float32)       # (N, cols, 2), newest last
        self._vis = np.zeros((0, 0), bool)
        self._conf = np.zeros((0, 0), np.float32)
        self._visp = np.zeros((0, 0), np.float32)        # visibility probability
        self._origin: Optional[int] = None                # global index of session frame 0
        self._session_ids = np.zeros(0, np.int64)
        self._query_frames = np.zeros(0, np.int64)
        self._steps_done = 0
        self._size = None

    # ------------------------------------------------------------------ helpers
    def _keep_visibility(self, module, inputs, output) -> None:
        """Forward hook on the CoTracker3 model: remember its visibility probability."""
        self._raw_visibility = output[1] if isinstance(output, tuple) and len(output) > 1 \
            else None

    def _grid(self, h: int, w: int, avoid: np.ndarray) -> np.ndarray:
        """Grid points (M, 2) not within half a spacing of the points in ``avoid``."""
        s = self.grid_spacing
        xs = np.arange(s / 2, w, s, dtype=np.float32)
        ys = np.arange(s / 2, h, s, dtype=np.float32)
        pts = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        if avoid.shape[0] and pts.shape[0]:
            d = np.abs(pts[:, None, :] - avoid[None, :, :]).max(axis=2)
            pts = pts[(d >= s / 2).all(axis=1)]
        return pts

    def _start_session(self, origin: int, query_frame: int, h: int, w: int) -> None:
        """Initialise the predictor with carried-over visible tracks plus a fresh grid."""
        torch = self._torch
        if self._ids.shape[0] and self._vis.shape[1]:
            alive = self._vis[:, -1] & (self._conf[:, -1] >= 1.0)
        else:
            alive = np.zeros(self._ids.shape[0], bool)
        keep_ids = self._ids[alive]
        keep_xy = self._xy[alive, -1] if alive.any() else np.zeros((0, 2), np.float32)
        room = max(0, self.max_tracks - keep_ids.shape[0])
        new_xy = self._grid(h, w, keep_xy)[:room]
        new_ids = np.arange(self._next_id, self._next_id + new_xy.shape[0], dtype=np.int64)
        self._next_id += new_xy.shape[0]
        if new_xy.shape[0]:
            cols = self._xy.shape[1]
            self._ids = np.concatenate([self._ids, new_ids])
            self._xy = np.concatenate([self._xy, np.zeros((new_ids.shape[0], cols, 2),
                                                          np.float32)])
            self._vis = np.concatenate([self._vis, np.zeros((new_ids.shape[0], cols), bool)])
            self._conf = np.concatenate([self._conf, np.zeros((new_ids.shape[0], cols),
                                                              np.float32)])
            self._visp = np.concatenate([self._visp, np.zeros((new_ids.shape[0], cols),
                                                              np.float32)])
        self._session_ids = np.concatenate([keep_ids, new_ids])
        xy = np.concatenate([keep_xy, new_xy]).astype(np.float32)
        self._query_frames = np.full(xy.shape[0], query_frame, np.int64)
        queries = np.concatenate([self._query_frames[:, None].astype(np.float32), xy], 1)
        q = torch.from_numpy(queries)[None].to(self.device)
        dummy = torch.zeros((1, 1, 3, h, w), device=self.device)
        self.predictor(dummy, is_first_step=True, queries=q)
        self._origin = origin
        self._steps_done = 0

    def _run_step(self, h: int, w: int) -> None:
        """Track the last 16 frames with the predictor and write the measurements."""
        torch = self._torch
        video = torch.from_numpy(np.stack(list(self._frames))).to(self.device)
        video = video.permute(0, 3, 1, 2)[None].float()
        with torch.inference_mode():
            tracks, vis = self.predictor(video)
        tracks = tracks[0].float().cpu().numpy()          # (T_session, Nq, 2)
        vis = vis[0].cpu().numpy().astype(bool)           # (T_session, Nq)
        raw = self._raw_visibility
        prob = vis.astype(np.float32) if raw is None else raw[0].float().cpu().numpy()
        row_of = {int(t): i for i, t in enumerate(self._ids)}
        rows = np.array([row_of.get(int(t), -1) for t in self._session_ids], np.int64)
        cols = self._xy.shape[1]
        first = max(self._g - self.chunk + 1, self._origin)
        for f in range(first, self._g + 1):
            c = cols - 1 - (self._g - f)
            s = f - self._origin
            if c < 0 or s >= tracks.shape[0]:
                continue
            ok = (rows >= 0) & (self._query_frames <= s)
            r = rows[ok]
            self._xy[r, c] = tracks[s, ok]
            self._vis[r, c] = vis[s, ok]
            self._conf[r, c] = vis[s, ok].astype(np.float32)
            self._visp[r, c] = prob[s, ok]
        self._steps_done += 1

    # ------------------------------------------------------------------ stage API
    def update(self, frame: Frame, ctx: StageContext) -> TrackWindow:
        """Consume ``frame``; return the tracks over the last ``window`` frames."""
        h, w = frame.size
        if self._size is not None and self._size != (h, w):
            self.reset()
        self._size = (h, w)
        self._g += 1
        self._frames.append(np.ascontiguousarray(frame.image[..., ::-1]))  # BGR -> RGB
        self._stamps.append(int(frame.stamp_ns))
        self._push_column()
        if self._origin is None:
            self._start_session(origin=0, query_frame=0, h=h, w=w)
        elif (self._g - self._origin + 1) >= self.chunk and \
                (self._g - self._origin + 1 - self.chunk) % self.step == 0:
            try:
                self._run_step(h, w)
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(exc):
                    raise
                free_gpu_memory()
                self.max_tracks = max(64, self.max_tracks // 2)
                self._steps_done = self.session_steps   # restart with fewer points
                msg = (f'cotracker3: GPU out of memory; restarting with at most '
                       f'{self.max_tracks} tracks')
                ctx.scratch.setdefault('warnings', []).append(msg)
            if self._steps_done >= self.session_steps:
                # the next step's chunk starts step-1 frames before now: the carried tracks
                # are queried at the newest frame, index step-1 of the new session
                self._start_session(origin=self._g - self.step + 1,
                                    query_frame=self.step - 1, h=h, w=w)
        return self._window()

    def _push_column(self) -> None:
        """Add the newest frame's column: constant-velocity extrapolation, lower confidence."""
        n, cols = self._ids.shape[0], self._xy.shape[1]
        if cols:
            last = self._xy[:, -1]
            prev = self._xy[:, -2] if cols >= 2 else last
            both = self._vis[:, -1] & (self._vis[:, -2] if cols >= 2 else self._vis[:, -1])
            new_xy = np.where(both[:, None], 2 * last - prev, last)
            new_vis = self._vis[:, -1].copy()
            new_conf = np.minimum(self._conf[:, -1], self.extrapolated_confidence)
            new_visp = self._visp[:, -1].copy()
        else:
            new_xy = np.zeros((n, 2), np.float32)
            new_vis = np.zeros(n, bool)
            new_conf = np.zeros(n, np.float32)
            new_visp = np.zeros(n, np.float32)
        self._xy = np.concatenate([self._xy, new_xy[:, None].astype(np.float32)], 1)
        self._vis = np.concatenate([self._vis, new_vis[:, None]], 1)
        self._conf = np.concatenate([self._conf, new_conf[:, None].astype(np.float32)], 1)
        self._visp = np.concatenate([self._visp, new_visp[:, None].astype(np.float32)], 1)
        if self._xy.shape[1] > self.window:
            self._xy = self._xy[:, -self.window:]
            self._vis = self._vis[:, -self.window:]
            self._conf = self._conf[:, -self.window:]
            self._visp = self._visp[:, -self.window:]
        # forget tracks neither visible in the window nor part of the running session
        live = self._vis.any(axis=1) | np.isin(self._ids, self._session_ids)
        if not live.all():
            self._ids, self._xy = self._ids[live], self._xy[live]
            self._vis, self._conf = self._vis[live], self._conf[live]
            self._visp = self._visp[live]

    def _window(self) -> TrackWindow:
        """Return the current TrackWindow (tracks visible at least once in it)."""
        stamps = np.asarray(self._stamps, np.int64)[-self._xy.shape[1]:] if self._xy.shape[1] \
            else np.asarray(self._stamps, np.int64)
        seen = self._vis.any(axis=1)
        return TrackWindow(ids=self._ids[seen].copy(), xy=self._xy[seen].copy(),
                           visible=self._vis[seen].copy(),
                           confidence=self._conf[seen].copy(), stamps_ns=stamps,
                           image_size=self._size, visibility=self._visp[seen].copy())
