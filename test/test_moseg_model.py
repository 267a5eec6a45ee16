"""The trajectory classifier: shapes, equivariance, masking, learning, moseg.pth loading."""

import numpy as np
import pytest
import torch

from motionseg_ros.models.checkpoint import load_checkpoint, load_manifest, save_checkpoint
from motionseg_ros.models.config import MosegConfig
from motionseg_ros.models.encoding import encode_inputs, frequency_encode, reference_depth_sample
from motionseg_ros.models.moseg import MosegModel
from motionseg_ros.registry import BackendError, create
from motionseg_ros.types import TrackWindow
from motionseg_ros.weights import ENV_VAR, WeightsError


#: tiny models on a shared 2-core machine are much faster on one torch thread
pytestmark = pytest.mark.usefixtures('one_torch_thread')


SMALL = dict(feature_dim=0, net_channels=32, decoder_ffn=64, decoder_blocks=1)


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    return MosegModel(MosegConfig(**{**SMALL, **kw})).eval()


def random_tracks(n, t, seed=0, size=(120, 160)):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, t, 2, generator=g) * torch.tensor([size[1], size[0]], dtype=torch.float32)
    vis = torch.rand(n, t, generator=g) > 0.25
    vis[:, -1] = True
    conf = torch.rand(n, t, generator=g)
    return xy, vis, conf


def test_released_input_has_88_channels():
    assert MosegConfig().in_channels == 88
    assert frequency_encode(torch.zeros(3, 2), 10).shape == (3, 42)


@pytest.mark.parametrize('n,t', [(1, 1), (5, 2), (37, 16), (80, 9)])
def test_output_shapes(n, t):
    model = small_model()
    xy, vis, conf = random_tracks(n, t)
    with torch.no_grad():
        out = model.classify(xy, vis, conf, (120, 160))
    assert out.shape == (n,)
    assert torch.isfinite(out).all()


def test_depth_variant_accepts_missing_depth():
    model = small_model(use_depth=True)
    xy, vis, conf = random_tracks(20, 6)
    depth = torch.rand(20, 6) * 10 + 1
    depth[0, :] = float('nan')
    with torch.no_grad():
        a = model.classify(xy, vis, conf, (120, 160), depth)
        b = model.classify(xy, vis, conf, (120, 160), None)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert not torch.allclose(a, b)


def test_permutation_equivariance_across_tracks():
    model = small_model()
    xy, vis, conf = random_tracks(30, 8)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.classify(xy, vis, conf, (120, 160))
        out_p = model.classify(xy[perm], vis[perm], conf[perm], (120, 160))
    assert torch.allclose(out[perm], out_p, atol=1e-5)


def test_invisible_frames_do_not_matter_visible_ones_do():
    model = small_model()
    xy, vis, conf = random_tracks(25, 10)
    vis[3, 2:5] = False
    vis[3, 5:] = True
    with torch.no_grad():
        base = model.classify(xy, vis, conf, (120, 160))
        hidden = xy.clone()
        hidden[~vis] = torch.rand(int((~vis).sum()), 2) * 100   # garbage where invisible
        conf2 = conf.clone()
        conf2[~vis] = 0.123
        same = model.classify(hidden, vis, conf2, (120, 160))
        moved = xy.clone()
        moved[3, 6] += 15.0                                      # a visible frame changes
        diff = model.classify(moved, vis, conf, (120, 160))
        vis2 = vis.clone()
        vis2[3, 7] = False                                       # hiding a frame changes
        masked = model.classify(xy, vis2, conf, (120, 160))
    assert torch.allclose(base, same, atol=1e-5)
    assert (diff - base).abs().max() > 1e-4
    assert (masked - base).abs().max() > 1e-4


def test_reference_mode_keeps_reference_behaviour():
    # the reference lets invisible frames reach the max-pool and the cross-attention
    model = small_model()
    xy, vis, conf = random_tracks(25, 10)
    vis[3, 2:5] = False
    with torch.no_grad():
        base = model.classify(xy, vis, conf, (120, 160), reference_quirks=True)
        hidden = xy.clone()
        hidden[3, 3] += 40.0
        other = model.classify(hidden, vis, conf, (120, 160), reference_quirks=True)
    assert (other - base).abs().max() > 1e-6


def test_one_step_lowers_the_loss():
    torch.manual_seed(0)
    model = MosegModel(MosegConfig(**SMALL, dropout=0.0))
    xy, vis, conf = random_tracks(40, 8)
    inputs, invisible = model.prepare(xy, vis, conf, (120, 160))
    labels = (torch.arange(40) % 3 == 0).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
    before = loss_fn(model(inputs, invisible), labels)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn(model(inputs, invisible), labels)
    assert after < before


def test_encode_inputs_zeroes_invisible_frames():
    cfg = MosegConfig(use_depth=True)
    uv = torch.rand(4, 5, 2) * 2 - 1
    vis = torch.ones(4, 5, dtype=torch.bool)
    vis[0, 2] = False
    x = encode_inputs(cfg, uv, vis, torch.ones(4, 5), torch.rand(4, 5), vis)
    assert x.shape == (4, 5, 88)
    # displacement into and out of the invisible frame is zero
    assert torch.all(x[0, 1, 42:44] == 0) and torch.all(x[0, 2, 42:44] == 0)
    assert torch.all(x[0, 2, 84:86] == 0)


def manifest_state_dict(prefix=''):
    manifest = load_manifest()
    g = torch.Generator().manual_seed(0)
    return {prefix + k: torch.randn(v['shape'], generator=g) * 0.05
            for k, v in manifest['tensors'].items()}


def test_manifest_matches_paper_dimensions():
    manifest = load_manifest()
    t = manifest['tensors']
    assert t['joint_encoder.input_fc1.weight']['shape'] == [16, 88, 1, 1]
    assert t['decoder.encoders.0.ffn.0.weight']['shape'] == [512, 896]
    assert 3.3e6 < manifest['num_parameters'] < 3.6e6


@pytest.mark.parametrize('wrap', ['model_state_dict', 'module.', None])
def test_strict_load_of_manifest_state_dict(tmp_path, wrap):
    if wrap == 'module.':
        obj = {'model_state_dict': manifest_state_dict('module.')}
    elif wrap is None:
        obj = manifest_state_dict()
    else:
        obj = {'model_state_dict': manifest_state_dict(), 'epoch': 5}
    path = tmp_path / 'moseg.pth'
    torch.save(obj, str(path))
    model, meta = load_checkpoint(path)
    assert model.cfg.in_channels == 88 and model.cfg.feature_dim == 768
    ref = manifest_state_dict()
    state = model.state_dict()
    assert set(state) == set(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)
    xy, vis, conf = random_tracks(12, 6)
    with torch.no_grad():
        out = model.classify(xy, vis, conf, (120, 160), torch.rand(12, 6) + 1,
                             torch.randn(12, 768))
    assert out.shape == (12,)
    with pytest.raises(ValueError, match='semantic features'):
        model.classify(xy, vis, conf, (120, 160))


def test_missing_released_weights_say_where_to_get_them(tmp_path):
    with pytest.raises(WeightsError, match='Changearthmore/moseg'):
        load_checkpoint(tmp_path / 'moseg.pth')
    with pytest.raises(BackendError, match='Changearthmore/moseg'):
        create('classifier', 'moseg', {'weights': str(tmp_path / 'moseg.pth')})


def test_relative_weights_resolve_under_the_weights_dir(tmp_path, monkeypatch):
    """A relative ``weights`` name is looked up in $MOTIONSEG_WEIGHTS_DIR like other backends."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path / 'store'))
    monkeypatch.chdir(tmp_path)
    model = small_model()
    save_checkpoint(tmp_path / 'store' / 'moseg.pth', model)
    clf = create('classifier', 'moseg', {'weights': 'moseg.pth', 'device': 'cpu'})
    state = clf.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    monkeypatch.setenv(ENV_VAR, str(tmp_path / 'elsewhere'))
    with pytest.raises(WeightsError, match='elsewhere'):
        create('classifier', 'moseg', {'weights': 'moseg.pth', 'device': 'cpu'})


def test_one_definition_of_weights_helpers():
    import motionseg_ros.classifiers.moseg as clf_mod
    import motionseg_ros.models as models_pkg
    import motionseg_ros.weights as weights_mod
    assert clf_mod.resolve_weights is weights_mod.resolve_weights
    assert models_pkg.WeightsError is weights_mod.WeightsError


def test_mismatched_weights_fail_at_start_up(tmp_path):
    state = manifest_state_dict()
    state['decoder.output_layer.weight'] = torch.zeros(1, 64)
    torch.save({'model_state_dict': state}, str(tmp_path / 'bad.pth'))
    with pytest.raises(WeightsError, match='other shapes'):
        load_checkpoint(tmp_path / 'bad.pth')
    model = small_model()
    save_checkpoint(tmp_path / 'small.pth', model)
    with pytest.raises(WeightsError, match='do not fit'):
        load_checkpoint(tmp_path / 'small.pth', cfg=MosegConfig())
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(BackendError, match='cannot read'):
        create('classifier', 'moseg', {'weights': str(tmp_path / 'junk.pth')})


def test_reference_depth_sampling_quirk():
    maps = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)   # T=1, H=3, W=4
    uv = torch.tensor([[[0.5, 0.5]], [[-0.9, -0.9]], [[0.99, 0.99]]])  # (N=3, T=1, 2)
    got = reference_depth_sample(maps, uv)[:, 0]
    # [-1, 1] coords used as [0, 1]: (0.5, 0.5) -> row int(1.5)=1, col int(2)=2 -> 6
    assert got.tolist() == [6.0, 0.0, 11.0]


def _window(n=30, t=8, seed=0):
    xy, vis, conf = random_tracks(n, t, seed, size=(480, 854))
    return TrackWindow(ids=np.arange(n), xy=xy.numpy(), visible=vis.numpy(),
                       confidence=conf.numpy(), stamps_ns=np.arange(t) * 10 ** 8,
                       image_size=(480, 854), depth=np.random.rand(n, t).astype(np.float32) + 1)


@pytest.mark.parametrize('name', ['motion_only', 'motion_depth', 'motion_geo'])
def test_shipped_weights_load_and_run(name):
    clf = create('classifier', 'moseg', {'weights': f'builtin:{name}', 'device': 'cpu'})
    assert clf.cfg.feature_dim == 0 and clf.cfg.use_depth == (name == 'motion_depth')
    assert clf.cfg.geo_evidence == (name == 'motion_geo')
    prob = clf.classify(_window(), None)
    assert prob.shape == (30,) and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))
    if name == 'motion_geo':   # the default's threshold: calibrated on real data, not DAVIS
        assert clf.threshold == 0.8 and 'cdnet2014_highway' in clf.meta['threshold_source']


def test_backend_adaptive_threshold_and_params(tmp_path):
    save_checkpoint(tmp_path / 'small.pth', small_model())
    clf = create('classifier', 'moseg', {'weights': str(tmp_path / 'small.pth'),
                                         'adaptive_threshold': True})
    prob = np.linspace(0.005, 0.995, 100).astype(np.float32)
    assert clf.decide(prob).sum() == 10         # 0.95 leaves 5 < 10, 0.93 leaves 7, 0.9: 10
    clf.min_dynamic = 5
    assert clf.decide(prob).sum() == 5
    assert not clf.decide(np.full(50, 0.4, np.float32)).any()   # static scene stays static
    clf.set_params({'threshold': 0.7, 'adaptive_threshold': False})
    assert clf.decide(prob).sum() == 30
    with pytest.raises(ValueError):
        clf.set_params({'weights': 'x'})
    assert clf.classify(_window(0, 4), None).shape == (0,)
    with pytest.raises(ValueError, match='depth'):
        w = _window()
        w.depth = w.depth[:, :3]
        clf.classify(w, None)


def test_homography_residual_channels_single_out_the_mover():
    from motionseg_ros.models.ego_residual import homography_residuals
    g = torch.Generator().manual_seed(1)
    n, t = 60, 6
    uv0 = torch.rand(n, 2, generator=g) * 1.6 - 0.8
    # background: a pure image-plane translation + zoom per frame (a homography)
    frames = [uv0 * (1 + 0.01 * i) + torch.tensor([0.02 * i, -0.01 * i]) for i in range(t)]
    uv = torch.stack(frames, dim=1)
    uv[0, :, 0] += torch.linspace(0.2, 0.0, t)          # track 0 moves on its own
    vis = torch.ones(n, t, dtype=torch.bool)
    res = homography_residuals(uv, vis, (480, 854))
    assert res.shape == (n, t, 3)
    mag = res[..., 2]
    assert mag[1:].max() < 0.05                         # background fits: ~0 px
    assert mag[0, 0] > 3.0                              # the mover: tens of pixels
    assert res[:, -1].abs().max() < 1e-3                # newest frame vs itself
    model = small_model(ego_residual=True)
    assert model.cfg.in_channels == 91
    with torch.no_grad():
        assert model.classify(uv * 100 + 200, vis, torch.ones(n, t), (480, 854)).shape == (n,)


def test_key_tracks_keep_equivariance_and_bound_the_attention():
    model = small_model(space_keys=8)
    xy, vis, conf = random_tracks(40, 8, seed=4)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model.classify(xy, vis, conf, (120, 160))
        out_p = model.classify(xy[perm], vis[perm], conf[perm], (120, 160))
        full = small_model(space_keys=0).classify(xy, vis, conf, (120, 160))
    assert out.shape == (40,) and torch.isfinite(out).all()
    assert torch.allclose(out[perm], out_p, atol=1e-5)     # keys chosen by content
    assert (out - full).abs().max() > 1e-4                  # it attends to fewer tracks
    from motionseg_ros.models.attention_layers import key_tracks
    from motionseg_ros.models.encoding import normalise_positions
    keys = key_tracks(normalise_positions(xy, (120, 160)), vis, 8)
    assert keys.shape == (8,) and keys.unique().numel() == 8
    counts = vis.sum(dim=1)
    assert counts[keys].min() >= torch.sort(counts, descending=True).values[7]  # longest
    assert key_tracks(xy, vis, 40) is None and key_tracks(xy, vis, 0) is None


def test_geometric_evidence_channels_feed_the_model():
    from motionseg_ros.classifiers.geometric import evidence_channels
    scores = {1: (np.array([0, 2]), np.array([5.0, 0.0])), 4: (np.array([1]), np.array([2.0])),
              20: (np.array([0]), np.array([9.0]))}          # a baseline past the window
    ev = evidence_channels(3, 8, scores)
    assert ev.shape == (3, 8, 2)
    assert ev[0, 6, 0] == pytest.approx(np.log1p(5.0)) and ev[0, 6, 1] == 1.0
    assert ev[2, 6, 1] == 1.0 and ev[2, 6, 0] == 0.0
    assert ev[1, 3, 0] == pytest.approx(np.log1p(2.0))
    assert np.count_nonzero(ev[..., 1]) == 3                 # nothing else is set
    model = small_model(geo_evidence=True)
    assert model.cfg.in_channels == 90
    xy, vis, conf = random_tracks(3, 8)
    with torch.no_grad():
        with pytest.raises(ValueError, match='geometric evidence'):
            model.classify(xy, vis, conf, (120, 160))
        a = model.classify(xy, vis, conf, (120, 160), evidence=torch.from_numpy(ev))
        b = model.classify(xy, vis, conf, (120, 160), evidence=torch.zeros(3, 8, 2))
    assert (a - b).abs().max() > 1e-4


def test_backend_groups_and_geometric_evidence(tmp_path):
    from motionseg_ros.classifiers.moseg import track_groups
    ids = np.arange(100, 1100, 10)
    groups = track_groups(ids, 32)
    assert len(groups) == 4 and sorted(np.concatenate(groups).tolist()) == list(range(100))
    assert max(g.size for g in groups) <= 32
    perm = np.random.default_rng(0).permutation(100)
    again = track_groups(ids[perm], 32)                      # same split, whatever the order
    assert {frozenset(ids[perm][g].tolist()) for g in again} == \
        {frozenset(ids[g].tolist()) for g in groups}
    assert len(track_groups(ids, 0)) == 1
    save_checkpoint(tmp_path / 'geo.pth', small_model(geo_evidence=True, ego_residual=True))
    clf = create('classifier', 'moseg', {'weights': str(tmp_path / 'geo.pth'),
                                         'group_size': 16, 'geometric': {'threads': 1}})
    assert not clf.stateless                                 # the geometric part has state
    from motionseg_ros.stages import StageContext
    ctx = StageContext()
    prob = clf.classify(_window(), ctx)
    assert prob.shape == (30,) and np.all((prob >= 0) & (prob <= 1))
    assert clf._geometric.last_scores                        # the evidence came from fits
    clf.close()
    with pytest.raises(BackendError, match='geometric'):
        create('classifier', 'moseg', {'weights': str(tmp_path / 'geo.pth'),
                                       'geometric': {'no_such_option': 1}})


def test_vectorised_frequency_encoding_equals_the_band_loop():
    x = torch.rand(50, 16, 2) * 2 - 1
    bands = [x]
    for k in range(10):
        bands += [torch.sin(x * 2.0 ** k), torch.cos(x * 2.0 ** k)]
    assert torch.equal(frequency_encode(x, 10), torch.cat(bands, dim=-1))
    assert torch.equal(frequency_encode(x, 0), x)


# ---------------------------------------------------------------- parity with the reference input
def _backend(tmp_path, quirks, **model_kw):
    save_checkpoint(tmp_path / 'm.pth', small_model(**model_kw))
    return create('classifier', 'moseg', {'weights': str(tmp_path / 'm.pth'), 'device': 'cpu',
                                          'reference_quirks': quirks})


@pytest.mark.parametrize('quirks', [False, True])
def test_off_image_positions_are_clamped_like_the_reference(quirks):
    from motionseg_ros.models.encoding import normalise_positions
    uv = normalise_positions(torch.tensor([[-30.0, 500.0], [170.0, -2.0], [80.0, 60.0]]),
                             (120, 160))
    assert torch.equal(uv, torch.tensor([[-1.0, 1.0], [1.0, -1.0], [0.0, 0.0]]))
    model = small_model(use_depth=True)
    xy, vis, conf = random_tracks(12, 6, seed=3)
    off = xy.clone()
    off[0, 2] = torch.tensor([-40.0, 300.0])                 # CoTracker3 predicts such points
    off[5, 4] = torch.tensor([400.0, -15.0])
    border = torch.minimum(torch.clamp(off, min=0.0), torch.tensor([160.0, 120.0]))
    depth = torch.rand(12, 6) + 1
    maps = torch.rand(6, 120, 160) + 0.5
    with torch.no_grad():
        a, _ = model.prepare(off, vis, conf, (120, 160), depth, quirks, maps)
        b, _ = model.prepare(border, vis, conf, (120, 160), depth, quirks, maps)
    assert torch.equal(a, b)


def test_continuous_visibility_feeds_the_visibility_channel(tmp_path):
    clf = _backend(tmp_path, quirks=True)
    win = _window(n=20, t=6, seed=2)
    win.depth = None
    channel = clf.cfg.in_channels - 2                        # visibility, then confidence
    args = clf.model_arguments(win, slice(None))
    inputs, _ = clf.model.prepare(**{k: v for k, v in args.items() if k != 'features'})
    assert torch.equal(inputs[..., channel], torch.from_numpy(win.visible).float())
    rng = np.random.default_rng(0)
    win.visibility = np.where(win.visible, rng.uniform(0.5, 1, win.visible.shape),
                              rng.uniform(0, 0.5, win.visible.shape)).astype(np.float32)
    args = clf.model_arguments(win, slice(None))
    inputs, invisible = clf.model.prepare(**{k: v for k, v in args.items() if k != 'features'})
    assert torch.equal(inputs[..., channel], torch.from_numpy(win.visibility))
    assert torch.equal(invisible, torch.from_numpy(~win.visible))   # the mask stays binary
    binary = clf.classify(win.subset(np.arange(20)), None)
    win.visibility = None
    assert np.abs(binary - clf.classify(win, None)).max() > 1e-4
    assert _window(n=5).subset(np.array([1, 3])).visibility is None


@pytest.mark.parametrize('quirks', [False, True])
def test_tracks_never_visible_stay_out_of_the_model(tmp_path, quirks):
    clf = _backend(tmp_path, quirks=quirks)
    win = _window(n=20, t=6, seed=1)
    base = clf.classify(win, None)
    ghost = _window(n=21, t=6, seed=1)
    ghost.xy[:20], ghost.visible[:20] = win.xy, win.visible
    ghost.confidence[:20], ghost.depth[:20] = win.confidence, win.depth
    ghost.visible[20] = False                                # never visible in the window
    prob = clf.classify(ghost, None)
    assert prob[20] == 0.0                                   # no evidence of motion: static
    assert np.allclose(prob[:20], base, atol=1e-6)           # the others see the same input


def test_reference_mode_forces_a_visible_track_in_empty_frames():
    model = small_model()
    xy, vis, conf = random_tracks(10, 6, seed=7)
    vis[:, 2] = False                                        # nobody visible in frame 2
    conf[:, 2] = torch.linspace(0.1, 0.5, 10)
    conf[7, 2] = 0.9
    with torch.no_grad():
        inputs, invisible = model.prepare(xy, vis, conf, (120, 160), reference_quirks=True)
        _, plain = model.prepare(xy, vis, conf, (120, 160))
    assert torch.nonzero(~invisible[:, 2]).flatten().tolist() == [7]   # the most confident
    assert plain[:, 2].all()                                 # corrected mode: still masked
    assert torch.equal(invisible[:, [0, 1, 3, 4, 5]], ~vis[:, [0, 1, 3, 4, 5]])
    assert inputs[7, 2, -2] == 0.0                           # its visibility value stays 0
    assert inputs[7, 1, 42:44].abs().sum() > 0               # displacement into frame 2 kept


def test_reference_mode_reads_depth_maps_at_every_classifier_stride(davis_root):
    """With ``pipeline.stride`` 3 the classifier still samples the map of every window frame."""
    import cv2

    from motionseg_ros.config import load_config
    from motionseg_ros.pipeline import StreamingPipeline
    from motionseg_ros.types import Frame
    cfg = load_config(overrides=[
        'pipeline.window=6', 'pipeline.stride=3', 'classifier.params.weights=builtin:motion_depth',
        'classifier.params.reference_quirks=true', 'classifier.params.threads=1',
        'classifier.params.geometric=null', 'tracker.params.max_tracks=150'])
    pipe = StreamingPipeline(cfg)
    files = sorted((davis_root / 'JPEGImages' / '480p' / 'car-roundabout').glob('*.jpg'))[:10]
    depth_of = {}
    checked = 0
    for i, path in enumerate(files):
        image = cv2.resize(cv2.imread(str(path)), (214, 120))
        yy, xx = np.mgrid[0:120, 0:214]
        depth = (3.0 + np.sin(xx / 17.0 + i) + 0.01 * yy).astype(np.float32)
        depth_of[i * 10 ** 8] = depth
        res = pipe.process(Frame(image=image, stamp_ns=i * 10 ** 8, index=i, depth=depth))
        win = res.tracks
        if not res.classified or win.num_tracks == 0 or win.num_frames < 4:
            continue
        clf = pipe.stages['classifier']
        maps = np.stack([1.0 / depth_of[int(s)] for s in win.stamps_ns]).astype(np.float32)
        with torch.no_grad():
            logits = clf.model.classify(
                torch.from_numpy(win.xy), torch.from_numpy(win.visible),
                torch.from_numpy(win.confidence), win.image_size, torch.from_numpy(win.depth),
                reference_quirks=True, depth_maps=torch.from_numpy(maps))
        assert np.allclose(res.dynamic_probability, torch.sigmoid(logits).numpy(), atol=1e-6)
        checked += 1
    pipe.close()
    assert checked >= 2                                      # frames 3, 6 and 9


@pytest.mark.slow
def test_cotracker3_fills_continuous_visibility(tmp_path):
    """CoTracker3 hands the classifier its visibility probability, KLT stays 0/1 (None)."""
    pytest.importorskip('cotracker')
    from cotracker.models.build_cotracker import build_cotracker

    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    torch.manual_seed(0)
    state = build_cotracker(None, offline=False, window_len=16).state_dict()
    state['updateformer.vis_conf_head.bias'].fill_(2.0)      # mostly visible, as trained
    state['updateformer.vis_conf_head.weight'].mul_(0.01)
    torch.save(state, str(tmp_path / 'scaled_online.pth'))
    tr = create('tracker', 'cotracker3', {
        'checkpoint': str(tmp_path / 'scaled_online.pth'), 'device': 'cpu', 'window': 8,
        'grid_spacing': 20, 'session_steps': 1, 'model_resolution': [64, 96]})
    for g in range(17):
        img = np.full((60, 80, 3), 80, np.uint8)
        img[20:40, 10 + g:30 + g] = 200
        win = tr.update(Frame(image=img, stamp_ns=g * 1000, index=g), StageContext())
    assert win.num_tracks and win.visibility.shape == win.visible.shape
    measured = win.visibility[:, -2]                         # frame 15: a measured step
    assert np.all((measured > 0) & (measured < 1))           # a probability, not 0/1
    assert win.visible[:, -2].all()                          # while the mask says visible
    klt = create('tracker', 'klt', {'window': 8})
    assert klt.update(Frame(image=img, stamp_ns=0), StageContext()).visibility is None
