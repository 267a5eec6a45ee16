#!/usr/bin/env python3
"""Parity of the dinov2 features backend with SegAnyMo's DINOv2 extraction, identical weights.

    python scripts/parity/dinov2.py REF_PATH [DINOV2_REF_PATH] [--image FRAME.jpg]

REF_PATH: a checkout of nnanhuang/SegAnyMo (4523e8f); DINOV2_REF_PATH: a checkout of
facebookresearch/dinov2 (the reference pins e1277af; default REF_PATH/preproc/dinov2). Builds a
random-init ViT-B/14 with the reference's own model code (torch.hub, source='local'), converts
its weights to a transformers ``Dinov2Model`` folder, then runs

* the reference: ``core/utils/dino_feat.py`` (its ``ViTExtractor`` at stride 7 on the frame
  rounded up to a multiple of 14, last block, key facet, no CLS; the preprocessing of
  ``extract_and_save_features``) and ``core/utils/utils.py:get_feat`` for the per-track lookup,
  as ``inference.py`` calls it;
* the product backend (``registry.create('features', 'dinov2', ...)``) in faithful and fast mode

on the same frame and track positions, and prints max abs / relative differences (relative: the
largest per-track ||a - b|| / ||b||; scaled: max |a - b| / max |b|). Exits 1 when the faithful
mode is above ``--tol``. The reference needs ``imageio`` and ``einops`` (not product
dependencies): put them on PYTHONPATH from a throwaway environment. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ARCHS = {'vitb14': 'dinov2_vitb14', 'vits14': 'dinov2_vits14'}


def load_module(name: str, path: Path):
    """Import a reference source file by path (the reference is not a package)."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ModuleNotFoundError as exc:
        sys.exit(f'{path} needs {exc.name!r}: install imageio and einops in a throwaway '
                 'environment and put it on PYTHONPATH')
    return mod


def reference_model(dinov2_ref: Path, arch: str, seed: int) -> torch.nn.Module:
    """Build the reference's DINOv2 with random weights, every parameter moved off its init.

    Biases, norms, layer scales and position embeddings all matter to the comparison.
    """
    torch.manual_seed(seed)
    warnings.filterwarnings('ignore', message='xFormers is not available')
    model = torch.hub.load(str(dinov2_ref), ARCHS[arch], source='local', pretrained=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def facebook_to_transformers(state: dict, depth: int) -> dict:
    """Map a facebookresearch DINOv2 state dict onto transformers' ``Dinov2Model`` names."""
    out = {'embeddings.cls_token': state['cls_token'],
           'embeddings.mask_token': state['mask_token'],
           'embeddings.position_embeddings': state['pos_embed'],
           'embeddings.patch_embeddings.projection.weight': state['patch_embed.proj.weight'],
           'embeddings.patch_embeddings.projection.bias': state['patch_embed.proj.bias'],
           'layernorm.weight': state['norm.weight'], 'layernorm.bias': state['norm.bias']}
    for i in range(depth):
        src, dst = f'blocks.{i}.', f'encoder.layer.{i}.'
        for name in ('weight', 'bias'):
            q, k, v = state[f'{src}attn.qkv.{name}'].chunk(3, dim=0)
            out.update({f'{dst}attention.q_proj.{name}': q, f'{dst}attention.k_proj.{name}': k,
                        f'{dst}attention.v_proj.{name}': v,
                        f'{dst}attention.o_proj.{name}': state[f'{src}attn.proj.{name}']})
            for a, b in (('norm1', 'norm1'), ('norm2', 'norm2'), ('mlp.fc1', 'mlp.fc1'),
                         ('mlp.fc2', 'mlp.fc2')):
                out[f'{dst}{b}.{name}'] = state[f'{src}{a}.{name}']
        out[f'{dst}layer_scale1.lambda1'] = state[f'{src}ls1.gamma']
        out[f'{dst}layer_scale2.lambda1'] = state[f'{src}ls2.gamma']
    return {k: v.clone().contiguous() for k, v in out.items()}


def save_transformers_copy(model: torch.nn.Module, dest: Path) -> Path:
    """Write ``model``'s weights as a transformers Dinov2Model folder (what the product loads)."""
    from transformers import Dinov2Config, Dinov2Model
    depth, dim = len(model.blocks), model.embed_dim
    cfg = Dinov2Config(hidden_size=dim, num_hidden_layers=depth,
                       num_attention_heads=model.num_heads,
                       intermediate_size=model.blocks[0].mlp.fc1.out_features,
                       patch_size=model.patch_size, image_size=model.patch_embed.img_size[0],
                       layerscale_value=1.0, layer_norm_eps=1e-6, qkv_bias=True)
    hf = Dinov2Model(cfg)
    hf.load_state_dict(facebook_to_transformers(model.state_dict(), depth), strict=True)
    hf.eval().save_pretrained(dest)
    return dest


def reference_features(ref: Path, model, rgb: np.ndarray, xy: np.ndarray, layer: int):
    """Per-track features as SegAnyMo makes them: dino_feat.py, then inference.py's get_feat."""
    from PIL import Image
    from torchvision import transforms
    dino_feat = load_module('segany_dino_feat', ref / 'core' / 'utils' / 'dino_feat.py')
    utils = load_module('segany_utils', ref / 'core' / 'utils' / 'utils.py')
    h, w = rgb.shape[:2]
    size = [(h + 13) // 14 * 14, (w + 13) // 14 * 14]     # dino_feat.py __main__
    prep = transforms.Compose([transforms.ToTensor(), transforms.Resize(size),
                               transforms.Normalize(mean=[0.485, 0.456, 0.406],
                                                    std=[0.229, 0.224, 0.225])])
    with contextlib.redirect_stdout(io.StringIO()):          # it prints the whole model
        extractor = dino_feat.ViTExtractor(model_type='dinov2_vitb14', stride=7, model=model,
                                           device='cpu')
    batch = torch.stack([prep(Image.fromarray(rgb))], dim=0)
    start = time.perf_counter()
    with torch.no_grad():
        desc = extractor.extract_descriptors(batch, [layer], 'key', include_cls=False)
    seconds = time.perf_counter() - start
    desc = desc.reshape(desc.shape[0], extractor.num_patches[0], extractor.num_patches[1],
                        -1).squeeze()
    fmap = desc.cpu().numpy()
    out = {}
    for name, stored in (('fp32', fmap), ('fp16 file', fmap.astype(np.float16))):
        dino_list = torch.from_numpy(stored).unsqueeze(0).unsqueeze(0)   # inference.py
        factor = (dino_list[0].shape[1] / h, dino_list[0].shape[2] / w)
        track = torch.from_numpy(xy.T.copy())[:, :, None]                # (2, N, 1)
        feat = utils.get_feat(factor, track, dino_list)                   # (1, C, N, 1)
        out[name] = feat[0, :, :, 0].T.float().numpy()
    return out, tuple(fmap.shape), seconds


def differences(a: np.ndarray, b: np.ndarray) -> dict:
    """Measure max abs, largest per-track relative L2, max abs scaled by max |b|, cosine."""
    diff = np.abs(a - b)
    rel = np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-12)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                      1e-12)
    return {'max_abs': float(diff.max()), 'rel': float(rel.max()),
            'rel_median': float(np.median(rel)),
            'scaled': float(diff.max() / np.abs(b).max()), 'cos_mean': float(cos.mean()),
            'cos_min': float(cos.min())}


def show(label: str, d: dict) -> None:
    """Print one comparison line."""
    print(f'{label:44s} max abs {d["max_abs"]:.3e}  relative {d["rel"]:.3e} '
          f'(median {d["rel_median"]:.3e})  scaled {d["scaled"]:.3e}  '
          f'cosine mean {d["cos_mean"]:.4f} min {d["cos_min"]:.4f}')


def product_features(weights: Path, rgb: np.ndarray, xy: np.ndarray, repeat: int, **params):
    """Run the product backend ``repeat`` times: features and (wall, CPU) seconds per call."""
    from motionseg_ros import registry
    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    stage = registry.create('features', 'dinov2', {'model': str(weights), 'device': 'cpu',
                                                   **params})
    frame = Frame(image=np.ascontiguousarray(rgb[..., ::-1]), stamp_ns=0)
    times = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        feats = stage.extract(frame, xy, StageContext())
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return feats, times


def track_positions(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """``n`` random positions plus the corners, borders and a few patch boundaries."""
    rng = np.random.default_rng(seed)
    xy = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], 1)
    edges = [[0, 0], [w - 1, h - 1], [w - 0.01, 0], [0, h - 0.01], [7, 7], [6.99, 13.99],
             [w / 2, h / 2]]
    return np.concatenate([xy, edges]).astype(np.float32)


def test_frame(image: str, seed: int) -> np.ndarray:
    """RGB uint8 frame: ``image`` if given, else a smooth random 480x854 picture."""
    if image:
        from PIL import Image
        return np.asarray(Image.open(image).convert('RGB'))
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (3, 15, 27)).astype(np.float32)
    big = torch.nn.functional.interpolate(torch.from_numpy(small)[None], size=(480, 854),
                                          mode='bicubic', align_corners=False)[0]
    return big.clamp(0, 255).permute(1, 2, 0).round().byte().numpy()


def main() -> int:
    """Compare, print, and return 1 when the faithful mode is above tolerance."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('ref', type=Path, help='SegAnyMo checkout')
    ap.add_argument('dinov2_ref', type=Path, nargs='?', help='facebookresearch/dinov2 checkout')
    ap.add_argument('--image', default='', help='frame to use (default: smooth random 480x854)')
    ap.add_argument('--arch', choices=sorted(ARCHS), default='vitb14')
    ap.add_argument('--tracks', type=int, default=2000)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--tol', type=float, default=1e-4, help='faithful mode: max relative')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--repeat', type=int, default=1, help='extract calls timed per mode')
    ap.add_argument('--bf16', action='store_true', help='also run faithful mode in bfloat16')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dinov2_ref = args.dinov2_ref or args.ref / 'preproc' / 'dinov2'
    if not (dinov2_ref / 'hubconf.py').is_file():
        sys.exit(f'no facebookresearch/dinov2 checkout at {dinov2_ref} (give DINOV2_REF_PATH)')
    rgb = test_frame(args.image, args.seed)
    h, w = rgb.shape[:2]
    xy = track_positions(h, w, args.tracks, args.seed)
    model = reference_model(dinov2_ref, args.arch, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_transformers_copy(model, Path(tmp) / 'dinov2')
        ref, grid, ref_s = reference_features(args.ref, model, rgb, xy, len(model.blocks) - 1)
        print(f'frame {h}x{w}, {len(xy)} tracks, {args.arch} random weights, reference grid '
              f'{grid}, torch threads {torch.get_num_threads()}; reference forward '
              f'{ref_s:.2f} s')
        runs = {'faithful': dict(mode='faithful', dtype='float32'),
                'fast': dict(mode='fast', dtype='float32', input_size=448)}
        if args.bf16:
            runs['faithful bf16'] = dict(mode='faithful', dtype='bfloat16')
        result = {}
        for name, params in runs.items():
            result[name], times = product_features(weights, rgb, xy, args.repeat, **params)
            print(f'product {name}: extract (wall, CPU) ' +
                  ', '.join(f'({w:.2f}, {c:.2f})' for w, c in times) + ' s')
    heads = model.num_heads
    show('faithful vs reference (fp32 map)', differences(result['faithful'], ref['fp32']))
    show('faithful vs reference (its fp16 files)', differences(result['faithful'],
                                                               ref['fp16 file']))
    show('reference fp16 files vs its fp32 map', differences(ref['fp16 file'], ref['fp32']))
    if 'faithful bf16' in result:
        show('faithful bf16 vs reference', differences(result['faithful bf16'], ref['fp32']))
    show('fast vs reference', differences(result['fast'], ref['fp32']))
    n, dim = result['fast'].shape
    before = result['fast'].reshape(n, dim // heads, heads).transpose(0, 2, 1).reshape(n, dim)
    show('fast, head-major channels (before) vs ref', differences(before, ref['fp32']))
    worst = differences(result['faithful'], ref['fp32'])['rel']
    print(f'faithful mode: max relative {worst:.3e} (tolerance {args.tol:.0e}): '
          f'{"PASS" if worst <= args.tol else "FAIL"}')
    return 0 if worst <= args.tol else 1


if __name__ == '__main__':
    sys.exit(main())
