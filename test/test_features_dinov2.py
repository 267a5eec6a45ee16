"""The dinov2 features backend in both modes, on a tiny random DINOv2 saved in the real format.

The reference behaviour restated here (SegAnyMo 4523e8f, core/utils/dino_feat.py and
core/utils/utils.py:get_feat) is what ``scripts/parity/dinov2.py`` checks against the reference
code itself; these tests need no fetched source.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('transformers')

from tiny_gpu_models import fail_once_with_oom, imagenet_normalised, make_dinov2  # noqa: E402

from motionseg_ros import registry  # noqa: E402
from motionseg_ros.config import load_config  # noqa: E402
from motionseg_ros.features.vit_stride import token_grid  # noqa: E402
from motionseg_ros.stages import StageContext  # noqa: E402
from motionseg_ros.types import Frame  # noqa: E402

os.environ.setdefault('HF_HUB_OFFLINE', '1')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A 2-layer, 2-head, 32-d random DINOv2 with 14-px patches (8x8 position embeddings)."""
    torch.set_num_threads(1)
    return make_dinov2(tmp_path_factory.mktemp('weights') / 'dinov2')


def frame_of(h: int, w: int, seed: int = 0) -> Frame:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Frame(image=img, stamp_ns=0)


def create(tiny, **params):
    return registry.create('features', 'dinov2', {'model': str(tiny), 'device': 'cpu', **params})


def reference_keys(model, pixel_values):
    """Last-block keys as dino-vit-features takes them: (tokens - 1, head_dim * heads)."""
    with torch.no_grad():
        hidden = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-2]
        layer = model.encoder.layer[-1]
        att = layer.attention
        qkv_w = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
        qkv_b = torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias])
        x = layer.norm1(hidden)
        b, n, c = x.shape
        heads = model.config.num_attention_heads
        qkv = torch.nn.functional.linear(x, qkv_w, qkv_b).reshape(b, n, 3, heads, c // heads)
        keys = qkv.permute(2, 0, 3, 1, 4)[1]                          # B x h x t x d
        return keys[:, :, 1:, :].permute(0, 2, 3, 1).flatten(-2)[0]   # t x (d * h)


def test_key_features_come_in_the_reference_channel_layout(tiny):
    # moseg.pth was trained on keys flattened as (head_dim, heads); the key projection writes
    # (heads, head_dim). Fast mode, nearest lookup at patch centres of a 56x56 frame (4x4 grid).
    frame = frame_of(56, 56, seed=1)
    stage = create(tiny, facet='key', input_size=56, sampling='nearest')
    centres = np.array([[14 * j + 7, 14 * i + 7] for i in range(4) for j in range(4)], np.float32)
    feats = stage.extract(frame, centres, StageContext())
    expected = reference_keys(stage.model, imagenet_normalised(frame.image, (56, 56)))
    assert feats.shape == (16, 32)
    np.testing.assert_allclose(feats, expected.numpy(), atol=1e-5)


def test_faithful_grid_is_stride_7_on_the_frame_rounded_up_to_14(tiny):
    stage = create(tiny, mode='faithful')
    assert stage.stride == 7 and stage.input_size == 0
    # DAVIS: 480x854 -> 490x854 -> 69x121 overlapping patches (the reference's saved maps)
    assert stage.input_shape(480, 854) == (490, 854)
    assert token_grid(490, 854, 14, 7) == (69, 121)
    fmap = stage.feature_map(frame_of(60, 90))
    assert stage.input_shape(60, 90) == (70, 98)
    assert tuple(fmap.shape) == (32, 9, 13)
    fast = create(tiny, mode='fast', input_size=98).feature_map(frame_of(60, 90))
    assert tuple(fast.shape) == (32, 5, 7)
    capped = create(tiny, mode='faithful', input_size=56)
    assert capped.input_shape(60, 90) == (42, 56)


def test_faithful_position_embeddings_follow_the_reference(tiny):
    # the reference resizes the 8x8 embeddings with scale factors (rows + 0.1) / 8 and
    # (cols + 0.1) / 8 as given; transformers' own resize by output size samples elsewhere
    stage = create(tiny, mode='faithful')
    emb = stage.model.embeddings
    pix = imagenet_normalised(frame_of(70, 98, seed=3).image, (70, 98))
    with torch.no_grad():
        got = emb(pix)
        proj = emb.patch_embeddings.projection
        patches = torch.nn.functional.conv2d(pix, proj.weight, proj.bias, stride=7)
        patches = patches.flatten(2).transpose(1, 2)                         # 1 x 117 x 32
        pos = emb.position_embeddings
        grid = pos[:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
        ref = torch.nn.functional.interpolate(grid, scale_factor=(9.1 / 8, 13.1 / 8),
                                              mode='bicubic', align_corners=False,
                                              recompute_scale_factor=False)
        by_size = torch.nn.functional.interpolate(grid, size=(9, 13), mode='bicubic',
                                                  align_corners=False)
        expected = torch.cat([emb.cls_token + pos[:, :1],
                              patches + ref.permute(0, 2, 3, 1).reshape(1, 117, -1)], 1)
    assert got.shape == (1, 118, 32)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(ref, by_size, atol=1e-4)


def test_faithful_lookup_takes_the_reference_patch(tiny):
    # get_feat: column int(x * 13 / 90), row int(y * 9 / 60), clamped; a 60x90 frame -> 9x13
    stage = create(tiny, mode='faithful', facet='token')
    frame = frame_of(60, 90, seed=2)
    fmap = stage.feature_map(frame)
    xy = np.array([[0, 0], [89.9, 59.9], [6.9, 6.6], [7.0, 7.0], [-5, 100], [np.nan, np.nan],
                   [45.0, 30.0]], np.float32)
    rows_cols = [(0, 0), (8, 12), (0, 0), (1, 1), (8, 0), (0, 0), (4, 6)]
    feats = stage.extract(frame, xy, StageContext())
    expected = np.stack([fmap[:, r, c].numpy() for r, c in rows_cols])
    np.testing.assert_array_equal(feats, expected)
    assert np.isfinite(feats).all()


def test_fast_lookup_interpolates_between_patch_centres(tiny):
    # stride 14, 56x56 frame fed at 56 px: patch (i, j) has its centre at pixel 14 j + 6.5
    stage = create(tiny, facet='token', input_size=56)
    frame = frame_of(56, 56, seed=5)
    fmap = stage.feature_map(frame)
    xy = np.array([[6.5, 6.5], [20.5, 34.5], [13.5, 6.5], [0, 0], [55, 55]], np.float32)
    feats = stage.extract(frame, xy, StageContext())
    expected = np.stack([fmap[:, 0, 0], fmap[:, 2, 1], (fmap[:, 0, 0] + fmap[:, 0, 1]) / 2,
                         fmap[:, 0, 0], fmap[:, 3, 3]]).astype(np.float32)
    np.testing.assert_allclose(feats, expected, atol=1e-5)


def test_modes_are_deterministic_and_differ(tiny):
    frame = frame_of(60, 90, seed=4)
    xy = np.array([[10, 10], [45, 30], [80, 55]], np.float32)
    out = {}
    for mode in ('faithful', 'fast'):
        a = create(tiny, mode=mode, input_size=None if mode == 'faithful' else 98)
        b = create(tiny, mode=mode, input_size=None if mode == 'faithful' else 98)
        fa = a.extract(frame, xy, StageContext())
        assert fa.shape == (3, 32) and fa.dtype == np.float32 and np.isfinite(fa).all()
        np.testing.assert_array_equal(fa, a.extract(frame, xy, StageContext()))
        np.testing.assert_array_equal(fa, b.extract(frame, xy, StageContext()))
        out[mode] = fa
    assert not np.allclose(out['faithful'], out['fast'], atol=1e-3)
    empty = create(tiny, mode='faithful').extract(frame, np.zeros((0, 2)), StageContext())
    assert empty.shape == (0, 32)


def test_bad_mode_and_sampling_are_refused(tiny):
    with pytest.raises(registry.BackendError, match='mode'):
        create(tiny, mode='exact')
    with pytest.raises(registry.BackendError, match='sampling'):
        create(tiny, mode='faithful', sampling='bicubic')
    with pytest.raises(registry.BackendError, match='input_size'):
        create(tiny, mode='fast', input_size=0)


def test_faithful_mode_scales_the_frame_down_on_out_of_memory(tiny):
    stage = create(tiny, mode='faithful', min_input_size=28)
    fail_once_with_oom(stage.model)
    ctx = StageContext()
    feats = stage.extract(frame_of(60, 90), np.array([[5, 5]], np.float32), ctx)
    assert feats.shape == (1, 32) and stage.input_size == 45
    assert stage.input_shape(60, 90) == (42, 56)
    assert any('out of memory' in w for w in ctx.scratch['warnings'])


def test_gpu_yaml_runs_the_faithful_mode_in_float32():
    params = load_config('gpu.yaml')['features']['params']
    assert params['mode'] == 'faithful' and params['facet'] == 'key'
    assert params['dtype'] == 'float32' and not params.get('input_size')
