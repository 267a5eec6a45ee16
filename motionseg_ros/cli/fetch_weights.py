"""``motionseg fetch-weights``: download the weights a config names, on a connected machine.

The list (hub id or URL, approximate size, licence) is printed first; nothing is downloaded
without ``--yes`` or an interactive "y". Sources come from the config's optional top-level
``weights:`` section (``name: {hub: ID | url: URL, file: ..., size_mb: ..., licence: ...}``) and
otherwise from :data:`KNOWN`. Files land under ``--dest`` with the names the config uses, which
is where :func:`motionseg_ros.weights.resolve_weights` looks for relative names.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping

from motionseg_ros.cli import CliError
from motionseg_ros.weights import BUILTIN_PREFIX

#: weight name (as used in configs) -> where it comes from
KNOWN: Dict[str, Dict[str, Any]] = {
    'sam2.1-hiera-tiny': {'hub': 'facebook/sam2.1-hiera-tiny', 'size_mb': 160,
                          'licence': 'Apache-2.0'},
    'sam2.1-hiera-small': {'hub': 'facebook/sam2.1-hiera-small', 'size_mb': 185,
                           'licence': 'Apache-2.0'},
    'sam2.1-hiera-base-plus': {'hub': 'facebook/sam2.1-hiera-base-plus', 'size_mb': 325,
                               'licence': 'Apache-2.0'},
    'sam2.1-hiera-large': {'hub': 'facebook/sam2.1-hiera-large', 'size_mb': 900,
                           'licence': 'Apache-2.0'},
    'EdgeTAM': {'hub': 'yonigozlan/EdgeTAM-hf', 'size_mb': 60, 'licence': 'Apache-2.0'},
    'dinov2-small': {'hub': 'facebook/dinov2-small', 'size_mb': 90, 'licence': 'Apache-2.0'},
    'dinov2-base': {'hub': 'facebook/dinov2-base', 'size_mb': 350, 'licence': 'Apache-2.0'},
    'depth-anything-v2-small': {'hub': 'depth-anything/Depth-Anything-V2-Small-hf',
                                'size_mb': 100, 'licence': 'Apache-2.0'},
    'depth-anything-v2-base': {'hub': 'depth-anything/Depth-Anything-V2-Base-hf',
                               'size_mb': 390, 'licence': 'CC-BY-NC-4.0 (non-commercial)'},
    'depth-anything-v2-large': {'hub': 'depth-anything/Depth-Anything-V2-Large-hf',
                                'size_mb': 1340, 'licence': 'CC-BY-NC-4.0 (non-commercial)'},
    'moseg.pth': {'hub': 'Changearthmore/moseg', 'file': 'moseg.pth', 'size_mb': 14,
                  'licence': 'see the SegAnyMo repository (code MIT)'},
    'cotracker3/scaled_online.pth': {
        'url': 'https://huggingface.co/facebook/cotracker3/resolve/main/scaled_online.pth',
        'size_mb': 100, 'licence': 'CC-BY-NC-4.0 (non-commercial)'},
}
#: constructor params that name weights, per stage backend
WEIGHT_PARAMS = ('model', 'weights', 'checkpoint')
#: file patterns worth downloading from a transformers hub repo (skips duplicate .pt files)
HUB_PATTERNS = ['*.json', '*.safetensors', '*.txt', '*.model', '*.pth']


def referenced_weights(cfg: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every weight a config names: [{'stage', 'backend', 'name', source fields...}]."""
    from motionseg_ros import registry
    from motionseg_ros.config import STAGES
    import inspect
    table = dict(KNOWN)
    table.update({str(k): dict(v) for k, v in (cfg.get('weights') or {}).items()})
    out = []
    for stage in STAGES:
        spec = cfg.get(stage) or {}
        backend = spec.get('name')
        if backend in (None, 'none'):
            continue
        params = dict(spec.get('params') or {})
        try:
            sig = inspect.signature(registry.resolve(stage, backend).__init__)
            defaults = {k: p.default for k, p in sig.parameters.items()
                        if p.default is not inspect.Parameter.empty}
        except registry.BackendError:
            defaults = {}  # e.g. cotracker3 without its package: only explicit params count
        for key in WEIGHT_PARAMS:
            name = params.get(key, defaults.get(key))
            if not isinstance(name, str) or not name or name.startswith(BUILTIN_PREFIX):
                continue
            if Path(name).expanduser().is_absolute():
                entry_name = Path(name).expanduser().name
            else:
                entry_name = name
            source = table.get(name) or table.get(entry_name) or {}
            out.append({'stage': stage, 'backend': backend, 'param': key, 'name': name,
                        **source})
    return out


def describe(item: Mapping[str, Any]) -> str:
    """One line per weight for the listing."""
    src = item.get('hub') or item.get('url') or 'unknown source: place it by hand'
    if item.get('file'):
        src += f' ({item["file"]})'
    size = f'~{item["size_mb"]} MB' if item.get('size_mb') else 'size unknown'
    lic = item.get('licence', 'licence unknown')
    return f'{item["stage"]:<10} {item["backend"]:<14} {item["name"]:<30} {src}  {size}  {lic}'


def download(item: Mapping[str, Any], dest: Path) -> Path:
    """Fetch one weight into ``dest`` under the name the config uses."""
    target = Path(item['name']).expanduser()
    target = target if target.is_absolute() else dest / target
    if item.get('hub'):
        from huggingface_hub import hf_hub_download, snapshot_download
        if item.get('file'):
            target.parent.mkdir(parents=True, exist_ok=True)
            got = Path(hf_hub_download(item['hub'], item['file'], local_dir=str(target.parent)))
            if got != target:
                got.replace(target)
            return target
        snapshot_download(item['hub'], local_dir=str(target), allow_patterns=HUB_PATTERNS)
        return target
    if item.get('url'):
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + '.part')
        urllib.request.urlretrieve(item['url'], str(part))  # noqa: S310 - fixed https URLs
        part.replace(target)
        return target
    raise CliError(f'no known source for {item["name"]!r}; add it to the config\'s weights: '
                   'section or place the file by hand')


def run(args: argparse.Namespace) -> int:
    """List, confirm, download."""
    from motionseg_ros.config import ConfigError, load_config
    from motionseg_ros.weights import default_dest
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    dest = Path(args.dest).expanduser() if args.dest else default_dest()
    items = referenced_weights(cfg)
    if not items:
        print(f'{args.config}: names no downloadable weights')
        return 0
    total = sum(int(i.get('size_mb') or 0) for i in items)
    print(f'Weights named by {args.config} (destination {dest}):')
    for item in items:
        print('  ' + describe(item))
    print(f'Total ~{total} MB. Check the licences: non-commercial ones bind your use.')
    if args.dry_run:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError('not a terminal: pass --yes to download without asking')
        if input('Download these now? [y/N] ').strip().lower() not in ('y', 'yes'):
            print('nothing downloaded')
            return 1
    for item in items:
        print(f'fetching {item["name"]} ...', flush=True)
        try:
            path = download(item, dest)
        except CliError:
            raise
        except Exception as exc:  # noqa: BLE001 - network errors reported in one line
            raise CliError(f'downloading {item["name"]} failed: {exc}') from exc
        print(f'  -> {path}')
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``motionseg fetch-weights``."""
    p = subparsers.add_parser(
        'fetch-weights', help='download the model weights a config names (connected machine)',
        description='List, then download, the weights that a config names (hub ids, sizes, '
                    'licences printed first). Never needed for the default CPU profile.')
    p.add_argument('--config', required=True, help='config file or packaged name (gpu.yaml)')
    p.add_argument('--dest', default=None,
                   help='folder to fill (default $MOTIONSEG_WEIGHTS_DIR or '
                        '~/.cache/motionseg/weights)')
    p.add_argument('--yes', action='store_true', help='download without asking')
    p.add_argument('--dry-run', action='store_true', help='only list what would be fetched')
    p.set_defaults(func=run)
