"""Backends resolve by name, configs merge and validate with clear messages."""

from __future__ import annotations

import pytest

from motionseg_ros import registry
from motionseg_ros.config import ConfigError, load_config


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
