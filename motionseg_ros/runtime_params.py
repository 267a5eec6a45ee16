"""Run-time parameters: each backend declares, in one place, what may change between frames.

A :class:`RuntimeParam` names a parameter, its type, its valid range or choices and what it
means. A backend lists its declarations in its class attribute ``runtime_params``; the stage's
``set_params`` validates against them (and only them), and the ROS node generates its
parameter descriptors (type, range, description) from the same declarations. A parameter whose
change could not take effect between frames (a resolution, a model, a thread pool) is simply
not declared, so it is refused with the list of those that are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

#: spellings accepted for booleans given as text (e.g. from a command line); anything else,
#: such as 'no' or 'off', is refused rather than cast by truthiness
_BOOL_TEXT = {'true': True, 'false': False}


@dataclass(frozen=True)
class RuntimeParam:
    """One run-time parameter: type, valid values and meaning."""

    name: str
    kind: type                      # bool | int | float | str
    description: str
    low: Optional[float] = None     # inclusive bounds of int and float parameters
    high: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    default: Any = None             # only where the declaration is also the default's source

    def allowed(self) -> str:
        """Return the valid values in words, for error messages and descriptors."""
        if self.choices is not None:
            return f'one of {list(self.choices)}'
        if self.kind is bool:
            return 'true or false'
        kind = 'an integer' if self.kind is int else 'a number'
        if self.low is not None and self.high is not None:
            return f'{kind} in [{self.low}, {self.high}]'
        if self.low is not None:
            return f'{kind} >= {self.low}'
        if self.high is not None:
            return f'{kind} <= {self.high}'
        return kind

    def convert(self, value: Any, owner: str = '') -> Any:
        """Return ``value`` as this parameter's type; ValueError naming it when invalid."""
        where = f'{owner}: ' if owner else ''
        bad = ValueError(f'{where}{self.name} must be {self.allowed()}, got {value!r}')
        if isinstance(value, np.generic):
            value = value.item()
        if self.kind is bool:
            if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
                return _BOOL_TEXT[value.strip().lower()]
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise bad
            return value
        if isinstance(value, str):  # text from a command line: parse it, never cast it
            try:
                value = int(value) if self.kind is int else float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.kind is int:
            if not isinstance(value, int):
                raise bad
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if (self.low is not None and value < self.low) or \
                (self.high is not None and value > self.high):
            raise bad
        return value


_KINDS = {'bool': bool, 'int': int, 'float': float, 'str': str}


def table(text: str, with_default: bool = False) -> Tuple[RuntimeParam, ...]:
    """Parse declarations written as a table, one parameter per line.

    Columns: ``name kind values [default] description``; ``kind`` is bool, int, float or str;
    ``values`` is ``lo..hi`` (inclusive), ``a|b|c`` (choices) or ``-``; the default column is
    there when ``with_default``. A line that starts with a space continues the description.
    A table reads like the documentation it is and keeps each parameter on one line.
    """
    rows: list = []
    for line in text.strip('\n').splitlines():
        if line[:1].isspace() and rows:
            rows[-1][-1] += ' ' + line.strip()
        elif line.strip():
            cols = line.split(None, 4 if with_default else 3)
            rows.append(cols[:-1] + [cols[-1]])
    out = []
    for cols in rows:
        name, kind_name, values = cols[:3]
        kind = _KINDS[kind_name]
        low = high = choices = None
        if '..' in values:
            low, high = (kind(v) for v in values.split('..'))
        elif '|' in values or kind is str:
            choices = tuple(values.split('|'))
        spec = RuntimeParam(name, kind, cols[-1], low, high, choices)
        if with_default:
            spec = replace(spec, default=spec.convert(cols[3]))
        out.append(spec)
    return tuple(out)


def validate(declared: Sequence[RuntimeParam], params: Mapping[str, Any], owner: str
             ) -> Dict[str, Any]:
    """Return ``params`` converted to their declared types, or raise ValueError.

    Every name must be declared (a private or construction-only attribute never is); the
    message names the parameter and what is allowed. Nothing is applied here, so a caller
    that validates a whole batch first applies all of it or none.
    """
    by_name = {p.name: p for p in declared}
    out: Dict[str, Any] = {}
    for name, value in params.items():
        spec = by_name.get(name)
        if spec is None:
            why = 'a private attribute' if str(name).startswith('_') else \
                'unknown, or fixed once the stage is built'
            raise ValueError(f'{owner} has no run-time parameter {name!r} ({why}); run-time '
                             f'parameters: {sorted(by_name) or "none"}')
        out[name] = spec.convert(value, owner)
    return out


#: the decision threshold every classifier backend offers
THRESHOLD = RuntimeParam('threshold', float, 'Probability above which a point track counts as '
                         'moving; takes effect on the next frame.', 0.0, 1.0)
