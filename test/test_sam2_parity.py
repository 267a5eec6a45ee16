"""The streaming SAM2 densifier computes what Meta's SAM2 computes (random weights, no download).

The first tests need only transformers: objects are independent (Meta's predictor tracks each
object on its own), clicks are scaled to the model input as Meta scales them, the session keeps
no image-size masks. The last one runs Meta's own ``SAM2VideoPredictor`` (PyPI ``sam2``, Meta's
code) against the product on the same frames through ``scripts/parity/sam2.py``; it skips only
when that package is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_gpu_models import make_sam2  # noqa: E402

from motionseg_ros.densifiers.prompting import Plan, Prompt  # noqa: E402
from motionseg_ros.densifiers.sam2 import Sam2Densifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def frames(n, h=48, w=80, seed=0):
    """RGB frames of two textured squares moving over noise."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        img[10:26, 8 + 2 * t:24 + 2 * t] = (220, 40, 40)
        img[28:44, 60 - 2 * t:76 - 2 * t] = (40, 200, 60)
        out.append(img)
    return out


def click(obj, x, y, new):
    return Prompt(object_id=None if new else obj, points=np.array([[x, y]], np.float32),
                  labels=np.ones(1, np.int32), track_ids=np.zeros(0, np.int64))


def run(d, images, schedule):
    """Drive the densifier with explicit clicks {frame: [(obj, x, y)]}; logits per frame."""
    out = []
    for t, img in enumerate(images):
        plan = Plan()
        for obj, x, y in schedule.get(t, []):
            new = obj not in d.object_ids
            if new:
                d._next_id = obj
            (plan.new if new else plan.reprompt).append(click(obj, x, y, new))
        logits, _, ids = d._run(img, t, plan, None)
        d._trim(t)
        out.append(dict(zip(ids, logits)))
    return out


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_sam2(tmp_path_factory.mktemp('sam2'))


def test_prompting_one_object_leaves_the_others_masks_unchanged(tiny):
    """Meta's predictor binarises the memory mask only of the object clicked on that frame;
    transformers' batched memory encoder binarised every object's (fixed in the densifier)."""
    images = frames(6)
    both = run(Sam2Densifier(model=str(tiny), device='cpu'), images,
               {0: [(1, 16, 18)], 2: [(2, 66, 36)], 4: [(2, 60, 36)]})
    alone = run(Sam2Densifier(model=str(tiny), device='cpu'), images, {0: [(1, 16, 18)]})
    for t in range(6):   # relative: a random tiny model's logits are ~1e-3
        scale = np.abs(alone[t][1]).max()
        assert scale > 0 and np.abs(both[t][1] - alone[t][1]).max() <= 1e-5 * scale, t
    assert set(both[5]) == {1, 2}


def test_clicks_reach_the_model_scaled_like_meta(tiny):
    """Meta: points / (W, H) * image_size; a swapped axis or a crop would move the click."""
    d = Sam2Densifier(model=str(tiny), device='cpu')
    img = frames(1, h=48, w=80)[0]
    d._run(img, 0, Plan(new=[click(1, 20.0, 30.0, True)]), None)
    coords = d.session.point_inputs_per_obj[0][0]['point_coords'].reshape(-1, 2)
    size = d.model.config.image_size
    assert np.allclose(coords[0].numpy(), [20.0 * size / 80, 30.0 * size / 48], atol=1e-4)


def test_session_keeps_no_image_size_masks(tiny):
    d = Sam2Densifier(model=str(tiny), device='cpu')
    run(d, frames(4), {0: [(1, 16, 18)], 2: [(2, 66, 36)]})
    for outs in d.session.output_dict_per_obj.values():
        for store in outs.values():
            assert all('high_res_masks' not in rec for rec in store.values())


def load_parity_script():
    spec = importlib.util.spec_from_file_location('parity_sam2', REPO / 'scripts/parity/sam2.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['parity_sam2'] = module
    spec.loader.exec_module(module)
    return module


def test_matches_meta_sam2_video_predictor(tmp_path):
    pytest.importorskip('hydra')
    pytest.importorskip('sam2.sam2_video_predictor')
    parity = load_parity_script()
    build = parity.import_meta_sam2(None)
    spec = parity.Spec(image_size=128, embed_dim=16, num_heads=1, stages=(1, 1, 2, 1),
                       global_att_blocks=(3,), window_spec=(4, 4, 4, 2), window_pos_bkg=(2, 2))
    rgb = frames(16, h=60, w=100)
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in rgb]
    clicks = parity.default_clicks(60, 100, 6)
    res = parity.parity(build, bgr, clicks, spec, 6, workdir=tmp_path, reference=False,
                        quiet=True)
    rows = res['matched']
    assert len(rows) == 10 and all('only' not in r for r in rows)
    assert max(max(r['lowres'], r['full']) for r in rows) < 1e-4
    assert min(r['iou'] for r in rows) > 0.999


def test_frames_are_resized_like_metas_loader(tiny):
    """Meta's predictor resizes with PIL's bicubic filter (then ImageNet normalisation)."""
    import torch
    from PIL import Image
    d = Sam2Densifier(model=str(tiny), device='cpu')
    img = frames(1, h=96, w=160)[0]
    size = d.model.config.image_size
    ours = d.processor(images=img, return_tensors='pt').pixel_values[0]
    pil = np.asarray(Image.fromarray(img).resize((size, size)), np.float32) / 255
    meta = (torch.from_numpy(pil).permute(2, 0, 1) - torch.tensor(
        [0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert float((ours - meta).abs().mean()) < 1e-3   # bilinear: 0.024
