#!/usr/bin/env python3
"""Depth parity: the SegAnyMo reference's depth path vs motionseg's depth_anything backend.

    python scripts/parity/depth.py REF_PATH [--ref-python PY] [--frames N] [--size small]

REF_PATH is a checkout of nnanhuang/SegAnyMo. Its ``core/utils/run_depth.py`` runs
Depth-Anything-V2 through the transformers 4.44 depth-estimation pipeline (its pin), saves each
frame's min-max disparity as a uint16 PNG, and ``inference.py`` reads it back with PIL
``convert('L')`` (clipped at 255) and min-max normalises it. The reference side runs in a
subprocess under ``--ref-python``: an interpreter with the reference's pins (transformers==4.44.0,
huggingface_hub==0.24.5, pillow==11.1.0, imageio), e.g. a venv made with
``--system-site-packages`` over the product's. Both sides load one random-initialised
Depth-Anything-V2 (Small-size, seeded) saved in the transformers folder format with the
processor config of depth-anything/Depth-Anything-V2-*-hf, and run on the same real frames, each
through its own preprocessing. Printed: max abs / max relative (to the reference's peak)
difference of the raw disparity and of the min-max normalised disparity (tolerance 1e-4), and,
in the product's quirk mode (the moseg classifier's ``reference_quirks`` depth chain), the 16-bit
codes (tolerance: one code, 1.5e-5 of the range) and the 8-bit maps the reference's classifier
read (tolerance: one code on at most 0.1 % of the pixels). The reference never runs the
Depth-Anything-V2 repository's own DPT module (its model is transformers'), so that repository
is not needed. Exit status 1 when a figure is above its tolerance.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FRAMES = ROOT.parent / 'shared' / 'data' / 'davis2016' / 'JPEGImages' / '480p' / 'dog'
TOLERANCE = 1e-4
# preprocessor_config.json of depth-anything/Depth-Anything-V2-{Small,Base,Large}-hf (as built
# by transformers' conversion script): DPT processor, 518 square target, keep aspect, x14
PROCESSOR = {
    'image_processor_type': 'DPTImageProcessor', 'do_resize': True,
    'size': {'height': 518, 'width': 518}, 'keep_aspect_ratio': True, 'ensure_multiple_of': 14,
    'resample': 3, 'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
    'image_mean': [0.485, 0.456, 0.406], 'image_std': [0.229, 0.224, 0.225], 'do_pad': False}
# (hidden, layers, heads, out_indices, fusion, neck) of the released V2 sizes
SIZES = {'tiny': (64, 4, 2, [1, 2, 3, 4], 16, [8, 16, 32, 64]),
         'small': (384, 12, 6, [3, 6, 9, 12], 64, [48, 96, 192, 384]),
         'large': (1024, 24, 16, [5, 12, 18, 24], 256, [256, 512, 1024, 1024])}


def depth_anything_config(size: str):
    """Build the transformers DepthAnythingConfig of a released Depth-Anything-V2 size."""
    from transformers import DepthAnythingConfig, Dinov2Config
    hidden, layers, heads, out_idx, fusion, neck = SIZES[size]
    backbone = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=4 * hidden,
                            patch_size=14, image_size=518, out_indices=out_idx,
                            apply_layernorm=True, reshape_hidden_states=False)
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=hidden,
                               patch_size=14, fusion_hidden_size=fusion,
                               neck_hidden_sizes=neck, depth_estimation_type='relative')


def random_model(size: str, seed: int):
    """Build a seeded random Depth-Anything-V2 whose output spans a range.

    At random init the head's last conv gives values around 0 with a tiny spread, which the
    final ReLU halves and min-max turns into float noise. That conv is rescaled (on a seeded
    noise image) to unit spread around 3, so the map carries the input's signal.
    """
    import torch
    from transformers import DepthAnythingForDepthEstimation
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(depth_anything_config(size)).eval()
    spread_output(model.head.conv3, lambda x: model(pixel_values=x), seed)
    return model


def spread_output(conv, forward, seed: int) -> None:
    """Rescale the last conv so its output is about N(3, 1) on a seeded noise image."""
    import torch
    seen = []
    handle = conv.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    with torch.no_grad():
        forward(torch.randn(1, 3, 196, 252, generator=torch.Generator().manual_seed(seed)))
        handle.remove()
        out = seen[0] - conv.bias.view(1, -1, 1, 1)
        conv.weight /= out.std()
        conv.bias.copy_(3.0 - out.mean() / out.std())


def save_model(dest: Path, size: str, seed: int) -> Path:
    """Save the random model and the released processor config (transformers folder)."""
    random_model(size, seed).save_pretrained(dest)
    (dest / 'preprocessor_config.json').write_text(json.dumps(PROCESSOR, indent=2))
    return dest


# ------------------------------------------------------------------ reference side (subprocess)
def reference_side(ref_path: Path, model_dir: Path, frames: list, out: Path) -> None:
    """Run the reference's own run_depth.py on ``frames``; save its float and PNG-read maps."""
    import cv2
    import transformers
    from PIL import Image, __version__ as pil_version
    spec = importlib.util.spec_from_file_location(
        'seganymo_run_depth', ref_path / 'core' / 'utils' / 'run_depth.py')
    run_depth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_depth)
    run_depth.DEVICE = 'cpu'
    run_depth.models['depth-anything-v2'] = str(model_dir)    # the hub id -> our random model
    original, disp = run_depth.get_depth_anything_disp, []

    def keep_float(pipe, img_file, ret_type='float'):
        # the original's uint16 branch is to_uint16(its float result): run once, keep both
        out = original(pipe, img_file, ret_type='float')
        disp.append(out)
        return run_depth.to_uint16(out) if ret_type == 'uint16' else out
    run_depth.get_depth_anything_disp = keep_float
    with tempfile.TemporaryDirectory() as tmp:
        img_dir, png_dir = Path(tmp) / 'images', Path(tmp) / 'depth_anything_v2'
        img_dir.mkdir()
        for f in frames:
            (img_dir / Path(f).name).symlink_to(Path(f).resolve())
        run_depth.save_disp_from_dir('depth-anything-v2', str(img_dir), str(png_dir))
        pngs = sorted(png_dir.glob('*.png'))
        u16 = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs]
        loaded = []
        for p in pngs:                        # inference.py, main(): the classifier's input
            depth_img = np.array(Image.open(p).convert('L'))
            loaded.append((depth_img - depth_img.min()) / (depth_img.max() - depth_img.min()))
    np.savez(out, disp=np.stack(disp), u16=np.stack(u16), loaded=np.stack(loaded),
             versions=np.array([transformers.__version__, pil_version]))


# ------------------------------------------------------------------ product side
def product_side(model_dir: Path, frames: list, dtype: str, eps: float) -> dict:
    """Run the depth_anything backend (reference preprocessing), then the quirk chain."""
    import cv2
    import torch
    from motionseg_ros.depth.depth_anything import DepthAnythingDepth
    from motionseg_ros.models.moseg import reference_depth_maps
    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    stage = DepthAnythingDepth(model=str(model_dir), device='cpu', dtype=dtype, eps=eps,
                               preprocessing='reference')
    network = stage.raw_disparity
    raw, norm, quirk = [], [], []

    def run_once(frame):
        # estimate() is called twice per frame (two outputs): run the network once
        if not raw or raw[-1][0] is not frame:
            raw.append((frame, network(frame)))
        return raw[-1][1]
    stage.raw_disparity = run_once
    for i, f in enumerate(frames):
        frame = Frame(image=cv2.imread(str(f), cv2.IMREAD_COLOR), stamp_ns=i)
        stage.output = 'disparity'
        norm.append(stage.estimate(frame, StageContext()))
        stage.output = 'depth'
        depth = stage.estimate(frame, StageContext())
        # MosegClassifier.classify with reference_quirks: maps = 1 / frame depth, non-finite 0
        with np.errstate(divide='ignore'):
            inv = 1.0 / depth
        inv[~np.isfinite(inv)] = 0.0
        quirk.append(inv.astype(np.float32))
    maps = reference_depth_maps(torch.from_numpy(np.stack(quirk))).numpy()
    return {'raw': np.stack([r for _, r in raw]), 'norm': np.stack(norm),
            'inv': np.stack(quirk), 'loaded': maps}


# ------------------------------------------------------------------ Depth-Anything-V2's own code
def da2_to_transformers(state: dict) -> dict:
    """Rename a Depth-Anything-V2 repository state dict to DepthAnythingForDepthEstimation's.

    The DINOv2 backbone (``pretrained.*``) is renamed as in ``dinov2.py``; the DPT's refinenet4
    (deepest) is fusion layer 0.
    """
    spec = importlib.util.spec_from_file_location('parity_dinov2',
                                                  Path(__file__).with_name('dinov2.py'))
    dinov2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dinov2)
    backbone = {k.split('.', 1)[1]: v for k, v in state.items() if k.startswith('pretrained.')}
    depth = len({k.split('.')[1] for k in backbone if k.startswith('blocks.')})
    out = {'backbone.' + k: v for k, v in dinov2.facebook_to_transformers(backbone, depth).items()}
    for key, value in state.items():
        parts = key.split('.')
        if parts[0] == 'pretrained':
            continue
        head = '.'.join(parts[1:])                                 # depth_head.*
        if parts[1] in ('projects', 'resize_layers'):
            kind = 'projection' if parts[1] == 'projects' else 'resize'
            out[f'neck.reassemble_stage.layers.{parts[2]}.{kind}.{parts[3]}'] = value
        elif parts[2].endswith('_rn'):
            out[f'neck.convs.{int(parts[2][5]) - 1}.{parts[3]}'] = value
        elif parts[2].startswith('refinenet'):
            layer = 4 - int(parts[2][-1])
            rest = '.'.join(parts[3:]).replace('out_conv', 'projection').replace(
                'resConfUnit', 'residual_layer').replace('conv1', 'convolution1').replace(
                'conv2', 'convolution2')
            out[f'neck.fusion_stage.layers.{layer}.{rest}'] = value
        else:
            name = {'scratch.output_conv1': 'head.conv1', 'scratch.output_conv2.0': 'head.conv2',
                    'scratch.output_conv2.2': 'head.conv3'}[head.rsplit('.', 1)[0]]
            out[f'{name}.{parts[-1]}'] = value
    return out


def da2_check(da2_path: Path, frames: list, seed: int, work: Path) -> bool:
    """Random DA2-repo Small vs the product's network on the reference's input tensor."""
    import cv2
    import torch
    from motionseg_ros.depth.depth_anything import DepthAnythingDepth
    from motionseg_ros.depth.preprocess import reference_pixels
    from transformers import DepthAnythingForDepthEstimation
    sys.path.insert(0, str(da2_path))
    from depth_anything_v2.dpt import DepthAnythingV2
    torch.manual_seed(seed)
    theirs = DepthAnythingV2(encoder='vits', features=64, out_channels=[48, 96, 192, 384]).eval()
    spread_output(theirs.depth_head.scratch.output_conv2[2], theirs, seed)
    ours = DepthAnythingForDepthEstimation(depth_anything_config('small')).eval()
    ours.load_state_dict(da2_to_transformers(theirs.state_dict()), strict=True)
    ours.save_pretrained(work / 'da2_converted')
    stage = DepthAnythingDepth(model=str(work / 'da2_converted'), device='cpu',
                               dtype='float32', preprocessing='reference')
    worst = 0.0
    for f in frames:
        pixels = torch.from_numpy(reference_pixels(cv2.imread(str(f)), 518, 14))
        with torch.inference_mode():
            a = theirs(pixels)
            b = stage.model(pixel_values=pixels).predicted_depth
        worst = max(worst, float((a - b).abs().max() / a.abs().max()))
    ok = worst <= TOLERANCE
    print(f'{"DA2 repo network vs product":34s} max rel {worst:.3e} on {tuple(pixels.shape)} '
          f'input (tolerance {TOLERANCE:g}) {"OK" if ok else "ABOVE TOLERANCE"}')
    return ok


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-frame min-max normalisation in float64 (the reference's to_uint16 before x65535)."""
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return (x.astype(np.float64) - lo) / (hi - lo)


def compare(name: str, ref: np.ndarray, ours: np.ndarray, tol: float) -> bool:
    """Print max abs and peak-relative difference; return whether within ``tol``."""
    diff = np.abs(ref.astype(np.float64) - ours.astype(np.float64))
    rel = float(diff.max() / max(np.abs(ref).max(), 1e-12))
    ok = rel <= tol
    print(f'{name:34s} max abs {diff.max():.3e}  max rel {rel:.3e}  '
          f'(tolerance {tol:g}) {"OK" if ok else "ABOVE TOLERANCE"}')
    return ok


def compare_codes(name: str, ref: np.ndarray, ours: np.ndarray, step: float,
                  max_frac: float = 1.0) -> bool:
    """Print how many quantised values differ and by how many codes.

    Within tolerance: at most one code apart, on at most ``max_frac`` of the pixels.
    """
    codes = np.rint(np.abs(ref.astype(np.float64) - ours.astype(np.float64)) / step * 1e6) / 1e6
    frac = float((codes >= 0.5).mean())
    ok = codes.max() <= 1 and frac <= max_frac
    print(f'{name:34s} max {codes.max():.0f} code(s), {100 * frac:.4f} % of pixels differ  '
          f'{"OK" if ok else "ABOVE TOLERANCE"}')
    return ok


def latency(frames: list, repeats: int = 1) -> None:
    """Print CPU seconds per frame of random Small and Large through the backend (one frame)."""
    import time

    import cv2
    import torch
    from motionseg_ros.depth.depth_anything import DepthAnythingDepth
    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    frame = Frame(image=cv2.imread(str(frames[0]), cv2.IMREAD_COLOR), stamp_ns=0)
    print(f'CPU latency, {frame.size[0]}x{frame.size[1]} frame, torch threads '
          f'{torch.get_num_threads()}, float32:')
    for size in ('small', 'large'):
        with tempfile.TemporaryDirectory() as tmp:
            model = random_model(size, 0)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            model.save_pretrained(tmp)
            del model
            for prep in ('reference', 'fast'):
                st = DepthAnythingDepth(model=tmp, device='cpu', dtype='float32',
                                        preprocessing=prep)
                st.estimate(frame, StageContext())              # warm-up
                t0 = time.perf_counter()
                for _ in range(repeats):
                    st.estimate(frame, StageContext())
                dt = (time.perf_counter() - t0) / repeats
                print(f'  {size:5s} ({params:.1f} M parameters), preprocessing {prep:9s}: '
                      f'{dt:.2f} s/frame')


def main() -> int:
    """Build the shared random model, run both sides, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('ref_path', type=Path, nargs='?', default=Path('.'),
                    help='checkout of nnanhuang/SegAnyMo')
    ap.add_argument('da2_ref_path', type=Path, nargs='?',
                    help='checkout of DepthAnything/Depth-Anything-V2 (optional)')
    ap.add_argument('--ref-python', default=sys.executable,
                    help='interpreter with the reference pins (transformers==4.44.0 ...)')
    ap.add_argument('--images', type=Path, default=DEFAULT_FRAMES)
    ap.add_argument('--frames', type=int, default=3)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--size', choices=sorted(SIZES), default='small',
                    help='random model size (tiny: a quick check of the script itself)')
    ap.add_argument('--dtype', default='float32', help='product dtype (the reference: float32)')
    ap.add_argument('--eps', type=float, default=1e-9,
                    help='product depth eps in quirk mode (backend default 1e-3)')
    ap.add_argument('--latency', action='store_true',
                    help='only print CPU latency of random Small vs Large (needs no reference)')
    ap.add_argument('--reference-side', type=Path, help=argparse.SUPPRESS)
    ap.add_argument('--model', type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    frames = sorted(args.images.glob('*.jpg'))[:args.frames]
    if args.reference_side:
        reference_side(args.ref_path, args.model, frames, args.reference_side)
        return 0
    if args.latency:
        latency(frames)
        return 0
    if not (args.ref_path / 'core' / 'utils' / 'run_depth.py').is_file():
        ap.error(f'{args.ref_path} is not a SegAnyMo checkout (no core/utils/run_depth.py)')
    if not frames:
        ap.error(f'no .jpg frames in {args.images}')
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model(Path(tmp) / 'model', args.size, args.seed)
        out = Path(tmp) / 'reference.npz'
        subprocess.run([args.ref_python, __file__, str(args.ref_path), '--reference-side',
                        str(out), '--model', str(model_dir), '--images', str(args.images),
                        '--frames', str(args.frames)], check=True)
        ref = dict(np.load(out))
        ours = product_side(model_dir, frames, args.dtype, args.eps)
        if args.da2_ref_path:
            ok &= da2_check(args.da2_ref_path, frames, args.seed, Path(tmp))
    tv, pv = ref['versions']
    print(f'frames: {len(frames)} of {args.images} {ref["disp"].shape[1:]}; random '
          f'Depth-Anything-V2 {args.size}, seed {args.seed}; reference: transformers {tv}, '
          f'pillow {pv}; product dtype {args.dtype}')
    ok &= compare('raw disparity at image size', ref['disp'], ours['raw'], TOLERANCE)
    ok &= compare('min-max normalised disparity', minmax(ref['disp']), ours['norm'], TOLERANCE)
    # quirk mode: the product's normalised disparity -> uint16 as the reference saved it
    u16 = np.floor(65535.0 * minmax(ours['inv']))
    ok &= compare_codes('quirk: uint16 PNG codes', ref['u16'], u16, 1.0)
    ok &= compare_codes('quirk: 8-bit maps the classifier read', ref['loaded'], ours['loaded'],
                        1 / 255, max_frac=1e-3)
    kept = int((ref['u16'] < 255).sum())
    print(f'quirk: the 8-bit read keeps {kept} of {ref["u16"].size} pixels below 255 '
          '(the rest saturate)')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
