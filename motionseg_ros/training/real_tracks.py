"""Training windows from real video: the product's tracker over annotated DAVIS sequences.

Synthetic windows teach the classifier geometry but not the look of real KLT tracks (drift on
textureless patches, tracks sliding along object edges, the real mix of camera motions). This
module runs exactly what the classifier sees at inference over each annotated sequence: the
pipeline's tracker stage (as ``config/default.yaml`` configures it, window 16) and the geometric
classifier whose residual scores a ``geo_evidence`` model reads, stateful over the whole
sequence as in the pipeline. Every frame gives one window (the first 15 of a sequence are
short, as at stream start); shorter windows are cut from full ones at sampling time by keeping
their last L frames, which keeps exactly the evidence of the baselines shorter than L.

Labels come from the masks, per track over its visible frames of the (possibly shortened)
window: moving when inside the foreground in more than half of them and not near a mask
boundary in the newest frame, static when never within ``boundary_px`` of the foreground,
ignored otherwise (near a boundary, on void, or in between); ignored tracks stay in the window
as context but are not in the loss.

Extraction costs about a tenth of a second per frame, so each sequence's windows are cached
as ``<cache>/<key>/<sequence>.npz`` where ``key`` hashes the tracker, window, geometric and
labelling settings (and this format's version): training reruns read the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from motionseg_ros.types import TrackWindow

#: bump when the cached arrays or their meaning change
CACHE_VERSION = 1
IGNORE, STATIC, MOVING = -1, 0, 1
DATA_HINT = ('DAVIS-2016 train is not part of the repository: export it with '
             '../shared/tools/davis2016_train.sh (it writes a DAVIS-layout root with '
             'JPEGImages/480p and Annotations/480p)')


class RealTracksError(ValueError):
    """Missing or unusable real training data."""


def inference_setup(pipeline_config: Optional[Union[str, Path]] = None,
                    geo_epipolar: bool = False) -> Dict[str, Any]:
    """Tracker spec, window and geometric parameters as the pipeline config sets them.

    The geometric parameters are those the ``moseg`` backend hands its inner geometric
    classifier (``classifier.params.geometric``, with ``epipolar_scores`` from the model).
    """
    from motionseg_ros.config import load_config
    cfg = load_config(str(pipeline_config)) if pipeline_config else load_config()
    geometric = dict((cfg['classifier'].get('params') or {}).get('geometric') or {})
    geometric.setdefault('epipolar_scores', bool(geo_epipolar))
    geometric['threads'] = 1      # the fits do not depend on the thread count
    return {'tracker': {'name': cfg['tracker']['name'],
                        'params': dict(cfg['tracker'].get('params') or {})},
            'window': int(cfg.get('pipeline', {}).get('window', 16)),
            'geometric': geometric}


def cache_key(setup: Mapping[str, Any], boundary_px: float) -> str:
    """Hash of everything the cached windows depend on."""
    text = json.dumps({'version': CACHE_VERSION, 'setup': setup,
                       'boundary_px': float(boundary_px)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _membership(gt: np.ndarray, void: Optional[np.ndarray], xy: np.ndarray,
                boundary_px: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside, near boundary or void, within ``boundary_px`` of the foreground) per point."""
    fg = (gt > 0).astype(np.uint8)
    h, w = fg.shape
    # distance of every pixel to the other side of the mask boundary
    d_out = cv2.distanceTransform(1 - fg, cv2.DIST_L2, 3)    # background px: to foreground
    d_in = cv2.distanceTransform(fg, cv2.DIST_L2, 3)         # foreground px: to background
    if not fg.any():
        d_out = np.full(fg.shape, np.inf, np.float32)
    if fg.all():
        d_in = np.full(fg.shape, np.inf, np.float32)
    px = np.clip(np.rint(xy[:, 0]).astype(int), 0, w - 1)
    py = np.clip(np.rint(xy[:, 1]).astype(int), 0, h - 1)
    inside = fg[py, px] > 0
    dist = np.where(inside, d_in[py, px], d_out[py, px])
    near = dist <= boundary_px
    if void is not None:
        near |= void[py, px]
    close_fg = inside | (d_out[py, px] <= boundary_px)
    return inside, near, close_fg


def label_tracks(visible: np.ndarray, inside: np.ndarray, near: np.ndarray,
                 close_fg: np.ndarray) -> np.ndarray:
    """(N,) labels MOVING / STATIC / IGNORE from per-frame (N, T) mask membership."""
    n_vis = visible.sum(axis=1)
    frac = np.where(n_vis > 0, (inside & visible).sum(axis=1) / np.maximum(n_vis, 1), 0.0)
    out = np.full(visible.shape[0], IGNORE, np.int8)
    out[~(close_fg & visible).any(axis=1) & ~(near & visible).any(axis=1)] = STATIC
    out[(frac > 0.5) & ~near[:, -1]] = MOVING
    out[n_vis == 0] = IGNORE
    return out


def extract_sequence(seq: Any, setup: Mapping[str, Any], boundary_px: float = 4.0,
                     log=None) -> Dict[str, np.ndarray]:
    """Run tracker + geometric evidence over ``seq``; return the arrays of every window.

    Windows are stored right-aligned in ``W`` frame slots (a window of T < W frames fills
    the last T), tracks of frame f at rows ``offsets[f]:offsets[f + 1]``.
    """
    from motionseg_ros import registry
    from motionseg_ros.classifiers.geometric import GeometricClassifier
    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    w = int(setup['window'])
    params = dict(setup['tracker'].get('params') or {})
    params.setdefault('window', w)
    tracker = registry.create('tracker', setup['tracker']['name'], params)
    geo_params = dict(setup['geometric'])
    epipolar = bool(geo_params.get('epipolar_scores', False))
    geometric = GeometricClassifier(**geo_params)
    ctx = StageContext()
    # per-frame mask membership of each track id, kept for the last W frames
    chunks: Dict[str, List[np.ndarray]] = {k: [] for k in (
        'xy', 'visible', 'confidence', 'evidence', 'inside', 'near', 'close_fg')}
    offsets, lengths, frames, size = [0], [], [], (0, 0)
    history: List[Optional[Dict[int, Tuple[bool, bool, bool]]]] = []
    annotated = set(seq.annotated)
    try:
        for i in range(len(seq)):
            image = seq.image(i)
            frame = Frame(image=image, stamp_ns=int(i * 1e9 / seq.fps), index=i,
                          name=seq.image_paths[i].stem)
            ctx.new_frame(frame)
            win: TrackWindow = tracker.update(frame, ctx)
            ctx.background_homography = None
            size = tuple(win.image_size)
            if win.num_tracks == 0 or win.num_frames == 0:
                history.append({})
                continue
            evidence = geometric.evidence(win, ctx, epipolar)   # every frame: stateful
            if i not in annotated:
                history.append(None)
                continue
            gt, void = seq.gt(i)
            alive = win.visible[:, -1]
            inside, near, close_fg = _membership(gt, void, win.xy[:, -1], boundary_px)
            history.append({int(k): (bool(a), bool(b), bool(c)) for k, a, b, c in zip(
                win.ids[alive], inside[alive], near[alive], close_fg[alive])})
            if win.num_frames < 2:
                continue
            n, t = win.num_tracks, win.num_frames
            memb = np.zeros((3, n, w), bool)
            past = history[-t:]
            for s, rec in enumerate(past):
                if rec is None:    # no mask for that frame: its points cannot be static
                    memb[1, :, w - t + s] = True
                    continue
                for j, ident in enumerate(win.ids):
                    got = rec.get(int(ident))
                    if got is not None:
                        memb[:, j, w - t + s] = got
            xy = np.zeros((n, w, 2), np.float32)
            vis = np.zeros((n, w), bool)
            conf = np.zeros((n, w), np.float32)
            ev = np.zeros((n, w, evidence.shape[-1]), np.float32)
            xy[:, w - t:] = win.xy
            vis[:, w - t:] = win.visible
            conf[:, w - t:] = win.confidence
            ev[:, w - t:] = evidence
            for key, arr in (('xy', xy), ('visible', vis), ('confidence', conf),
                             ('evidence', ev), ('inside', memb[0]), ('near', memb[1]),
                             ('close_fg', memb[2])):
                chunks[key].append(arr)
            offsets.append(offsets[-1] + n)
            lengths.append(t)
            frames.append(i)
            if log is not None and i % 50 == 0:
                log(f'{seq.name}: frame {i}/{len(seq)}, {n} tracks')
    finally:
        geometric.close()
    if not frames:
        raise RealTracksError(f'{seq.name}: no annotated frame with tracks')
    out = {k: np.concatenate(v) for k, v in chunks.items()}
    out.update(offsets=np.asarray(offsets, np.int64), lengths=np.asarray(lengths, np.int16),
               frames=np.asarray(frames, np.int32), image_size=np.asarray(size, np.int32),
               num_frames=np.asarray(len(seq), np.int32))
    return out


@dataclass
class RealWindow:
    """A real training window, its labels (MOVING / STATIC / IGNORE) and evidence."""

    window: TrackWindow
    labels: np.ndarray
    evidence: np.ndarray
    meta: Dict[str, Any]


class RealTrackSet:
    """The cached windows of every annotated sequence of a DAVIS-layout root."""

    def __init__(self, root: Union[str, Path], cache: Union[str, Path],
                 setup: Optional[Mapping[str, Any]] = None, boundary_px: float = 4.0,
                 sequences: Optional[Sequence[str]] = None, log=None) -> None:
        """Open ``root`` (extracting into ``cache`` what is not cached yet) and load it."""
        from motionseg_ros.evaluation.datasets import DatasetError, open_dataset
        root = Path(root).expanduser()
        if not root.is_dir():
            raise RealTracksError(f'real training data not found: {root}. {DATA_HINT}')
        try:
            seqs = open_dataset(root).select(list(sequences) if sequences else None)
        except DatasetError as exc:
            raise RealTracksError(f'{root}: {exc}. {DATA_HINT}') from exc
        self.setup = dict(setup) if setup is not None else inference_setup()
        self.boundary_px = float(boundary_px)
        self.key = cache_key(self.setup, self.boundary_px)
        folder = Path(cache).expanduser() / self.key
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'setup.json').write_text(json.dumps(
            {'version': CACHE_VERSION, 'setup': self.setup, 'boundary_px': self.boundary_px},
            indent=1, default=str))
        self.names: List[str] = []
        self.data: List[Dict[str, np.ndarray]] = []
        for seq in seqs:
            path = folder / f'{seq.name}.npz'
            arrays = None
            if path.is_file():
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
                if int(arrays['num_frames']) != len(seq):
                    arrays = None     # another sequence of that name: extract again
            if arrays is None:
                if log is not None:
                    log(f'extracting real tracks of {seq.name} ({len(seq)} frames)')
                arrays = extract_sequence(seq, self.setup, self.boundary_px, log)
                tmp = folder / f'{seq.name}.tmp.npz'
                np.savez(tmp, **arrays)
                tmp.replace(path)
            self.names.append(seq.name)
            self.data.append(arrays)
        if not self.data:
            raise RealTracksError(f'{root}: no annotated sequences. {DATA_HINT}')
        self.counts = np.array([len(d['frames']) for d in self.data], np.int64)

    def __len__(self) -> int:
        """Return the number of windows over all sequences."""
        return int(self.counts.sum())

    def window(self, seq: int, index: int, length: Optional[int] = None) -> RealWindow:
        """Window ``index`` of sequence ``seq``, its last ``length`` frames when given."""
        d = self.data[seq]
        w = d['xy'].shape[1]
        a, b = int(d['offsets'][index]), int(d['offsets'][index + 1])
        t = int(d['lengths'][index])
        if length is not None:
            t = max(2, min(t, int(length)))
        sl = slice(w - t, w)
        vis = d['visible'][a:b, sl]
        keep = vis.any(axis=1)   # tracks never seen in the shortened window: not in the input
        vis = vis[keep]
        labels = label_tracks(vis, d['inside'][a:b, sl][keep], d['near'][a:b, sl][keep],
                              d['close_fg'][a:b, sl][keep])
        n = int(keep.sum())
        h, wd = (int(v) for v in d['image_size'])
        win = TrackWindow(ids=np.arange(n, dtype=np.int64),
                          xy=np.ascontiguousarray(d['xy'][a:b, sl][keep]), visible=vis,
                          confidence=d['confidence'][a:b, sl][keep].astype(np.float32),
                          stamps_ns=np.arange(t, dtype=np.int64), image_size=(h, wd))
        ev = d['evidence'][a:b, sl][keep].astype(np.float32)
        return RealWindow(win, labels, ev, {'sequence': self.names[seq],
                                            'frame': int(d['frames'][index]), 'frames': t})

    def sample(self, rng: np.random.Generator, short_windows: Optional[float]) -> RealWindow:
        """Draw a window uniformly over all windows; shorten it with ``short_windows``."""
        k = int(rng.integers(len(self)))
        seq = int(np.searchsorted(np.cumsum(self.counts), k, side='right'))
        index = k - int(self.counts[:seq].sum())
        length = None
        if short_windows is not None and rng.random() < float(short_windows):
            length = int(rng.integers(2, 16))
        return self.window(seq, index, length)
