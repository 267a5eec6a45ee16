"""The ``motionseg`` command: one sub-command per module in this package.

Each module ``motionseg_ros/cli/<name>.py`` defines ``add_parser(subparsers)`` which adds its
sub-command and sets ``func`` (taking the parsed args, returning an exit code). Modules are
discovered, so a new command is a new module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional


class CliError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every discovered sub-command."""
    from motionseg_ros import __version__
    parser = argparse.ArgumentParser(
        prog='motionseg',
        description='Segment every moving object in videos, image folders and bags.')
    parser.add_argument('--version', action='version', version=f'motionseg {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith('_'):
            continue
        module = importlib.import_module(f'{__name__}.{mod.name}')
        if hasattr(module, 'add_parser'):
            module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``motionseg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f'motionseg {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'motionseg {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
