"""Options every training command shares: the schedule overrides."""

from __future__ import annotations

import argparse
from typing import Any, Dict


def add_schedule_options(p: argparse.ArgumentParser) -> None:
    """Add ``--steps`` and ``--time-budget-min`` (overrides of the config's schedule)."""
    p.add_argument('--steps', type=int, default=None, help='override schedule.steps')
    p.add_argument('--time-budget-min', type=float, default=None,
                   help='override schedule.time_budget_min (training minutes)')


def schedule_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Return ``{'schedule': {...}}`` for the options given, or ``{}``."""
    schedule: Dict[str, Any] = {}
    if args.steps is not None:
        schedule['steps'] = int(args.steps)
    if args.time_budget_min is not None:
        schedule['time_budget_min'] = float(args.time_budget_min)
    return {'schedule': schedule} if schedule else {}
