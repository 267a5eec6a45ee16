"""Stage backends chosen by name in the YAML config.

A backend is a module ``motionseg_ros.<kind package>.<name>`` that decorates its class with
``@register('<kind>', '<name>')``. Adding a backend is adding a module: the registry imports
``motionseg_ros.<package>.<name>`` on first use, so no table here needs editing. A fully
qualified ``'some.module:ClassName'`` name loads a backend from outside the package.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

#: stage kind -> sub-package holding its backends
STAGE_PACKAGES: Dict[str, str] = {
    'tracker': 'trackers',
    'classifier': 'classifiers',
    'grouping': 'grouping',
    'densifier': 'densifiers',
    'depth': 'depth',
    'features': 'features',
}

_REGISTRY: Dict[Tuple[str, str], type] = {}


class BackendError(ValueError):
    """A stage name that does not resolve to a backend, or a backend that cannot start."""


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: make ``cls`` the backend ``name`` of stage ``kind``."""
    if kind not in STAGE_PACKAGES:
        raise ValueError(f'unknown stage kind {kind!r}; known: {sorted(STAGE_PACKAGES)}')

    def deco(cls: type) -> type:
        _REGISTRY[(kind, name)] = cls
        cls.backend_name = name
        return cls
    return deco


def resolve(kind: str, name: str) -> type:
    """Return the class of backend ``name`` for stage ``kind``, importing its module."""
    if kind not in STAGE_PACKAGES:
        raise BackendError(f'unknown stage kind {kind!r}; known: {sorted(STAGE_PACKAGES)}')
    if (kind, name) in _REGISTRY:
        return _REGISTRY[(kind, name)]
    if ':' in name:
        module_name, _, attr = name.partition(':')
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise BackendError(f'{kind} backend {name!r} cannot be loaded: {exc}') from exc
    module_name = f'motionseg_ros.{STAGE_PACKAGES[kind]}.{name}'
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendError(
                f'unknown {kind} backend {name!r} (no module {module_name}); '
                f'available: {available(kind)}') from exc
        raise BackendError(
            f'{kind} backend {name!r} needs the missing module {exc.name!r}: {exc}') from exc
    if (kind, name) not in _REGISTRY:
        raise BackendError(f'module {module_name} does not register {kind} backend {name!r}')
    return _REGISTRY[(kind, name)]


def create(kind: str, name: str, params: Optional[Mapping[str, Any]] = None, **extra: Any) -> Any:
    """Instantiate backend ``name`` of stage ``kind`` with keyword ``params``."""
    cls = resolve(kind, name)
    kwargs = dict(params or {})
    kwargs.update(extra)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise BackendError(f'{kind} backend {name!r}: bad parameters {sorted(kwargs)}: {exc}'
                           ) from exc


def available(kind: str) -> list:
    """List the backends shipped in the package for stage ``kind``."""
    import pkgutil
    from pathlib import Path
    pkg = importlib.import_module(f'motionseg_ros.{STAGE_PACKAGES[kind]}')
    names = set()
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name.startswith('_'):
            continue
        source = Path(m.module_finder.path, f'{m.name}.py')
        # helpers living beside the backends (e.g. densifiers/prompting.py) register nothing
        if source.is_file() and f"@register('{kind}'" in source.read_text(encoding='utf-8'):
            names.add(m.name)
    return sorted(names)
