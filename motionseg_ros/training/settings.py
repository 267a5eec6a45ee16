"""Training configs: defaults, updated by a YAML file, updated by overrides (unknown keys refused).

Shared by the classifier's and the mask head's training so both read, merge and refuse alike.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import yaml


class TrainingError(ValueError):
    """A bad training configuration, data root or output folder (one line for the CLI)."""


def merge_settings(base: Mapping[str, Any], over: Mapping[str, Any], path: str = '',
                   free: Sequence[str] = ()) -> Dict[str, Any]:
    """Return ``base`` updated by ``over``; a key ``base`` lacks is an error.

    Except below a prefix in ``free`` (e.g. ``model.``, checked by the model's own config).
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if key not in base and path not in free:
            raise TrainingError(f'unknown training option {path}{key!r}; known: {sorted(base)}')
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            out[key] = merge_settings(base[key], value, f'{path}{key}.', free)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_settings(defaults: Mapping[str, Any], path: Optional[Union[str, Path]] = None,
                  overrides: Optional[Mapping[str, Any]] = None,
                  free: Sequence[str] = ()) -> Dict[str, Any]:
    """Return ``defaults`` updated by the YAML file at ``path``, then by ``overrides``."""
    cfg = copy.deepcopy(dict(defaults))
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TrainingError(f'training config not found: {path}')
        with open(path, 'r', encoding='utf-8') as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, Mapping):
            raise TrainingError(f'{path}: expected a mapping at the top level')
        cfg = merge_settings(cfg, data, free=free)
    if overrides:
        cfg = merge_settings(cfg, overrides, free=free)
    return cfg
