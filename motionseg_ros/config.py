"""Pipeline configuration: YAML in, a validated nested dict out.

A config names one backend per stage and its parameters::

    pipeline: {window: 16, stride: 1, ...}
    tracker: {name: klt, params: {...}}
    classifier: {name: geometric, params: {...}}
    ...

Files are merged over the packaged default (``config/default.yaml``) so a user file only has
to say what differs. Dotted overrides (``classifier.params.threshold=0.6``) serve the CLI and
the node's parameters.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import yaml

PathLike = Union[str, os.PathLike]

STAGES = ('depth', 'tracker', 'features', 'classifier', 'grouping', 'densifier')


class ConfigError(ValueError):
    """An invalid configuration, with the offending key in the message."""


def package_config_dir() -> Path:
    """Return the folder of the packaged YAML files (source, pip install or colcon share/)."""
    here = Path(__file__).resolve().parent
    candidates = [here / 'config', here.parent / 'config']
    try:  # colcon / apt install: share/motionseg_ros/config
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('motionseg_ros')) / 'config')
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        pass
    for cand in candidates:
        if (cand / 'default.yaml').is_file():
            return cand
    raise ConfigError(f'packaged config/default.yaml not found (looked in {candidates})')


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """Return ``base`` updated recursively by ``over`` (neither is modified)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge a config over another; a stage that names another backend replaces it whole.

    Parameters belong to a backend: the default's ``geometric`` classifier params must not leak
    into a ``moseg`` classifier named by an overlay.
    """
    out = deep_merge(base, over)
    for stage in STAGES:
        b, o = base.get(stage), over.get(stage)
        if isinstance(b, Mapping) and isinstance(o, Mapping) and 'name' in o \
                and o.get('name') != b.get('name'):
            out[stage] = copy.deepcopy(dict(o))
    return out


def resolve_config_path(path: PathLike) -> Path:
    """Find a config by path, or by bare name in the packaged config folder (``gpu.yaml``)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (package_config_dir() / p.name, package_config_dir() / f'{p.name}.yaml'):
        if cand.is_file():
            return cand
    raise ConfigError(f'config file {str(path)!r} not found (nor in {package_config_dir()})')


def load_config(path: Optional[PathLike] = None,
                overrides: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Load the default config, merge ``path`` over it, apply ``key=value`` overrides."""
    with open(package_config_dir() / 'default.yaml', encoding='utf-8') as fh:
        cfg = yaml.safe_load(fh) or {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            with open(p, encoding='utf-8') as fh:
                user = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f'{p}: not valid YAML: {exc}') from exc
        if not isinstance(user, Mapping):
            raise ConfigError(f'{p}: expected a mapping at the top level')
        cfg = merge_config(cfg, user)
    for item in overrides or ():
        key, sep, raw = item.partition('=')
        if not sep:
            raise ConfigError(f'override {item!r} is not key=value')
        set_dotted(cfg, key.strip(), yaml.safe_load(raw))
    validate(cfg)
    return cfg


def set_dotted(cfg: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``cfg['a']['b']['c'] = value`` for key ``'a.b.c'``, creating mappings as needed."""
    parts = key.split('.')
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f'{key}: {part!r} is not a mapping')
    node[parts[-1]] = value


def get_dotted(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read ``'a.b.c'`` from nested mappings."""
    node: Any = cfg
    for part in key.split('.'):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def validate(cfg: Mapping[str, Any]) -> None:
    """Check structure and ranges that every backend relies on."""
    pipe = cfg.get('pipeline', {})
    window = pipe.get('window', 16)
    if not isinstance(window, int) or not 2 <= window <= 256:
        raise ConfigError(f'pipeline.window must be an integer in [2, 256], got {window!r}')
    stride = pipe.get('stride', 1)
    if not isinstance(stride, int) or stride < 1:
        raise ConfigError(f'pipeline.stride must be an integer >= 1, got {stride!r}')
    for stage in STAGES:
        spec = cfg.get(stage)
        if spec is None:
            continue
        if not isinstance(spec, Mapping) or 'name' not in spec:
            raise ConfigError(f'{stage}: expected a mapping with a "name" key, got {spec!r}')
        if not isinstance(spec.get('params', {}) or {}, Mapping):
            raise ConfigError(f'{stage}.params must be a mapping')
