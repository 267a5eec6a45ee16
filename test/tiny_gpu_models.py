"""Tiny random-init models saved in the real on-disk formats, for the GPU-profile tests.

Each builder writes what ``save_pretrained`` writes for the real checkpoint (config.json,
safetensors, processor config) into a folder, so the backends load them exactly as they load
the released weights. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch


def make_sam2(dest: Path, size: int = 64, seed: int = 0, present_bias: float = 8.0) -> Path:
    """Save a ~0.6 M-parameter SAM2 video model and its processor to ``dest``.

    ``present_bias`` lifts the object-score head so that a random model says "object present"
    (random weights hover around a zero logit, which SAM2 turns into empty masks).
    """
    from transformers import (Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel,
                              Sam2VideoProcessor)
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    torch.manual_seed(seed)
    s = size
    vision = dict(
        model_type='sam2_vision_model',
        backbone_config=dict(
            model_type='sam2_hiera_det_model', hidden_size=16, num_attention_heads=1,
            image_size=[s, s], blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
            window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3],
            window_positional_embedding_background_size=[2, 2]),
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        fpn_hidden_size=128)
    # memory_encoder_output_channels stays 64: the memory attention's key width is fixed at 64
    cfg = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=128, image_size=s, patch_size=16,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_attention_heads=2,
                                 iou_head_hidden_dim=32),
        image_size=s, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, num_maskmem=3,
        max_object_pointers_in_encoder=4)
    model = Sam2VideoModel(cfg).eval()
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(present_bias)
    proc = Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size={'height': s, 'width': s},
                                           mask_size={'height': s // 4, 'width': s // 4}),
        video_processor=Sam2VideoVideoProcessor(size={'height': s, 'width': s}))
    model.save_pretrained(dest)
    proc.save_pretrained(dest)
    return dest


def make_dinov2(dest: Path, hidden: int = 32, patch: int = 14, seed: int = 0) -> Path:
    """Save a 2-layer random DINOv2 (the real Dinov2Model format) and its image processor."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model
    torch.manual_seed(seed)
    cfg = Dinov2Config(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=2 * hidden, patch_size=patch, image_size=patch * 8)
    Dinov2Model(cfg).eval().save_pretrained(dest)
    BitImageProcessor(size={'shortest_edge': patch * 8},
                      crop_size={'height': patch * 8, 'width': patch * 8},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                      do_center_crop=True).save_pretrained(dest)
    return dest


def make_depth_anything(dest: Path, seed: int = 0, spread: bool = False) -> Path:
    """Save a tiny random Depth-Anything (DINOv2 backbone + DPT head) and its processor.

    ``spread``: rescale the head's last conv so that its output is about N(3, 1) on a noise
    image (at random init the map is ~1e-8, flat, and the last ReLU zeroes half of it).
    """
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation,
                              Dinov2Config, DPTImageProcessor)
    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, patch_size=14, image_size=56,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            apply_layernorm=True)
    cfg = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32],
                              fusion_hidden_size=16, head_hidden_size=8, reassemble_hidden_size=32,
                              depth_estimation_type='relative')
    model = DepthAnythingForDepthEstimation(cfg).eval()
    if spread:
        conv, seen = model.head.conv3, []
        hook = conv.register_forward_hook(lambda mod, inp, out: seen.append(out))
        with torch.no_grad():
            model(pixel_values=torch.randn(1, 3, 56, 84))
            hook.remove()
            out = seen[0] - conv.bias.view(1, -1, 1, 1)
            conv.weight /= out.std()
            conv.bias.copy_(3.0 - out.mean() / out.std())
    model.save_pretrained(dest)
    DPTImageProcessor(size={'height': 56, 'width': 56}, keep_aspect_ratio=True,
                      ensure_multiple_of=14, do_pad=False, resample=3,
                      image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(dest)
    return dest


def make_edgetam(dest: Path, size: int = 64, seed: int = 0, present_bias: float = 8.0) -> Path:
    """Save a small random EdgeTAM video model (RepViT via timm) with the SAM2 processor."""
    from transformers import (EdgeTamVideoConfig, EdgeTamVideoModel, Sam2ImageProcessor,
                              Sam2VideoProcessor, TimmWrapperConfig)
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    torch.manual_seed(seed)
    s = size
    backbone = TimmWrapperConfig(architecture='repvit_m1', model_args={
        'in_chans': 3, 'features_only': True, 'out_indices': [0, 1, 2, 3]})
    cfg = EdgeTamVideoConfig(
        vision_config=dict(model_type='edgetam_vision_model', backbone_config=backbone,
                           backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8],
                                                   [s // 16, s // 16]]),
        image_size=s, prompt_encoder_config=dict(image_size=s),
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_attention_rope_k_sizes=[4, 4],
        perceiver_resampler_num_latents=16, perceiver_resampler_num_latents_2d=16,
        memory_attention_num_layers=1)
    model = EdgeTamVideoModel(cfg).eval()
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(present_bias)
    proc = Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size={'height': s, 'width': s},
                                           mask_size={'height': s // 4, 'width': s // 4}),
        video_processor=Sam2VideoVideoProcessor(size={'height': s, 'width': s}))
    model.save_pretrained(dest)
    proc.save_pretrained(dest)
    return dest


def fail_once_with_oom(model: torch.nn.Module) -> None:
    """Fault injection: the next ``model(...)`` call raises CUDA out of memory, later ones run."""
    real = model.forward
    left = [1]

    def forward(*args, **kwargs):
        if left[0]:
            left[0] -= 1
            raise torch.cuda.OutOfMemoryError('CUDA out of memory (injected)')
        return real(*args, **kwargs)
    model.forward = forward


def imagenet_normalised(img_bgr: np.ndarray, size: Tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) RGB of a BGR uint8 image resized to ``size`` (antialiased bilinear) and
    normalised with the ImageNet mean/std: what the ViT backends feed their models."""
    img = torch.from_numpy(np.ascontiguousarray(img_bgr[..., ::-1])).permute(2, 0, 1)
    img = torch.nn.functional.interpolate(img[None].float() / 255, size, mode='bilinear',
                                          align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (img - mean) / std
