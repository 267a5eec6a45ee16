#!/usr/bin/env python3
"""Parity of the trajectory classifier with the reference code, under identical random weights.

Usage: ``python scripts/parity/classifier.py REF_PATH [--seed S] [--tolerance TOL]``

REF_PATH is a checkout of github.com/nnanhuang/SegAnyMo (measured at 4523e8f); its model and
input-building code are imported from there at run time (nothing of it lives in this
repository). It needs, beside torch: einops, h5py, imageio (imported by the reference's
modules) and Pillow.

What is compared, for one random BootsTAPIR-style track file (positions, occlusion and
expected-distance logits; some positions off the image, one track never visible, one frame
where no track is visible), random depth maps and random DINO feature maps:

* the reference: ``parse_tapir_track_info``, the bootstapir branch of ``inference.py`` (drop
  tracks never visible, force a visible track in empty frames), ``normalize_point_traj_torch``,
  depth written as its depth script does (``to_uint16`` + imageio PNG) and read back as
  ``inference.py`` does (PIL ``convert('L')``, min-max), ``get_feat`` at each track's query
  frame, then ``traj_oa_depth.augment_traj`` (the 88-channel input), ``joint_encoder`` and the
  decoder (logits);
* the product: a :class:`TrackWindow` with the same tracks, confidence, continuous visibility,
  depth maps and features, through ``MosegClassifier`` (``reference_quirks``) loading the
  reference's state dict strictly; once directly, once inside ``StreamingPipeline`` with
  ``pipeline.stride`` 3 (the depth maps then come from the pipeline's depth history).

Prints max abs differences of the input and the logits; exits 1 above ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import torch

from motionseg_ros import registry
from motionseg_ros.classifiers.moseg import MosegClassifier
from motionseg_ros.config import load_config
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.stages import StageContext, Tracker
from motionseg_ros.types import Frame, TrackWindow

H, W, T, N, DINO_STRIDE, QUERY_STEP = 120, 216, 16, 240, 14, 5


def import_reference(ref: Path) -> Dict[str, Any]:
    """Import the reference's model and input functions from the checkout ``ref``."""
    sys.path.insert(0, str(ref))
    try:
        from core.dataset.data_utils import normalize_point_traj_torch
        from core.dataset.kubric import parse_tapir_track_info
        from core.network.traj_oa_depth import traj_oa_depth
        from core.utils.run_depth import to_uint16
        from core.utils.utils import get_feat, load_config_file
    except ImportError as exc:
        sys.exit(f'cannot import the reference from {ref}: {exc} (it needs einops, h5py, '
                 'imageio, transformers: install them in a throwaway venv)')
    return dict(normalize=normalize_point_traj_torch, parse=parse_tapir_track_info,
                model=traj_oa_depth, to_uint16=to_uint16, get_feat=get_feat,
                config=load_config_file(str(ref / 'configs' / 'example_train.yaml')))


def random_inputs(seed: int) -> Dict[str, np.ndarray]:
    """Draw a BootsTAPIR-style track file (N, T, 4), depth maps (T, H, W), DINO maps."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([0, 0], [W, H], (N, 1, 2))
    steps = rng.normal(0, 3, (N, T, 2))
    steps[N // 3: N // 2] += [4.0, 1.5]                       # a few movers
    xy = start + np.cumsum(steps, axis=1)
    xy[rng.random((N, T)) < 0.04] += rng.choice([-1, 1], 2) * [W, H] * 0.6   # off the image
    occ = rng.normal(-1.0, 3.0, (N, T))
    dist = rng.normal(-1.5, 2.0, (N, T))
    query = (np.arange(N) % 3) * QUERY_STEP                   # frames 0, 5, 10 as query frames
    occ[np.arange(N), query] = -8.0                           # visible where it was queried
    dist[np.arange(N), query] = -8.0
    occ[:, 7] = 8.0                                           # frame 7: no track visible
    occ[N - 1] = 8.0                                          # one track never visible
    yy, xx = np.mgrid[0:H, 0:W]
    depth = np.stack([2.0 + np.sin(xx / 23.0 + t) + 0.02 * yy + rng.uniform(0, 0.3, (H, W))
                      for t in range(T)]).astype(np.float32)
    dino = rng.normal(0, 1, (T, H // DINO_STRIDE, W // DINO_STRIDE, 768)).astype(np.float32)
    return dict(tracks=np.concatenate([xy, occ[..., None], dist[..., None]], -1).astype(
        np.float32), query=query, depth=depth, dino=dino)


def reference_run(ref: Dict[str, Any], model: torch.nn.Module, data: Dict[str, np.ndarray],
                  workdir: Path) -> Dict[str, torch.Tensor]:
    """Run the reference's input path (inference.py, bootstapir branch) and its model."""
    import imageio.v2 as iio
    from PIL import Image
    tracks = torch.from_numpy(data['tracks'])
    track_2d, occs, dists = tracks[..., :2], tracks[..., 2], tracks[..., 3]
    visibles, _, confidences, visib_value, confi_value = ref['parse'](occs, dists, 0.5)
    depth_list = []
    for t in range(T):                        # run_depth.py writes, inference.py reads
        disp = (1.0 / data['depth'][t]).astype(np.float32)
        iio.imwrite(workdir / f'{t:05d}.png', ref['to_uint16'](disp))
        depth_img = np.array(Image.open(workdir / f'{t:05d}.png').convert('L'))
        depth_list.append(torch.from_numpy(
            (depth_img - depth_img.min()) / (depth_img.max() - depth_img.min())))
    depths = torch.stack(depth_list, dim=0).permute(1, 2, 0).unsqueeze(0).unsqueeze(0)
    feats = torch.zeros(1, 768, N, 1)
    for q in np.unique(data['query']):        # get_feat on the query frame's DINO map
        rows = np.flatnonzero(data['query'] == q)
        dino_list = torch.from_numpy(data['dino'][q]).unsqueeze(0).unsqueeze(0)
        factor = (dino_list[0].shape[1] / H, dino_list[0].shape[2] / W)
        feats[:, :, rows] = ref['get_feat'](factor, track_2d[rows].permute(2, 0, 1)[..., q:q + 1],
                                            dino_list)
    all_features = feats[0, :, :, 0].t().contiguous()
    keep = ~torch.all(~visibles, dim=1)       # inference.py: drop tracks never visible ...
    track_2d, visibles, confidences = track_2d[keep], visibles[keep], confidences[keep]
    visib_value, confi_value, feats = visib_value[keep], confi_value[keep], feats[:, :, keep]
    for t in range(T):                        # ... and force one visible track per frame
        if torch.all(~visibles[:, t]):
            visibles[torch.max(confidences[:, t], dim=0)[1], t] = True
    track = track_2d.permute(2, 0, 1).unsqueeze(0)
    mask = (~visibles).unsqueeze(0).unsqueeze(0).float()
    traj = ref['normalize'](track, [H, W]).float()
    with torch.no_grad():
        aug = model.augment_traj(depths.float(), traj, mask, visib_value[None, None].float(),
                                 confi_value[None, None].float(), feats.float())
        motion = model.joint_encoder(aug, mask)
        joint = torch.cat([motion, feats.float().squeeze(-1)], dim=1)
        logits = model.decoder(joint.unsqueeze(-1))[0, 0]
    return dict(inputs=aug[0].permute(1, 2, 0), logits=logits, keep=keep,
                features=all_features)


def product_window(data: Dict[str, np.ndarray], ref: Dict[str, Any], features: np.ndarray,
                   upto: int = T) -> TrackWindow:
    """Return the same tracks as a product window: frames [0, upto), visibility continuous."""
    tracks = torch.from_numpy(data['tracks'])
    visible, _, confidence, visibility, _ = ref['parse'](tracks[..., 2], tracks[..., 3], 0.5)
    return TrackWindow(
        ids=np.arange(N, dtype=np.int64), xy=data['tracks'][:, :upto, :2].copy(),
        visible=visible[:, :upto].numpy(), confidence=confidence[:, :upto].numpy(),
        stamps_ns=np.arange(upto, dtype=np.int64) * 10 ** 8, image_size=(H, W),
        features=features, visibility=visibility[:, :upto].numpy().astype(np.float32))


@registry.register('tracker', 'parity_replay')
class ReplayTracker(Tracker):
    """Hands the pipeline windows cut from a fixed track file (the input of this comparison)."""

    def __init__(self, window: int = T) -> None:
        """Replay windows of at most ``window`` frames; set ``full`` before the first frame."""
        self.window = window
        self.full: TrackWindow = None  # type: ignore[assignment]
        self._count = 0

    def reset(self) -> None:
        """Start again at the first frame."""
        self._count = 0

    def update(self, frame: Frame, ctx: StageContext) -> TrackWindow:
        """Return the frames of ``full`` up to this one (every track, as a file holds them)."""
        self._count += 1
        lo = max(0, self._count - self.window)
        full = self.full
        return TrackWindow(ids=full.ids, xy=full.xy[:, lo:self._count],
                           visible=full.visible[:, lo:self._count],
                           confidence=full.confidence[:, lo:self._count],
                           stamps_ns=full.stamps_ns[lo:self._count], image_size=full.image_size,
                           features=full.features,
                           visibility=full.visibility[:, lo:self._count])


def product_logits(clf: MosegClassifier, window: TrackWindow, maps_from: str
                   ) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Return the product's input and logits (tracks fed to the model) and probabilities."""
    maps = clf.window_disparity_maps(window, None)
    if maps is None:
        raise SystemExit(f'product ({maps_from}): no depth map for every frame of the window')
    seen = np.flatnonzero(window.visible.any(axis=1))
    args = clf.model_arguments(window, seen, maps)
    features = args.pop('features')
    with torch.no_grad():
        inputs, invisible = clf.model.prepare(**args)
        logits = clf.model(inputs, invisible, features, reference_quirks=True)
    return inputs, logits, clf.classify(window, None)


def report(name: str, value: float, tol: float) -> bool:
    """Print one difference; tell whether it is within ``tol``."""
    ok = value <= tol
    print(f'  {name:<46s} max abs diff {value:.3e}  {"ok" if ok else "ABOVE " + str(tol)}')
    return ok


def main() -> int:
    """Compare; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('ref_path', type=Path, help='checkout of nnanhuang/SegAnyMo')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--tolerance', type=float, default=1e-5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref = import_reference(args.ref_path.resolve())
    cfg = ref['config']
    torch.manual_seed(args.seed)
    ref_model = ref['model'](cfg.extra_info, cfg.oanet, cfg.pos_embed, cfg.dino,
                             cfg.target_feature_dim, cfg.dino_later, cfg.dino_woatt,
                             cfg.time_att, cfg.tracks, cfg.depths).eval()
    with torch.no_grad():                      # every parameter random (norms included)
        for p in ref_model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    data = random_inputs(args.seed)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        state = ref_model.state_dict()
        torch.save({'model_state_dict': state}, str(tmp_path / 'moseg.pth'))
        clf = MosegClassifier(weights=str(tmp_path / 'moseg.pth'), device='cpu',
                              reference_quirks=True)      # loads strictly
        names = set(clf.model.state_dict())
        print(f'reference {args.ref_path} vs product, seed {args.seed}: {len(state)} reference '
              f'parameters, {len(names)} product, same names: {names == set(state)}')
        ok &= names == set(state)
        want = reference_run(ref, ref_model, data, tmp_path)
        print(f'window {N} tracks x {T} frames, image {H}x{W}; {int(want["keep"].sum())} '
              f'tracks seen; off-image positions: '
              f'{int(((data["tracks"][..., 0] < 0) | (data["tracks"][..., 0] > W)).sum())}; '
              f'visibility in (0, 1): continuous')
        window = product_window(data, ref, want['features'].numpy())
        window.depth_maps = data['depth']
        inputs, logits, prob = product_logits(clf, window, 'direct')
        print('classifier directly (reference_quirks):')
        ok &= report('88-channel input', float((inputs - want['inputs']).abs().max()),
                     args.tolerance)
        ok &= report('logits', float((logits - want['logits']).abs().max()), args.tolerance)
        ok &= report('probabilities (tracks never visible: 0)', float(np.abs(
            prob[want['keep'].numpy()] - torch.sigmoid(want['logits']).numpy()).max()
            + np.abs(prob[~want['keep'].numpy()]).max()), args.tolerance)

        config = load_config(overrides=[
            f'pipeline.window={T}', 'pipeline.stride=3', 'tracker.name=parity_replay',
            'tracker.params={}', f'classifier.params.weights={tmp_path / "moseg.pth"}',
            'classifier.params.reference_quirks=true', 'classifier.params.geometric=null',
            'classifier.params.threads=1', 'classifier.params.device=cpu'])
        pipe = StreamingPipeline(config)
        pipe.stages['tracker'].full = window
        rng = np.random.default_rng(args.seed)
        for t in range(T):
            image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            result = pipe.process(Frame(image=image, stamp_ns=t * 10 ** 8, index=t,
                                        depth=data['depth'][t]))
        pipe.close()
        print(f'inside StreamingPipeline, pipeline.stride 3 (frame {T - 1} classified: '
              f'{result.classified}):')
        ok &= bool(result.classified)
        inputs, logits, _ = product_logits(pipe.stages['classifier'], result.tracks, 'pipeline')
        ok &= report('88-channel input', float((inputs - want['inputs']).abs().max()),
                     args.tolerance)
        ok &= report('logits', float((logits - want['logits']).abs().max()), args.tolerance)
        ok &= report('probabilities (tracks never visible: 0)', float(np.abs(
            result.dynamic_probability[want['keep'].numpy()]
            - torch.sigmoid(want['logits']).numpy()).max()
            + np.abs(result.dynamic_probability[~want['keep'].numpy()]).max()), args.tolerance)
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
