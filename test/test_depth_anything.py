"""Depth-Anything backend on a tiny random model saved in the real transformers format.

What the reference (SegAnyMo's run_depth.py, transformers 4.44) did and the backend must match
with ``preprocessing: reference``: the DPT processor's resize and normalisation, bicubic back to
the image, min-max disparity, and what its classifier read back from the uint16 PNG.
Full-size parity against the fetched reference code is scripts/parity/depth.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_gpu_models import make_depth_anything  # noqa: E402

from motionseg_ros import registry  # noqa: E402
from motionseg_ros.depth.depth_anything import normalise  # noqa: E402
from motionseg_ros.depth.pos_embed import offset_interpolate_pos_encoding  # noqa: E402
from motionseg_ros.depth.pos_embed import use_offset_interpolation  # noqa: E402
from motionseg_ros.depth.preprocess import reference_pixels, reference_shape  # noqa: E402
from motionseg_ros.models.moseg import reference_depth_maps  # noqa: E402
from motionseg_ros.stages import StageContext  # noqa: E402
from motionseg_ros.types import Frame  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# preprocessor_config of depth-anything/Depth-Anything-V2-*-hf
RELEASED = dict(do_resize=True, size={'height': 518, 'width': 518}, keep_aspect_ratio=True,
                ensure_multiple_of=14, resample=3, do_rescale=True, do_normalize=True,
                image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                do_pad=False)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_depth_anything(tmp_path_factory.mktemp('depth') / 'model', spread=True)


def stage(model: Path, **params):
    return registry.create('depth', 'depth_anything',
                           {'model': str(model), 'device': 'cpu', **params})


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth BGR image with structure at several scales."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    chans = [np.sin(6 * xx + 3 * yy + p) * 90 + 128 + rng.normal(0, 8, (h, w))
             for p in (0.0, 1.0, 2.0)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('hw', [(480, 854), (854, 480), (100, 200), (1080, 1920), (37, 41)])
def test_reference_pixels_equal_the_released_pil_processor(hw):
    # transformers 5's default DPTImageProcessor resizes in torchvision (up to 0.035 apart
    # at 480x854); its PIL variant is what transformers 4.44 ran for the reference
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil
    bgr = image(*hw)
    theirs = DPTImageProcessorPil(**RELEASED)(images=Image.fromarray(bgr[..., ::-1].copy()),
                                              return_tensors='np')['pixel_values']
    ours = reference_pixels(bgr, 518, 14)
    assert ours.shape == theirs.shape and ours.shape[2:] == reference_shape(*hw, 518, 14)
    np.testing.assert_array_equal(ours, theirs)


def test_reference_shape_fits_the_short_side_of_a_video_frame():
    assert reference_shape(480, 854, 518, 14) == (518, 924)      # DAVIS 480p
    assert reference_shape(854, 480, 518, 14) == (924, 518)
    assert reference_shape(100, 200, 518, 14) == (252, 518)      # scale nearest 1 wins


def test_reference_pixels_on_a_real_frame(davis_root):
    import cv2
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil
    dog = davis_root / 'JPEGImages' / '480p' / 'dog' / '00000.jpg'
    bgr = cv2.imread(str(dog), cv2.IMREAD_COLOR)
    theirs = DPTImageProcessorPil(**RELEASED)(images=Image.open(dog),
                                              return_tensors='np')['pixel_values']
    np.testing.assert_array_equal(reference_pixels(bgr, 518, 14), theirs)


def cubic_sample(values: torch.Tensor, pos: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys cubic convolution of 1-D ``values`` at positions ``pos``, borders clamped."""
    def weight(x):
        x = x.abs()
        near = ((a + 2) * x - (a + 3)) * x * x + 1
        far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))
    base = torch.floor(pos)
    out = torch.zeros_like(pos)
    for k in (-1, 0, 1, 2):
        idx = (base + k).clamp(0, len(values) - 1).long()
        out += values[idx] * weight(pos - (base + k))
    return out


def test_position_grid_resized_with_the_original_offset():
    """The grid is sampled at (i + 0.5) * side / (n + 0.1) - 0.5, as the original DINOv2."""
    side, patch = 8, 14
    rng = torch.Generator().manual_seed(0)
    col = torch.randn(side, generator=rng)
    row = torch.randn(side, generator=rng)
    # channel 0 varies along rows only, channel 1 along columns only: separable checks
    grid = torch.stack([row.view(side, 1).expand(side, side),
                        col.view(1, side).expand(side, side)], -1).reshape(1, side * side, 2)
    emb = torch.nn.Module()
    emb.position_embeddings = torch.nn.Parameter(torch.cat([torch.zeros(1, 1, 2), grid], 1))
    emb.config = type('C', (), {'patch_size': patch})()
    h, w = 6, 13                                        # patches of a non-square input
    out = offset_interpolate_pos_encoding(emb, torch.zeros(1, h * w + 1, 2),
                                          h * patch, w * patch)[0, 1:].reshape(h, w, 2)
    rows = (torch.arange(h) + 0.5) * side / (h + 0.1) - 0.5
    cols = (torch.arange(w) + 0.5) * side / (w + 0.1) - 0.5
    torch.testing.assert_close(out[:, 0, 0], cubic_sample(row, rows), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, :, 1], cubic_sample(col, cols), atol=1e-5, rtol=0)
    # the size-based rule of transformers >= 4.45 samples elsewhere
    size_cols = (torch.arange(w) + 0.5) * side / w - 0.5
    assert (out[0, :, 1] - cubic_sample(col, size_cols)).abs().max() > 0.05
    # a square input at the grid's own size is left alone
    same = offset_interpolate_pos_encoding(emb, torch.zeros(1, side * side + 1, 2),
                                           side * patch, side * patch)
    assert same is emb.position_embeddings


def test_backend_resizes_the_position_grid_as_trained(tiny):
    from transformers import DepthAnythingForDepthEstimation
    st = stage(tiny, input_size=56, preprocessing='reference')
    pixels = torch.from_numpy(reference_pixels(image(60, 100), 56, 14))    # 56x98: not square
    plain = DepthAnythingForDepthEstimation.from_pretrained(str(tiny)).eval()
    with torch.inference_mode():
        ours = st.model(pixel_values=pixels).predicted_depth
        library = plain(pixel_values=pixels).predicted_depth
        use_offset_interpolation(plain)
        patched = plain(pixel_values=pixels).predicted_depth
    torch.testing.assert_close(ours, patched)
    assert (ours - library).abs().max() > 1e-3 * ours.abs().max()


@pytest.mark.parametrize('preprocessing', ['fast', 'reference'])
def test_disparity_is_min_max_normalised_at_image_size(tiny, preprocessing):
    frame = Frame(image=image(45, 77), stamp_ns=0)
    st = stage(tiny, input_size=70, output='disparity', preprocessing=preprocessing)
    disp = st.estimate(frame, StageContext())
    assert disp.shape == (45, 77) and disp.dtype == np.float32
    assert disp.min() == 0.0 and disp.max() == 1.0
    raw = st.raw_disparity(frame)
    assert raw.shape == (45, 77)
    np.testing.assert_allclose(disp, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    depth = stage(tiny, input_size=70, preprocessing=preprocessing, eps=1e-9).estimate(
        frame, StageContext())
    assert depth.shape == (45, 77) and depth.min() == 1.0 and depth.max() == 1e9


def test_reference_preprocessing_changes_the_input_not_the_model(tiny):
    frame = Frame(image=image(60, 100), stamp_ns=0)
    fast = stage(tiny, input_size=56).raw_disparity(frame)
    ref = stage(tiny, input_size=56, preprocessing='reference').raw_disparity(frame)
    assert fast.shape == ref.shape == (60, 100)
    assert np.abs(fast - ref).max() > 0.01 * np.abs(ref).max()   # 42x70 input vs 56x98


def test_nan_output_gives_nan_depth_not_a_crash(tiny):
    st = stage(tiny, input_size=56)
    with torch.no_grad():
        st.model.head.conv3.bias.fill_(float('nan'))    # a corrupted checkpoint
    for output in ('depth', 'disparity'):
        st.output = output
        out = st.estimate(Frame(image=image(30, 40), stamp_ns=0), StageContext())
        assert out.shape == (30, 40) and np.isnan(out).all()


def test_normalise_keeps_nan_pixels_and_flat_maps():
    disp = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, 5.0]], np.float32)
    out = normalise(disp, 'disparity')
    assert np.isnan(out[0, 1]) and np.isnan(out[1, 0])
    np.testing.assert_allclose(out[[0, 0, 1, 1], [0, 2, 1, 2]], [0.0, 0.5, 0.25, 1.0])
    depth = normalise(disp, 'depth', eps=1e-3)
    np.testing.assert_allclose(depth[0, 2], 2.0) and np.testing.assert_allclose(depth[0, 0], 1e3)
    assert (normalise(np.full((2, 2), 7.0), 'disparity') == 0).all()
    assert np.isnan(normalise(np.full((2, 2), np.nan), 'depth')).all()


def reference_read_back(disp: np.ndarray, png: Path) -> np.ndarray:
    """SegAnyMo: to_uint16 -> 16-bit PNG -> PIL convert('L') -> min-max (inference.py)."""
    d = disp.astype(np.float32)
    u16 = (65535 * (d - d.min()) / (d.max() - d.min())).astype(np.uint16)
    Image.fromarray(u16).save(png)
    assert np.array_equal(np.array(Image.open(png)), u16)          # lossless 16-bit
    depth_img = np.array(Image.open(png).convert('L'))
    return (depth_img - depth_img.min()) / (depth_img.max() - depth_img.min())


def quirk_chain(depth: np.ndarray) -> np.ndarray:
    """MosegClassifier with reference_quirks: 1 / frame depth -> reference_depth_maps."""
    return reference_depth_maps(torch.from_numpy((1.0 / depth)[None]))[0].numpy()


def test_quirk_mode_sees_what_the_reference_read_from_its_png(tiny, tmp_path):
    """The backend's depth, inverted by the classifier's quirk chain, gives the 8-bit read."""
    frame = Frame(image=image(48, 64, seed=3), stamp_ns=0)
    st = stage(tiny, input_size=56, preprocessing='reference', eps=1e-9)
    raw = st.raw_disparity(frame)
    np.testing.assert_allclose(quirk_chain(st.estimate(frame, StageContext())),
                               reference_read_back(raw, tmp_path / 'model.png'), atol=1e-6)
    # a disparity whose far end stays below the 8-bit clip (as a real scene's sky does)
    ramp = np.linspace(0.0, 1.0, 48 * 64, dtype=np.float32).reshape(48, 64) ** 8
    expected = reference_read_back(ramp, tmp_path / 'ramp.png')
    assert 0.05 < (expected < 1).mean() < 1
    np.testing.assert_allclose(quirk_chain(normalise(ramp, 'depth', eps=1e-9)), expected,
                               atol=1e-6)
    # the backend's default eps (1e-3) shifts the 16-bit codes the classifier re-derives
    assert np.abs(quirk_chain(normalise(ramp, 'depth', eps=1e-3)) - expected).max() > 0.1


def test_gpu_profile_uses_the_reference_preprocessing():
    cfg = yaml.safe_load((ROOT / 'config' / 'gpu.yaml').read_text())['depth']
    assert cfg['name'] == 'depth_anything'
    assert cfg['params']['preprocessing'] == 'reference' and cfg['params']['eps'] <= 1e-9


def test_bad_settings_are_clear_errors(tiny):
    with pytest.raises(registry.BackendError, match='preprocessing'):
        stage(tiny, preprocessing='bilinear')
