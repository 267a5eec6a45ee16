"""Backends resolve by name, configs merge and validate with clear messages."""

from __future__ import annotations

import inspect

import pytest

from motionseg_ros import registry
from motionseg_ros.config import STAGES, ConfigError, load_config
from motionseg_ros.pipeline import StreamingPipeline


def test_unknown_backend_names_the_module_and_alternatives():
    with pytest.raises(registry.BackendError, match='unknown tracker backend'):
        registry.resolve('tracker', 'no_such_tracker')


def test_unknown_stage_kind():
    with pytest.raises(registry.BackendError, match='unknown stage kind'):
        registry.resolve('teleporter', 'x')


def test_sensor_depth_resolves_and_scales():
    import numpy as np

    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    depth = registry.create('depth', 'sensor', {'scale': 0.001})
    frame = Frame(image=np.zeros((4, 4, 3), np.uint8), stamp_ns=0,
                  depth=np.full((4, 4), 1500.0, np.float32))
    assert float(depth.estimate(frame, StageContext())[0, 0]) == pytest.approx(1.5)
    with pytest.raises(registry.BackendError, match='bad parameters'):
        registry.create('depth', 'sensor', {'nope': 1})


def test_external_backend_by_module_path():
    cls = registry.resolve('depth', 'motionseg_ros.depth.sensor:SensorDepth')
    assert cls.__name__ == 'SensorDepth'


def test_default_config_and_overrides(tmp_path):
    cfg = load_config()
    assert cfg['pipeline']['window'] == 16
    user = tmp_path / 'user.yaml'
    user.write_text('pipeline: {stride: 2}\n')
    cfg = load_config(user, ['pipeline.window=8'])
    assert cfg['pipeline'] == {**cfg['pipeline'], 'stride': 2, 'window': 8}
    assert cfg['tracker']['name']  # inherited from the default


@pytest.mark.parametrize('text,match', [
    ('pipeline: {window: 1}\n', 'pipeline.window'),
    ('pipeline: {stride: 0}\n', 'pipeline.stride'),
    ('tracker: klt\n', 'tracker'),
    ('[1, 2\n', 'not valid YAML'),
])
def test_invalid_configs(tmp_path, text, match):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(bad)


def test_missing_config_file():
    with pytest.raises(ConfigError, match='not found'):
        load_config('/nonexistent/cfg.yaml')


def test_overlay_naming_another_backend_does_not_inherit_params(tmp_path):
    user = tmp_path / 'other.yaml'
    user.write_text('classifier: {name: geometric, params: {threshold: 0.7}}\n'
                    'tracker: {params: {max_tracks: 123}}\n')
    cfg = load_config(user)
    assert cfg['classifier'] == {'name': 'geometric', 'params': {'threshold': 0.7}}
    # same backend: params merge over the default's
    assert cfg['tracker']['name'] == 'klt'
    assert cfg['tracker']['params']['max_tracks'] == 123
    assert len(cfg['tracker']['params']) > 1


# ---------------------------------------------------------------- defaults and run-time params
def _constructor_defaults(cls) -> dict:
    """Return the defaults a backend takes when built without a config."""
    from motionseg_ros.densifiers.flow import FlowDensifier
    from motionseg_ros.densifiers.flow_params import FlowParams
    if cls is FlowDensifier:
        return FlowParams().as_dict()
    return {n: p.default for n, p in inspect.signature(cls).parameters.items()}


def _same(a, b) -> bool:
    """Equal, with YAML lists and Python tuples alike."""
    return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)


@pytest.mark.parametrize('config', ['default.yaml', 'geometric.yaml'])
def test_constructor_defaults_equal_the_packaged_config(config):
    """The YAML is the product's default; a backend built without it must behave the same."""
    cfg = load_config(None if config == 'default.yaml' else config)
    drift = []
    for stage in STAGES:
        spec = cfg.get(stage) or {}
        if spec.get('name') in (None, 'none'):
            continue
        cls = registry.resolve(stage, spec['name'])
        defaults = _constructor_defaults(cls)
        for key, value in (spec.get('params') or {}).items():
            if isinstance(value, dict):  # a nested backend's params (moseg's geometric)
                assert key == 'geometric'
                nested = _constructor_defaults(registry.resolve('classifier', 'geometric'))
                drift += [f'{stage}.{key}.{k}: yaml {v!r} != {nested[k]!r}'
                          for k, v in value.items() if not _same(v, nested[k])]
            elif key not in defaults or not _same(value, defaults[key]):
                drift.append(f'{stage}.{key}: yaml {value!r} != {defaults.get(key, "absent")!r}')
    assert not drift, drift


@pytest.mark.parametrize('kind, name', [
    ('tracker', 'klt'), ('classifier', 'geometric'), ('classifier', 'moseg'),
    ('grouping', 'affinity'), ('densifier', 'flow'), ('densifier', 'mask_head'),
    ('densifier', 'sam2')])
def test_runtime_declarations_admit_their_defaults(kind, name):
    cls = registry.resolve(kind, name)
    defaults = _constructor_defaults(cls)
    assert cls.runtime_params, f'{kind} {name} declares no run-time parameter'
    for param in cls.runtime_params:
        assert param.description and param.kind in (bool, int, float, str)
        if param.kind in (int, float):
            assert param.low is not None and param.high is not None, param.name
        if defaults.get(param.name) is not None:
            assert param.convert(defaults[param.name]) == defaults[param.name], param.name


@pytest.fixture(scope='module')
def geometric_pipeline():
    pipe = StreamingPipeline(load_config('geometric.yaml'))
    yield pipe
    pipe.close()


def test_bool_text_is_parsed_never_truthy(geometric_pipeline):
    pipe = geometric_pipeline
    pipe.set_params({'classifier.use_epipolar': 'false'})
    assert pipe.stages['classifier'].use_epipolar is False
    pipe.set_params({'classifier.use_epipolar': 'True'})
    assert pipe.stages['classifier'].use_epipolar is True
    for bad in ('no', 'off', '', 0, 1, None):
        with pytest.raises(ValueError, match=r'use_epipolar must be true or false'):
            pipe.set_params({'classifier.use_epipolar': bad})
    assert pipe.stages['classifier'].use_epipolar is True


@pytest.mark.parametrize('key, value, match', [
    ('classifier._prob', {}, r"no run-time parameter '_prob' \(a private attribute\)"),
    ('densifier._masks', {}, r"'_masks' \(a private attribute\)"),
    ('classifier.nope', 1, r"no run-time parameter 'nope'.*run-time parameters: \[.*'threshold'"),
    ('classifier.baselines', [1, 2], r"no run-time parameter 'baselines'"),
    ('tracker.scale', 0.25, r"no run-time parameter 'scale'"),
    ('classifier.threshold', 'high', r'threshold must be a number in \[0.0, 1.0\]'),
    ('classifier.threshold', 1.5, r'threshold must be a number in \[0.0, 1.0\], got 1.5'),
    ('classifier.threshold', float('nan'), r'threshold must be a number'),
    ('classifier.threshold', True, r'threshold must be a number'),
    ('grouping.min_tracks', 2.5, r'min_tracks must be an integer in \[1, 10000\]'),
    ('grouping.min_tracks', 0, r'min_tracks must be an integer'),
    ('pipeline.stride', 0, r'stride must be an integer in \[1, 100\]'),
    ('nostage.x', 1, r"no 'nostage' stage"),
])
def test_bad_run_time_parameters_are_refused_by_name(geometric_pipeline, key, value, match):
    before = geometric_pipeline.get_params()
    with pytest.raises(ValueError, match=match):
        geometric_pipeline.set_params({key: value})
    assert geometric_pipeline.get_params() == before


def test_run_time_changes_apply_all_or_nothing(geometric_pipeline):
    pipe = geometric_pipeline
    before = pipe.get_params()
    with pytest.raises(ValueError, match='min_tracks'):
        pipe.set_params({'classifier.threshold': 0.3, 'densifier.high': 4.0,
                         'grouping.min_tracks': 0})
    assert pipe.get_params() == before
    pipe.set_params({'classifier.params.threshold': 0.3, 'densifier.high': 4,
                     'pipeline.stride': 2})
    after = pipe.get_params()
    assert after['classifier.threshold'] == 0.3 and after['pipeline.stride'] == 2
    assert after['densifier.high'] == 4.0 and isinstance(after['densifier.high'], float)
    pipe.set_params({k: before[k] for k in ('classifier.threshold', 'densifier.high',
                                            'pipeline.stride')})
    assert pipe.get_params() == before


@pytest.mark.parametrize('override, match', [
    ('grouping.params.min_tracks=0', r'grouping affinity: min_tracks must be an integer'),
    ('densifier.params.scale=2.0', r'densifier flow: scale must be a number in \[0.1, 1.0\]'),
    ('densifier.params.grabcut_sid=200', r"unknown parameters \['grabcut_sid'\]"),
    ('pipeline.stride=0', r'stride must be an integer'),
])
def test_configured_values_outside_their_range_stop_the_build(override, match):
    with pytest.raises(registry.BackendError if 'stride' not in override else ValueError,
                       match=match):
        StreamingPipeline(load_config('geometric.yaml', [override]))


def test_declaration_table_parses_types_ranges_choices_and_continuations():
    from motionseg_ros.runtime_params import table
    a, b, c = table("""
alpha  float 0.1..1       0.5   First line of a description
  that goes on here.
mode   str   fast|medium  fast  A choice.
flag   bool  -            true  A flag.
""", with_default=True)
    assert (a.name, a.kind, a.low, a.high, a.default) == ('alpha', float, 0.1, 1.0, 0.5)
    assert a.description == 'First line of a description that goes on here.'
    assert b.choices == ('fast', 'medium') and b.default == 'fast'
    assert c.kind is bool and c.default is True and c.low is None
    with pytest.raises(ValueError, match='mode must be one of'):
        b.convert('slow')
