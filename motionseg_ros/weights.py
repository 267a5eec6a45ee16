"""Where model weights live, and one clear error when they are not there.

Every learned backend names its weights in the config: a local folder (transformers
``save_pretrained`` layout), a file (``.pth``), or ``builtin:NAME`` for the small weights
shipped in ``motionseg_ros/weights/``. A relative name is looked up in the working directory,
then under ``$MOTIONSEG_WEIGHTS_DIR`` and ``~/.cache/motionseg/weights``, the folder that
``motionseg fetch-weights`` fills on a connected machine. Nothing here downloads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

from motionseg_ros.registry import BackendError

PathLike = Union[str, os.PathLike]

ENV_VAR = 'MOTIONSEG_WEIGHTS_DIR'
#: the weights shipped with the package, named ``builtin:NAME`` (file NAME.pth)
BUILTIN_DIR = Path(__file__).resolve().parent / 'weights'
BUILTIN_PREFIX = 'builtin:'
DEFAULT_DIR = Path('~/.cache/motionseg/weights')
FETCH_HINT = 'motionseg fetch-weights --config gpu.yaml --dest {dest}'


class WeightsError(BackendError):
    """Weights named in the config are missing or unusable."""


def weights_dirs() -> List[Path]:
    """Folders searched for relative weight names, in order."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(DEFAULT_DIR.expanduser())
    return dirs


def default_dest() -> Path:
    """Return the folder ``fetch-weights`` writes to when none is given."""
    return weights_dirs()[0]


def builtin_weights(name: str, what: str) -> Path:
    """Return the shipped ``motionseg_ros/weights/NAME.pth`` or raise :class:`WeightsError`."""
    path = BUILTIN_DIR / f'{name}.pth'
    if not path.is_file():
        shipped = sorted(p.stem for p in BUILTIN_DIR.glob('*.pth')) if BUILTIN_DIR.is_dir() \
            else []
        raise WeightsError(f'{what}: no built-in weights {name!r} ({path}); shipped: {shipped}')
    return path


def resolve_weights(name: Optional[PathLike], what: str = 'weights', kind: str = 'any',
                    hub_id: Optional[str] = None) -> Path:
    """Return the existing path for weights ``name`` or raise :class:`WeightsError`.

    ``kind`` is 'dir' (a transformers folder with ``config.json``), 'file' or 'any'. ``what``
    names the stage in the message (e.g. 'densifier sam2'); ``hub_id`` says what to fetch.
    ``builtin:NAME`` names a file shipped with the package.
    """
    if name is None or str(name).strip() == '':
        raise WeightsError(f'{what}: no weights configured (set its "model"/"weights" param to a '
                           f'local folder or file; get them with '
                           f'`{FETCH_HINT.format(dest=default_dest())}`)')
    if str(name).startswith(BUILTIN_PREFIX):
        return builtin_weights(str(name)[len(BUILTIN_PREFIX):], what)
    raw = Path(str(name)).expanduser()
    if raw.is_absolute():
        candidates = [raw]
    else:
        candidates = [Path.cwd() / raw] + [d / raw for d in weights_dirs()]
    for cand in candidates:
        if not cand.exists():
            continue
        if kind == 'dir':
            if not cand.is_dir():
                raise WeightsError(f'{what}: {cand} is a file; expected a transformers model '
                                   'folder (with config.json)')
            if not (cand / 'config.json').is_file():
                raise WeightsError(f'{what}: {cand} has no config.json; expected a '
                                   'transformers model folder (save_pretrained layout)')
        elif kind == 'file' and not cand.is_file():
            raise WeightsError(f'{what}: {cand} is not a file')
        return cand
    source = f' (hub id {hub_id})' if hub_id else ''
    looked = ', '.join(str(c) for c in candidates)
    raise WeightsError(
        f'{what}: weights {str(name)!r}{source} not found; looked in: {looked}. '
        f'On a connected machine run `{FETCH_HINT.format(dest=default_dest())}` '
        f'(or set {ENV_VAR} to the folder holding them).')


def resolve_device(device: str = 'auto') -> str:
    """Map 'auto' to 'cuda' when a GPU is usable, else 'cpu'; validate other names."""
    import torch
    device = str(device or 'auto').lower()
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise BackendError(f'device {device!r} requested but no CUDA GPU is available '
                           '(use device: auto or cpu)')
    if not (device == 'cpu' or device.startswith('cuda') or device == 'mps'):
        raise BackendError(f'unknown device {device!r}; expected auto, cpu, cuda or cuda:N')
    return device


def resolve_dtype(dtype: str, device: str):
    """Map 'auto' to bfloat16/float16 on CUDA (half precision helps there), float32 on CPU."""
    import torch
    dtype = str(dtype or 'auto').lower()
    if dtype == 'auto':
        if device.startswith('cuda'):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {'float32': torch.float32, 'fp32': torch.float32, 'float16': torch.float16,
             'fp16': torch.float16, 'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}
    if dtype not in table:
        raise BackendError(f'unknown dtype {dtype!r}; expected auto, float32, float16, bfloat16')
    return table[dtype]


def is_oom(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a GPU out-of-memory error (to degrade instead of dying)."""
    import torch
    oom = getattr(torch.cuda, 'OutOfMemoryError', None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and 'out of memory' in str(exc).lower()


def free_gpu_memory() -> None:
    """Release cached GPU blocks after an out-of-memory error."""
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
