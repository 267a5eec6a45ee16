#!/usr/bin/env python3
"""Parity: the product's streaming SAM2 densifier against Meta's offline ``SAM2VideoPredictor``.

Usage::

    python scripts/parity/sam2.py REF_PATH [--frames 8] [--video DIR] [--size 1024]

``REF_PATH`` is a checkout of github:facebookresearch/sam2 (or any folder holding Meta's
``sam2`` package, e.g. an unpacked PyPI ``sam2`` 1.1.0 sdist); Meta's code is imported from it
at run time (it needs ``hydra-core`` and ``iopath``). Both models get identical random weights:
Meta's SAM2.1 hiera-tiny is built from its own config with a fixed seed, its state dict is
converted to the transformers layout by :func:`meta_to_hf_state_dict` (written here) and saved
as a transformers model folder, which :class:`~motionseg_ros.densifiers.sam2.Sam2Densifier`
loads like released weights. Both then run on the same real frames with the same clicks:

* ``matched`` -- Meta's predictor driven in the product's order (prompt frame t, propagate to
  the next prompt, prompt again, ...): the same computation as the stream; must agree to
  ``--tol`` (mask logits, 256x256 model output and frame-size output) on every frame.
* ``reference`` -- the reference's call order (SegAnyMo ``run_sam2.py`` stage 2: each object on
  its own, every prompt added before propagating, forward then backward when frame 0 is not
  prompted, masks OR-ed): measured, not asserted; this is the online-vs-offline deviation.
* ``own`` -- the matched order with Meta loading and resizing the frames itself (PIL bicubic)
  instead of getting the product's pixels; ``pixels``: the input gap itself.
* ``short`` -- the matched order on a video of only ``--frames`` frames (Meta scales
  object-pointer time by the video length when it is below 16 frames; a stream cannot).

Prints every figure; exits 1 when a ``matched`` figure exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VIDEO = REPO.parent / 'shared' / 'data' / 'davis2016' / 'JPEGImages' / '480p' / 'dog'
META_CONFIG = 'configs/sam2.1/sam2.1_hiera_t.yaml'


# ---------------------------------------------------------------------------- reference import
def import_meta_sam2(ref_path: Optional[Path]):
    """Import Meta's ``sam2`` package from ``ref_path`` (a checkout root or its parent).

    ``None`` uses an installed ``sam2`` (PyPI 1.1.0 is Meta's code, re-uploaded by a third
    party). This script is itself named sam2.py, so its folder leaves ``sys.path`` first.
    """
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(here)]
    if ref_path is not None:
        roots = [ref_path, ref_path / 'sam2']
        root = next((r for r in roots if (r / 'sam2' / 'sam2_video_predictor.py').is_file()),
                    None)
        if root is None:
            raise SystemExit(f'{ref_path}: no sam2/sam2_video_predictor.py (expected a checkout '
                             'of github:facebookresearch/sam2)')
        if not (root / 'sam2' / 'configs' / 'sam2.1').is_dir():
            raise SystemExit(f'{root}: a SAM2 1.0 copy (no configs/sam2.1); the product runs '
                             "SAM2.1, compare with Meta's checkout instead")
        sys.path.insert(0, str(root))
    try:
        import sam2  # noqa: F401  (initialises hydra's config module)
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as exc:
        raise SystemExit(f"cannot import Meta's sam2 ({exc}); it needs hydra-core and iopath: "
                         'pip install hydra-core iopath (in a throwaway venv)') from exc
    return build_sam2_video_predictor


# ---------------------------------------------------------------------------- model shapes
@dataclass
class Spec:
    """The hiera backbone and input size shared by both models (default: SAM2.1 hiera-tiny)."""

    image_size: int = 1024
    embed_dim: int = 96
    num_heads: int = 1
    stages: Tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: Tuple[int, ...] = (5, 7, 9)
    window_spec: Tuple[int, ...] = (8, 4, 14, 7)
    window_pos_bkg: Tuple[int, int] = (7, 7)

    def meta_overrides(self) -> List[str]:
        """Hydra overrides that give Meta's config this spec."""
        e, f = self.embed_dim, self.image_size // 16
        trunk = 'model.image_encoder.trunk'
        mem = 'model.memory_attention.layer'

        def lst(v: Sequence[int]) -> str:
            return '[' + ','.join(str(int(x)) for x in v) + ']'
        return [f'++model.image_size={self.image_size}', f'++{trunk}.embed_dim={e}',
                f'++{trunk}.num_heads={self.num_heads}', f'++{trunk}.stages={lst(self.stages)}',
                f'++{trunk}.global_att_blocks={lst(self.global_att_blocks)}',
                f'++{trunk}.window_spec={lst(self.window_spec)}',
                f'++{trunk}.window_pos_embed_bkg_spatial_size={lst(self.window_pos_bkg)}',
                '++model.image_encoder.neck.backbone_channel_list='
                + lst([8 * e, 4 * e, 2 * e, e]),
                f'++{mem}.self_attention.feat_sizes=[{f},{f}]',
                f'++{mem}.cross_attention.feat_sizes=[{f},{f}]']

    def hf_config(self):
        """Return the transformers ``Sam2VideoConfig`` of the same model."""
        from transformers import Sam2VideoConfig
        s, e, h = self.image_size, self.embed_dim, self.num_heads
        backbone = dict(model_type='sam2_hiera_det_model', hidden_size=e, num_attention_heads=h,
                        image_size=[s, s], blocks_per_stage=list(self.stages),
                        embed_dim_per_stage=[e, 2 * e, 4 * e, 8 * e],
                        num_attention_heads_per_stage=[h, 2 * h, 4 * h, 8 * h],
                        window_size_per_stage=list(self.window_spec),
                        global_attention_blocks=list(self.global_att_blocks),
                        window_positional_embedding_background_size=list(self.window_pos_bkg))
        vision = dict(model_type='sam2_vision_model', backbone_config=backbone,
                      backbone_channel_list=[8 * e, 4 * e, 2 * e, e],
                      backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2])
        return Sam2VideoConfig(vision_config=vision, image_size=s,
                               prompt_encoder_config=dict(image_size=s),
                               memory_attention_rope_feat_sizes=[s // 16, s // 16])


def build_meta(build_fn, spec: Spec, seed: int, present_bias: float):
    """Meta's video predictor, random-initialised with ``seed`` (no checkpoint), on CPU.

    ``present_bias`` lifts the object-score head: a random head hovers around a zero logit,
    which SAM2 turns into "no object" (-1024 everywhere) and would make the comparison vacuous.
    """
    import torch
    torch.manual_seed(seed)
    predictor = build_fn(META_CONFIG, None, device='cpu',
                         hydra_overrides_extra=spec.meta_overrides())
    with torch.no_grad():
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(present_bias)
    return predictor.eval()


# ---------------------------------------------------------------------------- conversion
#: (pattern, replacement) applied in order to every key of Meta's state dict
RENAMES: List[Tuple[str, str]] = [
    (r'^image_encoder\.trunk\.', 'vision_encoder.backbone.'),
    (r'^image_encoder\.neck\.convs\.(\d+)\.conv\.', r'vision_encoder.neck.convs.\1.'),
    (r'patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^maskmem_tpos_enc$', 'memory_temporal_positional_encoding'),
    (r'^no_mem_embed$', 'no_memory_embedding'),
    (r'^no_mem_pos_enc$', 'no_memory_positional_encoding'),
    (r'^no_obj_ptr$', 'no_object_pointer'),
    (r'^no_obj_embed_spatial$', 'occlusion_spatial_embedding_parameter'),
    (r'^obj_ptr_tpos_proj\.', 'temporal_positional_encoding_projection_layer.'),
    (r'^obj_ptr_proj\.', 'object_pointer_proj.'),
    (r'^sam_prompt_encoder\.', 'prompt_encoder.'),
    (r'^sam_mask_decoder\.', 'mask_decoder.'),
    (r'\.out_proj\.', '.o_proj.'),
    (r'\.norm(\d)\.', r'.layer_norm\1.'),
    (r'^memory_attention\.norm\.', 'memory_attention.layer_norm.'),
    (r'\.norm_final_attn\.', '.layer_norm_final_attn.'),
    (r'mask_downscaling\.0\.', 'mask_embed.conv1.'),
    (r'mask_downscaling\.1\.', 'mask_embed.layer_norm1.'),
    (r'mask_downscaling\.3\.', 'mask_embed.conv2.'),
    (r'mask_downscaling\.4\.', 'mask_embed.layer_norm2.'),
    (r'mask_downscaling\.6\.', 'mask_embed.conv3.'),
    (r'output_upscaling\.0\.', 'upscale_conv1.'),
    (r'output_upscaling\.1\.', 'upscale_layer_norm.'),
    (r'output_upscaling\.3\.', 'upscale_conv2.'),
    (r'mask_downsampler\.encoder\.12\.', 'mask_downsampler.final_conv.'),
    (r'^memory_encoder\.pix_feat_proj\.', 'memory_encoder.feature_projection.'),
    (r'^memory_encoder\.o_proj\.', 'memory_encoder.projection.'),
    (r'^memory_encoder\.fuser\.', 'memory_encoder.memory_fuser.'),
    (r'(memory_fuser\.layers\.\d+)\.gamma$', r'\1.scale'),
    (r'(memory_fuser\.layers\.\d+)\.dwconv\.', r'\1.depthwise_conv.'),
    (r'(memory_fuser\.layers\.\d+)\.norm\.', r'\1.layer_norm.'),
    (r'(memory_fuser\.layers\.\d+)\.pwconv(\d)\.', r'\1.pointwise_conv\2.'),
]
MLP_KEY = re.compile(r'^(.*(?:mlp|obj_ptr_proj|output_hypernetworks_mlps\.\d+|'
                     r'iou_prediction_head|pred_obj_score_head))\.layers\.(\d+)\.(weight|bias)$')
DOWNSAMPLER_KEY = re.compile(r'^(.*mask_downsampler)\.encoder\.(\d+)\.(weight|bias)$')


def _mlp_renames(keys: Sequence[str]) -> Dict[str, str]:
    """Meta's ``MLP.layers.i`` -> transformers' proj_in / layers.(i-1) / proj_out."""
    depth: Dict[str, int] = {}
    for k in keys:
        m = MLP_KEY.match(k)
        if m:
            depth[m.group(1)] = max(depth.get(m.group(1), 0), int(m.group(2)) + 1)
    out = {}
    for k in keys:
        m = MLP_KEY.match(k)
        if m:
            prefix, i, leaf = m.group(1), int(m.group(2)), m.group(3)
            name = ('proj_in' if i == 0 else 'proj_out' if i == depth[prefix] - 1
                    else f'layers.{i - 1}')
            out[k] = f'{prefix}.{name}.{leaf}'
    return out


def meta_to_hf_state_dict(sd: Dict[str, 'object']) -> Dict[str, 'object']:
    """Convert a Meta SAM2.1 video state dict to transformers ``Sam2VideoModel`` keys."""
    import torch
    mlp = _mlp_renames(list(sd))
    out: Dict[str, object] = {}
    points = {}
    for key, value in sd.items():
        new = mlp.get(key, key)
        m = DOWNSAMPLER_KEY.match(new)
        if m and m.group(2) != '12':   # conv at 0,3,6,9; LayerNorm2d at 1,4,7,10
            i = int(m.group(2))
            part = 'conv' if i % 3 == 0 else 'layer_norm'
            new = f'{m.group(1)}.layers.{i // 3}.{part}.{m.group(3)}'
        for pattern, repl in RENAMES:
            new = re.sub(pattern, repl, new)
        pm = re.match(r'^prompt_encoder\.point_embeddings\.(\d+)\.weight$', new)
        if pm:
            points[int(pm.group(1))] = value
            continue
        if new == 'prompt_encoder.pe_layer.positional_encoding_gaussian_matrix':
            out['prompt_encoder.shared_embedding.positional_embedding'] = value
            out['shared_image_embedding.positional_embedding'] = value
            continue
        out[new] = value
    out['prompt_encoder.point_embed.weight'] = torch.cat([points[i] for i in sorted(points)])
    return out


def save_product_model(predictor, spec: Spec, dest: Path) -> Path:
    """Write Meta's weights as a transformers model folder the product's densifier loads."""
    from transformers import Sam2ImageProcessor, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor)
    model = Sam2VideoModel(spec.hf_config()).eval()
    sd = {k: v.detach().clone() for k, v in meta_to_hf_state_dict(predictor.state_dict()).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f'conversion incomplete: missing {missing[:8]} unexpected '
                         f'{unexpected[:8]}')
    model.save_pretrained(dest)
    side = spec.image_size
    frame_size, mask_size = ({'height': n, 'width': n} for n in (side, side // 4))
    Sam2VideoProcessor(Sam2ImageProcessor(size=frame_size, mask_size=mask_size),
                       Sam2VideoVideoProcessor(size=frame_size)).save_pretrained(dest)
    return dest


# ---------------------------------------------------------------------------- scenario
@dataclass
class Click:
    """Clicks for one object on one frame (x, y in frame pixels; label 1 positive, 0 negative)."""

    frame: int
    obj: int
    points: np.ndarray
    labels: np.ndarray


def default_clicks(h: int, w: int, num_frames: int) -> List[Click]:
    """Return the clicks of the comparison (frame-pixel coordinates).

    Object 1: a positive and a negative click at frame 0, re-prompted with three positive
    clicks at mid-clip (the product's re-prompt); object 2: one positive click at frame 2 (a
    new object found mid-stream).
    """
    k = max(2, num_frames // 2)
    f = np.float32
    return [
        Click(0, 1, np.array([[0.45 * w, 0.55 * h], [0.1 * w, 0.1 * h]], f), np.array([1, 0])),
        Click(min(2, num_frames - 1), 2, np.array([[0.8 * w, 0.85 * h]], f), np.array([1])),
        Click(k, 1, np.array([[0.45 * w, 0.5 * h], [0.35 * w, 0.4 * h], [0.6 * w, 0.7 * h]], f),
              np.array([1, 1, 1])),
    ]


def write_frames(images: Sequence[np.ndarray], folder: Path) -> Path:
    """Save BGR frames as 00000.jpg ... (what Meta's loader reads).

    JPEG is lossy, so both sides read the written files back (see :func:`parity`).
    """
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f'{i:05d}.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return folder


def read_frames(folder: Path) -> List[np.ndarray]:
    """BGR frames of a folder of JPEGs, sorted by name."""
    import cv2
    return [cv2.imread(str(p)) for p in sorted(folder.glob('*.jpg'))]


def run_product(model_dir: Path, images: Sequence[np.ndarray], clicks: Sequence[Click]):
    """Run the product's densifier with ``clicks``; per frame {obj: (lowres, logits, score)}."""
    from motionseg_ros.densifiers.prompting import Plan, Prompt
    from motionseg_ros.densifiers.sam2 import Sam2Densifier
    d = Sam2Densifier(model=str(model_dir), device='cpu', dtype='float32')
    out = []
    for t, bgr in enumerate(images):
        plan = Plan()
        for c in clicks:
            if c.frame != t:
                continue
            known = c.obj in d.object_ids
            prompt = Prompt(object_id=c.obj if known else None, points=c.points,
                            labels=c.labels.astype(np.int32), track_ids=np.zeros(0, np.int64))
            (plan.reprompt if known else plan.new).append(prompt)
            if not known:
                d._next_id = c.obj          # the product numbers new objects itself
        if not d.object_ids and not plan.new:
            out.append({})
            continue
        logits, obj_scores, ids = d._run(np.ascontiguousarray(bgr[..., ::-1]), t, plan, None)
        s = d.session
        frame = {}
        for k, oid in enumerate(ids):
            o = s.output_dict_per_obj[s._obj_id_to_idx[oid]]
            rec = o['cond_frame_outputs'].get(t) or o['non_cond_frame_outputs'][t]
            frame[oid] = (rec['pred_masks'][0, 0].float().numpy(), logits[k],
                          float(obj_scores[k]))
        d._trim(t)
        out.append(frame)
    return d, out


def _meta_record(predictor, state, t: int, oid: int, video_logits) -> Tuple:
    idx = state['obj_id_to_idx'][oid]
    o = state['output_dict_per_obj'][idx]
    rec = o['cond_frame_outputs'].get(t) or o['non_cond_frame_outputs'][t]
    return (rec['pred_masks'][0, 0].float().numpy(), video_logits.float().numpy(),
            float(rec['object_score_logits'].reshape(-1)[0]))


def run_meta(predictor, frames_dir: Path, pixels, clicks: Sequence[Click], num_frames: int,
             order: str):
    """Meta's predictor on the same pixels; ``order`` = 'matched' or 'reference'."""
    import torch
    out: List[Dict[int, Tuple]] = [dict() for _ in range(num_frames)]

    def collect(state, gen):
        for t, ids, video in gen:
            for i, oid in enumerate(ids):
                rec = _meta_record(predictor, state, t, oid, video[i, 0])
                old = out[t].get(oid)
                if old is not None and order == 'reference':   # OR of forward and backward
                    rec = (rec[0], np.maximum(old[1], rec[1]), max(old[2], rec[2]))
                out[t][oid] = rec

    with torch.inference_mode():
        state = predictor.init_state(str(frames_dir))
        if pixels is not None:       # init_state cached frame 0's features from its own pixels
            state['images'] = pixels
            state['cached_features'] = {}
        if order == 'matched':
            frames = sorted({c.frame for c in clicks})
            for n, f in enumerate(frames):
                for c in clicks:
                    if c.frame == f:
                        predictor.add_new_points_or_box(state, f, c.obj, points=c.points,
                                                        labels=c.labels)
                stop = frames[n + 1] - 1 if n + 1 < len(frames) else num_frames - 1
                collect(state, predictor.propagate_in_video(
                    state, start_frame_idx=f, max_frame_num_to_track=stop - f))
        else:
            for obj in sorted({c.obj for c in clicks}):
                predictor.reset_state(state)
                mine = [c for c in clicks if c.obj == obj]
                for c in mine:
                    predictor.add_new_points_or_box(state, c.frame, obj, points=c.points,
                                                    labels=c.labels)
                first, last = min(c.frame for c in mine), max(c.frame for c in mine)
                collect(state, predictor.propagate_in_video(
                    state, max_frame_num_to_track=num_frames - 1 - first))
                if first != 0:
                    collect(state, predictor.propagate_in_video(state, reverse=True,
                                                                max_frame_num_to_track=last))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Return the IoU of two binary masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(product, meta, label: str, quiet: bool = False) -> List[Dict]:
    """Per frame and object: low-res / frame-size logit max abs diff, mask IoU."""
    rows = []
    for t, (p, m) in enumerate(zip(product, meta)):
        for oid in sorted(set(p) | set(m)):
            if oid not in p or oid not in m:
                have = p if oid in p else m
                area = float((have[oid][1] > 0).mean())
                rows.append(dict(frame=t, obj=oid, only='product' if oid in p else 'meta',
                                 area=area))
                continue
            rows.append(dict(frame=t, obj=oid,
                             lowres=float(np.abs(p[oid][0] - m[oid][0]).max()),
                             full=float(np.abs(p[oid][1] - m[oid][1]).max()),
                             score=abs(p[oid][2] - m[oid][2]),
                             iou=iou(p[oid][1] > 0, m[oid][1] > 0),
                             area=float((m[oid][1] > 0).mean())))
    if not quiet:
        print(f'\n[{label}]  frame obj  lowres-maxabs  frame-maxabs  objscore-diff  IoU  area')
        for r in rows:
            if 'only' in r:
                print(f'  {r["frame"]:5d} {r["obj"]:3d}  only the {r["only"]} has a mask '
                      f'(area {100 * r["area"]:.1f} % of the frame)')
            else:
                print(f'  {r["frame"]:5d} {r["obj"]:3d}  {r["lowres"]:.2e}       {r["full"]:.2e}'
                      f'      {r["score"]:.2e}       {r["iou"]:.4f} {100 * r["area"]:.1f} %')
    return rows


def preprocessing_gap(frames_dir: Path, images, processor, spec: Spec):
    """Max abs difference of Meta's PIL-resized pixels and the transformers processor's."""
    import torch
    from PIL import Image
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    worst = 0.0
    for path, bgr in zip(sorted(frames_dir.glob('*.jpg')), images):
        pil = Image.open(path).convert('RGB').resize((spec.image_size, spec.image_size))
        meta = (torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255 - mean) / std
        ours = processor(images=np.ascontiguousarray(bgr[..., ::-1]),
                         return_tensors='pt').pixel_values[0]
        worst = max(worst, float((meta - ours).abs().max()))
    return worst


def product_pixels(processor, images):
    """Return the tensors the product feeds its model (so Meta sees the same pixels)."""
    import torch
    return torch.stack([processor(images=np.ascontiguousarray(b[..., ::-1]),
                                  return_tensors='pt').pixel_values[0] for b in images])


def parity(build_fn, images, clicks, spec: Spec, num_frames: int, seed: int = 0,
           present_bias: float = 8.0, workdir: Optional[Path] = None, reference: bool = True,
           own_pixels: bool = False, quiet: bool = False) -> Dict:
    """Run the comparisons on the first ``num_frames`` of ``images``.

    Meta's predictor sees the whole of ``images`` as its video but only tracks the first
    ``num_frames``: it scales object-pointer time by ``min(video length, 16) - 1`` while the
    stream (length unknown) always uses 15, so a video of >= 16 frames is the same
    computation; a shorter one is the ``short`` comparison (matched order, ``num_frames``-frame
    video); ``own`` lets Meta load and resize the frames itself. Returns {'matched',
    'reference', 'short', 'own': rows, 'pixels': float}.
    """
    import torch
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        frames_dir = write_frames(images, tmp / 'frames')
        images = read_frames(frames_dir)      # what the product decodes == what Meta decodes
        predictor = build_meta(build_fn, spec, seed, present_bias)
        model_dir = save_product_model(predictor, spec, tmp / 'model')
        dens, product = run_product(model_dir, images[:num_frames], clicks)
        pixels = product_pixels(dens.processor, images)
        result = {'pixels': preprocessing_gap(frames_dir, images, dens.processor, spec)}
        del dens
        meta = run_meta(predictor, frames_dir, pixels, clicks, num_frames, 'matched')
        result['matched'] = compare(product, meta, 'matched: same call order, same pixels', quiet)
        if reference:
            meta = run_meta(predictor, frames_dir, pixels, clicks, num_frames, 'reference')
            result['reference'] = compare(product, meta,
                                          'reference order (offline, backward, OR)', quiet)
        if own_pixels:
            meta = run_meta(predictor, frames_dir, None, clicks, num_frames, 'matched')
            result['own'] = compare(product, meta, "matched order, Meta's own frame loader",
                                    quiet)
        if len(images) > num_frames:
            short_dir = write_frames(images[:num_frames], tmp / 'short')
            meta = run_meta(predictor, short_dir, pixels[:num_frames], clicks, num_frames,
                            'matched')
            result['short'] = compare(product, meta, f'matched order, {num_frames}-frame video '
                                      '(object-pointer time scaled differently)', quiet)
        torch.set_grad_enabled(True)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison on real frames; print the figures; 1 above tolerance."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('ref_path', type=Path, help="checkout of Meta's sam2 (facebookresearch/sam2)")
    ap.add_argument('--video', type=Path, default=DEFAULT_VIDEO, help='folder of JPEG frames')
    ap.add_argument('--frames', type=int, default=8)
    ap.add_argument('--size', type=int, default=1024, help='model input size (SAM2: 1024)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--tol', type=float, default=1e-3)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    build_fn = import_meta_sam2(args.ref_path)
    sys.path.insert(0, str(REPO))
    paths = sorted(args.video.glob('*.jpg'))[:max(args.frames, 16)]
    if len(paths) < max(args.frames, 3):
        raise SystemExit(f'{args.video}: need at least {max(args.frames, 3)} JPEG frames')
    import cv2
    images = [cv2.imread(str(p)) for p in paths]
    h, w = images[0].shape[:2]
    clicks = default_clicks(h, w, args.frames)
    for c in clicks:
        print(f'prompt frame {c.frame} object {c.obj}: points {c.points.round(1).tolist()} '
              f'labels {c.labels.tolist()}')
    spec = Spec(image_size=args.size)
    res = parity(build_fn, images, clicks, spec, args.frames, seed=args.seed, own_pixels=True)
    matched = [r for r in res['matched'] if 'only' not in r]
    worst = max(max(r['lowres'], r['full']) for r in matched)
    unmatched = [r for r in res['matched'] if 'only' in r]
    print(f'\npreprocessing (Meta PIL resize vs transformers processor): max abs '
          f'{res["pixels"]:.3e} in normalised pixel units (not used above: both got the '
          "product's pixels)")
    print(f'matched: worst mask-logit max abs diff {worst:.3e} over {len(matched)} '
          f'frame-objects, min IoU {min(r["iou"] for r in matched):.4f}, tolerance {args.tol}')
    ref = [r for r in res['reference'] if 'only' not in r]
    extra = [r for r in res['reference'] if 'only' in r]
    print(f'reference order: worst max abs diff {max(r["full"] for r in ref):.3e}, min IoU '
          f'{min(r["iou"] for r in ref):.4f}; {len(extra)} frame-objects only one side has')
    if 'short' in res:
        short = [r for r in res['short'] if 'only' not in r]
        print(f'{args.frames}-frame video: worst max abs diff '
              f'{max(r["full"] for r in short):.3e}, min IoU {min(r["iou"] for r in short):.4f}')
    own = [r for r in res['own'] if 'only' not in r]
    print(f"Meta's own frame loader: worst max abs diff {max(r['full'] for r in own):.3e}, "
          f'min IoU {min(r["iou"] for r in own):.4f}')
    if unmatched or worst > args.tol:
        print("FAIL: the streaming densifier does not reproduce Meta's predictor")
        return 1
    print('OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
