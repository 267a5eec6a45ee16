"""The GPU profile (config/gpu.yaml) end to end on CPU with tiny random-init models.

Every model is a random-init one saved in its real on-disk format (transformers folders, a
``moseg.pth``-style state dict) to tmp_path and loaded by the backends exactly as released
weights would be; nothing is downloaded. CoTracker3 is an optional GitHub-only package, so the
pipeline test swaps in the klt tracker; the cotracker3 backend has its own test that skips only
where ``cotracker`` is absent. torch and transformers are pinned requirements
(requirements/), not optional: without them these tests fail, as does a shipped backend that
does not load; only an optional package that is not installed (OPTIONAL) skips, naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import torch
import transformers  # noqa: F401 - a requirement (requirements/base.txt): fail, never skip
from conftest import DAVIS, require_data
from tiny_gpu_models import imagenet_normalised, make_depth_anything, make_dinov2, make_sam2

from motionseg_ros import registry
from motionseg_ros.config import load_config, package_config_dir
from motionseg_ros.stages import StageContext
from motionseg_ros.types import Frame, TrackWindow

#: optional extras, not in requirements/: a test needing one skips where it is not installed
OPTIONAL = {'cotracker': 'CoTracker3 (CC-BY-NC, GitHub only; see README)',
            'timm': "EdgeTAM's RepViT backbone (optional extra)"}

os.environ.setdefault('HF_HUB_OFFLINE', '1')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """All tiny models, built once per module."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('weights')
    return {'sam2': make_sam2(root / 'sam2'), 'dinov2': make_dinov2(root / 'dinov2'),
            'depth': make_depth_anything(root / 'depth'), 'root': root}


def davis_frames(n: int = 5, width: int = 128):
    """The first ``n`` frames of one DAVIS sequence, downscaled to ``width`` px wide."""
    import cv2
    seq = require_data(DAVIS) / 'JPEGImages' / '480p' / 'car-roundabout'
    files = sorted(seq.glob('*.jpg'))[:n]
    if len(files) < n:
        pytest.skip(f'{seq} has fewer than {n} frames')
    out = []
    for i, f in enumerate(files):
        img = cv2.imread(str(f))
        h = int(round(img.shape[0] * width / img.shape[1]))
        out.append(Frame(image=cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA),
                         stamp_ns=i * 33_333_333, index=i, name=f.stem))
    return out


def moseg_weights(dest: Path, feature_dim: int) -> Path:
    """A random-init moseg classifier saved as the released file is ({'model_state_dict'})."""
    from motionseg_ros.models.moseg import MosegConfig, MosegModel
    torch.manual_seed(0)
    model = MosegModel(MosegConfig(feature_dim=feature_dim))
    torch.save({'model_state_dict': model.state_dict()}, str(dest))
    return dest


def test_gpu_yaml_names_every_paper_stage():
    cfg = load_config('gpu.yaml')
    assert cfg['tracker']['name'] == 'cotracker3'
    assert cfg['depth']['name'] == 'depth_anything'
    assert cfg['features']['name'] == 'dinov2'
    assert cfg['features']['params']['facet'] == 'key'
    assert cfg['classifier']['name'] == 'moseg'
    assert cfg['densifier']['name'] == 'sam2'
    for key in ('min_uncovered', 'min_coverage', 'min_tracks', 'merge_iou',
                'merge_containment', 'max_objects'):
        assert key in cfg['densifier']['params']


def shipped_backends():
    """(stage, backend, configs naming it) for every stage a packaged pipeline config uses."""
    named = {}
    for path in sorted(package_config_dir().glob('*.yaml')):
        cfg = load_config(path)   # merged over default.yaml: every stage is named
        if 'pipeline' not in cfg or path.name == 'segment.yaml':
            continue
        for kind in registry.STAGE_PACKAGES:
            if isinstance(cfg.get(kind), dict) and cfg[kind].get('name') not in (None, 'none'):
                named.setdefault((kind, cfg[kind]['name']), []).append(path.name)
    return [(kind, name, ', '.join(configs)) for (kind, name), configs in named.items()]


@pytest.mark.parametrize('kind, name, configs', shipped_backends())
def test_every_shipped_backend_loads(kind, name, configs):
    """A backend a packaged config names must import; only a missing optional extra skips."""
    try:
        registry.resolve(kind, name)
    except registry.BackendError as exc:
        missing = (getattr(exc.__cause__, 'name', None) or '').split('.')[0]
        if missing in OPTIONAL:
            pytest.skip(f'{kind} {name} ({configs}) needs {missing!r}, not installed: '
                        f'{OPTIONAL[missing]}')
        raise


def test_gpu_profile_end_to_end(tiny, tmp_path):
    from motionseg_ros.pipeline import StreamingPipeline
    for kind, name in (('tracker', 'klt'), ('classifier', 'moseg'), ('grouping', 'affinity')):
        registry.resolve(kind, name)   # shipped: an import error here is a failure
    feat_dim = 32
    overrides = [
        'tracker.name=klt', 'tracker.params={}',
        f'depth.params.model={tiny["depth"]}', 'depth.params.device=cpu',
        'depth.params.input_size=70',
        f'features.params.model={tiny["dinov2"]}', 'features.params.device=cpu',
        'features.params.input_size=112',
        f'classifier.params.weights={moseg_weights(tmp_path / "moseg.pth", feat_dim)}',
        'classifier.params.device=cpu', 'classifier.params.adaptive_threshold=false',
        'classifier.params.threshold=0.0',          # random classifier: call every track dynamic
        f'densifier.params.model={tiny["sam2"]}', 'densifier.params.device=cpu',
        'densifier.params.min_uncovered=3', 'densifier.params.min_tracks=1',
    ]
    cfg = load_config('gpu.yaml', overrides)
    pipe = StreamingPipeline(cfg)
    assert pipe.backends['densifier'] == 'sam2' and pipe.backends['features'] == 'dinov2'
    assert pipe.backends['depth'] == 'depth_anything'
    sam2 = pipe.stages['densifier']
    seen = {'sam2': [], 'depth': [], 'features': []}

    def record(name, fn):
        """Call the real stage method and keep what it returned."""
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            seen[name].append(out)
            return out
        return wrapper
    sam2.model.forward = record('sam2', sam2.model.forward)
    depth_stage, feat_stage = pipe.stages['depth'], pipe.stages['features']
    depth_stage.estimate = record('depth', depth_stage.estimate)
    feat_stage.extract = record('features', feat_stage.extract)
    ids_per_frame = []
    for frame in davis_frames(5):
        result = pipe.process(frame)
        depth = seen['depth'][-1]
        assert depth.shape == frame.size
        assert np.nanmin(depth) >= 1.0 and np.isfinite(depth).all()   # relative depth
        if result.tracks.num_tracks:
            assert result.tracks.features.shape == (result.tracks.num_tracks, feat_dim)
        assert 'classifier' in result.timings_ms or result.tracks.num_tracks == 0
        ids_per_frame.append({o.id for o in result.objects})
        for obj in result.objects:
            assert obj.mask.shape == frame.size and obj.mask.any()
    calls = {k: len(v) for k, v in seen.items()}
    for stage in ('depth', 'tracker', 'features', 'classifier', 'grouping', 'densifier'):
        assert stage in result.timings_ms, (stage, result.timings_ms)
    assert calls['sam2'] >= 4 and calls['features'] >= 4
    # the masks are SAM2's: the ids are the densifier's own, and they persist
    assert set().union(*ids_per_frame) <= set(range(1, sam2._next_id))
    assert ids_per_frame[-1] and ids_per_frame[-1] & ids_per_frame[-2]
    assert sam2.memory_stats()['frames'] == 1
    pipe.close()


def synthetic_window(t: int, h: int = 64, w: int = 64):
    """A 2-frame window on a grid; tracks inside a moving square (or none) are dynamic."""
    gx, gy = np.meshgrid(np.arange(4, w, 8), np.arange(4, h, 8))
    xy = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    n = xy.shape[0]
    phase = (t // 40) % 3      # moving square, nothing moving, two squares
    x0 = 8 + (t % 40)
    dyn = np.zeros(n, bool)
    if phase in (0, 2):
        dyn |= (xy[:, 0] >= x0 % 48) & (xy[:, 0] < x0 % 48 + 16) & (xy[:, 1] < 24)
    if phase == 2:
        dyn |= (xy[:, 1] >= 40) & (xy[:, 0] >= 40)
    img = np.full((h, w, 3), 50, np.uint8)
    img[dyn.reshape(gy.shape).repeat(8, 0).repeat(8, 1)[:h, :w]] = 200
    win = TrackWindow(ids=np.arange(n), xy=np.stack([xy, xy], 1),
                      visible=np.ones((n, 2), bool), confidence=np.ones((n, 2), np.float32),
                      stamps_ns=np.array([t - 1, t], np.int64), image_size=(h, w))
    return Frame(image=img, stamp_ns=t, index=t), win, dyn


def test_sam2_memory_and_objects_bounded_over_1000_frames(tiny):
    d = registry.create('densifier', 'sam2', {
        'model': str(tiny['sam2']), 'device': 'cpu', 'min_uncovered': 3, 'min_tracks': 2,
        'grace_frames': 3, 'max_objects': 2, 'max_cond_frames': 2, 'reprompt_interval': 4,
        'mask_threshold': 0.05})
    ctx = StageContext()
    peak = {}
    seen_ids = set()
    for t in range(1000):
        frame, win, dyn = synthetic_window(t)
        objs = d.densify(frame, win, dyn, -np.ones(win.num_tracks, np.int64),
                         dyn.astype(np.float32), ctx)
        seen_ids |= {o.id for o in objs}
        for key, value in d.memory_stats().items():
            peak[key] = max(peak.get(key, 0), value)
    mem = d.memory_frames
    assert peak['objects'] <= 2
    assert peak['frames'] <= 1 and peak['vision_cache'] <= 1
    assert peak['cond_outputs'] <= 2 * 2
    assert peak['non_cond_outputs'] <= 2 * (mem + 1)
    assert peak['tracked_entries'] <= 2 * (mem + 1)
    assert peak['owned_tracks'] <= win.num_tracks
    # objects came and went (the stream has phases without motion), ids never reused
    assert len(seen_ids) > 2 and d._next_id > max(seen_ids)


@pytest.mark.slow
def test_edgetam_video_runs_through_the_same_densifier(tmp_path):
    pytest.importorskip('timm', reason=f'timm not installed: {OPTIONAL["timm"]}')
    from tiny_gpu_models import make_edgetam
    path = make_edgetam(tmp_path / 'edgetam')
    d = registry.create('densifier', 'sam2', {'model': str(path), 'model_type': 'edgetam',
                                              'device': 'cpu', 'min_uncovered': 3,
                                              'min_tracks': 1})
    assert type(d.model).__name__ == 'EdgeTamVideoModel'
    ctx = StageContext()
    ids = []
    for t in range(4):
        frame, win, dyn = synthetic_window(t)
        objs = d.densify(frame, win, dyn, -np.ones(win.num_tracks, np.int64),
                         dyn.astype(np.float32), ctx)
        ids.append({o.id for o in objs})
    assert ids[0] and ids[0] & ids[-1]
    with pytest.raises(registry.BackendError, match='edgetam'):
        registry.create('densifier', 'sam2', {'model': str(path), 'model_type': 'sam2'})


def test_sam2_bad_model_folder_is_a_clear_error(tmp_path, tiny):
    from motionseg_ros.weights import WeightsError
    with pytest.raises(WeightsError, match='nope'):
        registry.create('densifier', 'sam2', {'model': str(tmp_path / 'nope')})
    with pytest.raises(registry.BackendError, match='video'):
        registry.create('densifier', 'sam2', {'model': str(tiny['dinov2'])})
    with pytest.raises(registry.BackendError, match='model_type'):
        registry.create('densifier', 'sam2', {'model': str(tiny['sam2']),
                                              'model_type': 'foo'})


def test_sam2_reprompts_an_object_with_three_clicks_when_its_mask_misses_its_tracks(tiny):
    d = registry.create('densifier', 'sam2', {'model': str(tiny['sam2']), 'device': 'cpu',
                                              'min_uncovered': 3, 'min_tracks': 0,
                                              'reprompt_interval': 0, 'dilation': 0})
    ctx = StageContext()
    frame, win, dyn = synthetic_window(0)
    first = d.densify(frame, win, dyn, -np.ones(win.num_tracks, np.int64),
                      dyn.astype(np.float32), ctx)
    assert [o.id for o in first] == [1] and first[0].num_dynamic_tracks >= 3
    # masks now come out empty (threshold above every logit): object 1 misses all its tracks
    d.set_params({'mask_threshold': 1e6})
    s = d.session
    for t in (1, 2):
        frame, win, dyn = synthetic_window(t)
        d.densify(frame, win, dyn, -np.ones(win.num_tracks, np.int64), dyn.astype(np.float32),
                  ctx)
    idx = s._obj_id_to_idx[1]
    clicks = s.point_inputs_per_obj[idx][2]['point_coords']
    assert clicks.shape[-2] == 3                      # nearest to centroid + 2 farthest
    assert 2 in s.output_dict_per_obj[idx]['cond_frame_outputs']
    assert d.object_ids == [1]                        # the same object, no new one


def test_sam2_out_of_memory_degrades_instead_of_dying(tiny):
    d = registry.create('densifier', 'sam2', {'model': str(tiny['sam2']), 'device': 'cpu',
                                              'min_uncovered': 3, 'min_tracks': 0,
                                              'mask_threshold': 0.05})
    ctx = StageContext()
    for t in range(3):   # two squares -> objects prompted on successive frames
        frame, win, dyn = synthetic_window(80 + t)
        d.densify(frame, win, dyn, -np.ones(win.num_tracks, np.int64), dyn.astype(np.float32),
                  ctx)
    before = d.object_ids
    assert len(before) >= 2
    real = d.model.forward
    fail = {'left': 1}

    def forward_failing_once(*args, **kwargs):
        # fault injection: the first call this frame runs out of GPU memory
        if fail['left']:
            fail['left'] -= 1
            raise torch.cuda.OutOfMemoryError('CUDA out of memory (injected)')
        return real(*args, **kwargs)
    d.model.forward = forward_failing_once
    ctx.new_frame(frame)
    frame, win, dyn = synthetic_window(83)
    objs = d.densify(frame, win, dyn, -np.ones(win.num_tracks, np.int64),
                     dyn.astype(np.float32), ctx)
    assert any('out of memory' in w for w in ctx.scratch['warnings'])
    # the newest object (here the one prompted on the failing frame) went; the cap follows
    assert d.max_objects == len(d.object_ids) < 8
    assert objs and {o.id for o in objs} <= set(before)


def test_dinov2_and_depth_lower_resolution_on_out_of_memory(tiny):
    frame = Frame(image=np.zeros((60, 80, 3), np.uint8), stamp_ns=0)
    for stage, call in (
            (registry.create('features', 'dinov2', {'model': str(tiny['dinov2']),
                                                    'device': 'cpu', 'input_size': 224}),
             lambda st, ctx: st.extract(frame, np.array([[1, 2]], np.float32), ctx)),
            (registry.create('depth', 'depth_anything', {'model': str(tiny['depth']),
                                                         'device': 'cpu', 'input_size': 280}),
             lambda st, ctx: st.estimate(frame, ctx))):
        real = stage.model.forward
        fail = {'left': 1}

        def forward_failing_once(*args, _real=real, _fail=fail, **kwargs):
            # fault injection: the first call runs out of GPU memory
            if _fail['left']:
                _fail['left'] -= 1
                raise torch.cuda.OutOfMemoryError('CUDA out of memory (injected)')
            return _real(*args, **kwargs)
        stage.model.forward = forward_failing_once
        size = stage.input_size
        ctx = StageContext()
        out = call(stage, ctx)
        assert out is not None and stage.input_size == size // 2
        assert any('out of memory' in w for w in ctx.scratch['warnings'])


def test_sam2_thresholds_tunable_at_run_time(tiny):
    d = registry.create('densifier', 'sam2', {'model': str(tiny['sam2']), 'device': 'cpu'})
    assert d.min_coverage == 0.7 and d.max_objects == 8
    d.set_params({'min_coverage': 0.5, 'max_objects': 2, 'mask_threshold': 0.1})
    assert d.planner.min_coverage == 0.5 and d.max_objects == 2 and d.mask_threshold == 0.1
    with pytest.raises(ValueError, match='min_coverage'):
        d.set_params({'min_coverage': 2.0, 'max_objects': 5})
    assert d.planner.min_coverage == 0.5 and d.max_objects == 2      # nothing applied
    with pytest.raises(ValueError, match='no run-time parameter'):
        d.set_params({'model': 'x'})


def test_dinov2_facets_and_sampling(tiny):
    img = np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8)
    frame = Frame(image=img, stamp_ns=0)
    xy = np.array([[0, 0], [50, 35], [99, 69], [50.5, 35]], np.float32)
    key = registry.create('features', 'dinov2', {'model': str(tiny['dinov2']), 'device': 'cpu',
                                                 'facet': 'key', 'input_size': 112})
    tok = registry.create('features', 'dinov2', {'model': str(tiny['dinov2']), 'device': 'cpu',
                                                 'facet': 'token', 'input_size': 112})
    fk = key.extract(frame, xy, StageContext())
    ft = tok.extract(frame, xy, StageContext())
    assert fk.shape == ft.shape == (4, 32) and fk.dtype == np.float32
    assert not np.allclose(fk, ft)
    # keys are the last block's k_proj output: recompute it by hand at one patch centre
    fmap = key.feature_map(frame)
    with torch.no_grad():
        hidden = key.model(pixel_values=key_input(key, frame), output_hidden_states=True)
        layer = key.model.encoder.layer[-1]
        manual = layer.attention.k_proj(layer.norm1(hidden.hidden_states[-2]))[0, 1:]
    assert torch.allclose(fmap.reshape(fmap.shape[0], -1).T, manual, atol=1e-5)
    assert key.extract(frame, np.zeros((0, 2), np.float32), StageContext()).shape == (0, 32)
    with pytest.raises(registry.BackendError, match='facet'):
        registry.create('features', 'dinov2', {'model': str(tiny['dinov2']), 'facet': 'x'})


def test_dinov2_loads_hub_style_checkpoints_into_the_hooked_key_projection(tiny, tmp_path):
    # facebook/dinov2-* on the hub store attention.attention.key/query/value; transformers
    # renames them on load. Write the tiny model with those names and check the keys agree.
    import shutil

    from safetensors.torch import load_file, save_file
    src = Path(tiny['dinov2'])
    dst = tmp_path / 'dinov2-hub-names'
    shutil.copytree(src, dst)
    state = load_file(str(src / 'model.safetensors'))
    renames = {'attention.q_proj': 'attention.attention.query',
               'attention.k_proj': 'attention.attention.key',
               'attention.v_proj': 'attention.attention.value',
               'attention.o_proj': 'attention.output.dense'}
    old = {}
    for k, v in state.items():
        for new_name, old_name in renames.items():
            k = k.replace(new_name, old_name)
        old[k] = v
    assert any('attention.attention.key' in k for k in old)
    save_file(old, str(dst / 'model.safetensors'), metadata={'format': 'pt'})
    img = np.random.default_rng(2).integers(0, 255, (56, 56, 3), dtype=np.uint8)
    frame = Frame(image=img, stamp_ns=0)
    xy = np.array([[5, 5], [30, 40]], np.float32)
    a = registry.create('features', 'dinov2', {'model': str(src), 'device': 'cpu',
                                               'input_size': 56})
    b = registry.create('features', 'dinov2', {'model': str(dst), 'device': 'cpu',
                                               'input_size': 56})
    assert np.allclose(a.extract(frame, xy, StageContext()), b.extract(frame, xy, StageContext()),
                       atol=1e-6)


def key_input(stage, frame):
    """The normalised tensor the stage feeds its model (same resize as feature_map)."""
    h, w = frame.size
    scale = stage.input_size / max(h, w)
    gh = max(1, int(round(h * scale / stage.patch)))
    gw = max(1, int(round(w * scale / stage.patch)))
    return imagenet_normalised(frame.image, (gh * stage.patch, gw * stage.patch))


def test_depth_anything_is_normalised_disparity_at_frame_size(tiny):
    img = np.random.default_rng(1).integers(0, 255, (45, 77, 3), dtype=np.uint8)
    frame = Frame(image=img, stamp_ns=0)
    disp_stage = registry.create('depth', 'depth_anything', {
        'model': str(tiny['depth']), 'device': 'cpu', 'input_size': 70, 'output': 'disparity'})
    disp = disp_stage.estimate(frame, StageContext())
    assert disp.shape == (45, 77) and disp.dtype == np.float32
    assert disp.min() == 0.0 and disp.max() == pytest.approx(1.0)
    # default: relative depth whose inverse is the normalised disparity (clipped at eps)
    depth_stage = registry.create('depth', 'depth_anything', {
        'model': str(tiny['depth']), 'device': 'cpu', 'input_size': 70})
    depth = depth_stage.estimate(frame, StageContext())
    assert depth.shape == (45, 77) and (depth >= 1.0).all() and depth.max() <= 1e3 + 1e-3
    assert np.allclose(1.0 / depth, np.clip(disp, 1e-3, 1.0), atol=1e-6)
    with pytest.raises(registry.BackendError, match='output'):
        registry.create('depth', 'depth_anything', {'model': str(tiny['depth']),
                                                    'output': 'metres'})
    with pytest.raises(registry.BackendError, match='depth_anything'):
        registry.create('depth', 'depth_anything', {'model': str(tiny['sam2'])})


def test_cotracker3_missing_package_or_checkpoint_is_clear(tmp_path):
    try:
        import cotracker  # noqa: F401
    except ImportError:
        with pytest.raises(registry.BackendError, match='cotracker.*klt'):
            registry.create('tracker', 'cotracker3', {'checkpoint': str(tmp_path / 'x.pth')})
        return
    from motionseg_ros.weights import WeightsError
    with pytest.raises(WeightsError, match='x.pth'):
        registry.create('tracker', 'cotracker3', {'checkpoint': str(tmp_path / 'x.pth')})


@pytest.mark.slow
def test_cotracker3_online_keeps_ids(tmp_path):
    pytest.importorskip('cotracker', reason=f'cotracker not installed: {OPTIONAL["cotracker"]}')
    from cotracker.models.build_cotracker import build_cotracker
    torch.manual_seed(0)
    model = build_cotracker(None, offline=False, window_len=16)
    state = model.state_dict()
    # random weights say "invisible"; lift the visibility/confidence head as a trained one would
    state['updateformer.vis_conf_head.bias'].fill_(2.0)
    state['updateformer.vis_conf_head.weight'].mul_(0.01)
    torch.save(state, str(tmp_path / 'scaled_online.pth'))
    tr = registry.create('tracker', 'cotracker3', {
        'checkpoint': str(tmp_path / 'scaled_online.pth'), 'device': 'cpu', 'window': 8,
        'grid_spacing': 20, 'session_steps': 1, 'model_resolution': [64, 96]})
    ids_at = {}
    for g in range(24):
        img = np.full((60, 80, 3), 80, np.uint8)
        img[20:40, 10 + g:30 + g] = 200
        win = tr.update(Frame(image=img, stamp_ns=g * 1000, index=g), StageContext())
        assert win.num_frames == min(g + 1, 8)
        if g < 15:
            assert win.num_tracks == 0          # first measurements after the 16-frame window
        ids_at[g] = set(win.ids.tolist())
    assert ids_at[15]
    assert ids_at[15] & ids_at[23]               # carried across the session restart
    assert win.confidence[:, -1].max() == 1.0    # frame 23 is a measured step
