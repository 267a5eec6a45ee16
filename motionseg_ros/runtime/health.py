"""Health statistics of a frame-processing node, and the judgement of its health level.

ROS-free: the node turns :meth:`HealthStats.values` and :func:`judge` into a
``diagnostic_msgs/DiagnosticStatus``. Levels use the DiagnosticStatus numbers (OK 0, WARN 1,
ERROR 2). Health is judged from what changed since the previous report, not from totals, so
one bad frame an hour ago does not keep a node in WARN.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

OK, WARN, ERROR = 0, 1, 2
#: seconds over which input and output rates are measured
RATE_WINDOW_S = 5.0
#: seconds a GPU out-of-memory degradation keeps the level at WARN
OOM_WARN_HOLD_S = 30.0
#: pipeline warning text -> event code (the pipeline resets with these warnings)
WARNING_CODES: List[Tuple[str, str]] = [
    ('resolution changed', 'resolution_change'),
    ('stamp went backwards', 'stamp_backwards'),
    ('out of memory', 'gpu_out_of_memory'),
]


def warning_code(text: str) -> str:
    """Return the event code of a pipeline warning (``pipeline_warning`` when unknown)."""
    lower = text.lower()
    for needle, code in WARNING_CODES:
        if needle in lower:
            return code
    return 'pipeline_warning'


class Throttle:
    """Let the same message through at most once per ``period_s``.

    Messages that differ only in their numbers (stamps, sizes) count as the same message.
    """

    def __init__(self, period_s: float) -> None:
        """Remember when each message last passed."""
        self.period_s = period_s
        self._last: Dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, text: str, now: Optional[float] = None) -> bool:
        """Tell whether ``text`` may be logged now (and remember that it was)."""
        key = re.sub(r'[-+]?\d[\d.]*', '#', text)
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                return False
            self._last[key] = now
            return True


def _rate(stamps: Deque[float], now: float, since: float) -> float:
    while stamps and stamps[0] < now - RATE_WINDOW_S:
        stamps.popleft()
    span = min(RATE_WINDOW_S, max(now - since, 1e-3))
    return len(stamps) / span


def _pct(samples: Deque[float], q: float) -> str:
    return 'nan' if not samples else f'{float(np.percentile(np.array(samples), q)):.1f}'


class HealthStats:
    """Rates, latencies, event counts and warnings, updated from any thread."""

    def __init__(self, samples: int = 200) -> None:
        """Keep the last ``samples`` latency and processing-time measurements."""
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._in: Deque[float] = collections.deque()
        self._out: Deque[float] = collections.deque()
        self._latency_ms: Deque[float] = collections.deque(maxlen=samples)
        self._proc_ms: Deque[float] = collections.deque(maxlen=samples)
        self.events: Dict[str, int] = collections.Counter()
        self.last_warning = ''
        self.last_pipeline_warning = ''
        self._oom_at: Optional[float] = None
        self._prev: Tuple[Dict[str, int], Dict[str, int], int] = ({}, {}, 0)

    def received(self) -> None:
        """Count one input frame for the input rate."""
        with self._lock:
            self._in.append(time.monotonic())

    def done(self, latency_ms: float, proc_ms: float) -> None:
        """Record one output: receipt-to-publish latency and pipeline time."""
        with self._lock:
            self._out.append(time.monotonic())
            self._latency_ms.append(latency_ms)
            self._proc_ms.append(proc_ms)

    def event(self, key: str, count: int = 1) -> None:
        """Add to an event counter (reported as ``events.<key>``)."""
        with self._lock:
            self.events[key] += count

    def set_event(self, key: str, value: int) -> None:
        """Set a gauge reported with the events (e.g. objects in the last frame)."""
        with self._lock:
            self.events[key] = value

    def warning(self, text: str) -> None:
        """Remember ``text`` as the last warning about the input."""
        with self._lock:
            self.last_warning = text

    def pipeline_warning(self, text: str) -> str:
        """Count a warning the pipeline returned with a result; return its event code."""
        code = warning_code(text)
        with self._lock:
            self.events[code] += 1
            self.events['pipeline_warnings'] += 1
            self.last_warning = self.last_pipeline_warning = text
            if code == 'gpu_out_of_memory':
                self._oom_at = time.monotonic()
        return code

    def _rates(self) -> Tuple[float, float]:
        """Return the input and output rates in Hz (call with the lock held)."""
        now = time.monotonic()
        return _rate(self._in, now, self._started), _rate(self._out, now, self._started)

    def values(self) -> Dict[str, Any]:
        """Return rates, percentiles, events and warnings as report key -> value."""
        with self._lock:
            in_rate, out_rate = self._rates()
            out: Dict[str, Any] = {
                'input_rate_hz': f'{in_rate:.2f}',
                'output_rate_hz': f'{out_rate:.2f}',
                'latency_p50_ms': _pct(self._latency_ms, 50),
                'latency_p95_ms': _pct(self._latency_ms, 95),
                'processing_p50_ms': _pct(self._proc_ms, 50),
                'processing_p95_ms': _pct(self._proc_ms, 95),
            }
            out.update({f'events.{k}': v for k, v in sorted(self.events.items())})
            out['last_warning'] = self.last_warning
            out['pipeline_warnings'] = self.events.get('pipeline_warnings', 0)
            out['last_pipeline_warning'] = self.last_pipeline_warning
        return out

    def judge(self, counts: Mapping[str, int], reasons: Mapping[str, int], active: bool,
              state: str, image_topic: str) -> Tuple[int, str]:
        """Return (level, message) from what changed since the previous call."""
        with self._lock:
            # only the rates are judged (no percentiles); rounded as the report shows them
            in_rate, out_rate = (round(r, 2) for r in self._rates())
            prev_c, prev_r, prev_w = self._prev
            warnings = self.events.get('pipeline_warnings', 0)
            self._prev = (dict(counts), dict(reasons), warnings)
            oom_recent = (self._oom_at is not None and
                          time.monotonic() - self._oom_at < OOM_WARN_HOLD_S)
            last_pipeline = self.last_pipeline_warning
        new = {k: counts[k] - prev_c.get(k, 0) for k in counts}
        errors = reasons.get('pipeline_error', 0) - prev_r.get('pipeline_error', 0)
        if errors > 0:
            return ERROR, f'{errors} frame(s) failed in the pipeline'
        if oom_recent:
            return WARN, f'GPU out of memory, pipeline degraded: {last_pipeline}'
        if new['rejected']:
            return WARN, f"{new['rejected']} bad input frame(s) rejected"
        if warnings > prev_w:
            return WARN, f'{warnings - prev_w} pipeline warning(s): {last_pipeline}'
        if not active:
            return OK, f'{state}: not subscribed to images'
        if counts['received'] == 0:
            return OK, f'waiting for images on {image_topic}'
        if new['received'] and not new['processed'] and not counts['in_flight']:
            return WARN, 'images arrive but none was processed'
        if new['received'] and new['dropped'] > new['received'] / 2:
            return WARN, (f'processing slower than input: {out_rate:.1f} Hz out '
                          f'of {in_rate:.1f} Hz in, frames dropped')
        return OK, f'{out_rate:.1f} Hz out of {in_rate:.1f} Hz in'
