"""Pair each image with the depth image nearest in stamp, waiting briefly for a trailing one.

Why a wait: a depth image often arrives just after its colour image (separate topics, separate
drivers). While the depth stream is live and nothing newer than the image came yet, the worker
waits up to ``wait_s`` for it instead of processing the image without depth.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Tuple

#: depth images kept for stamp pairing
DEPTH_BUFFER = 10
#: a depth stream silent for longer (s) is not waited for
DEPTH_LIVE_S = 1.0


@dataclass
class Pairing:
    """The outcome of :meth:`DepthPairer.pair`: the depth payload, or why there is none."""

    payload: Any = None
    problem: str = ''


class DepthPairer:
    """A short buffer of (stamp, depth payload), filled by one thread and read by another."""

    def __init__(self, buffer: int = DEPTH_BUFFER, live_s: float = DEPTH_LIVE_S) -> None:
        """Keep the newest ``buffer`` depth images; a stream silent for ``live_s`` is dead."""
        self._cond = threading.Condition()
        self._items: Deque[Tuple[int, Any]] = collections.deque(maxlen=buffer)
        self._live_s = live_s
        self._received_at = -1e9

    def add(self, stamp_ns: int, payload: Any) -> None:
        """Store a depth image and wake a worker waiting for it."""
        with self._cond:
            self._items.append((int(stamp_ns), payload))
            self._received_at = time.monotonic()
            self._cond.notify_all()

    def pair(self, stamp_ns: int, slop_s: float, wait_s: float,
             cancelled: Callable[[], bool] = lambda: False) -> Pairing:
        """Return the depth nearest to ``stamp_ns`` if within ``slop_s``, else why not.

        Waits up to ``wait_s`` for a depth still on its way (see the module docstring), and
        no longer than ``cancelled()`` stays False (checked every 50 ms).
        """
        slop_ns = slop_s * 1e9
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                candidates = list(self._items)
                near = any(abs(s - stamp_ns) <= slop_ns for s, _ in candidates)
                live = time.monotonic() - self._received_at < self._live_s
                newer = any(s > stamp_ns + slop_ns for s, _ in candidates)
                remaining = deadline - time.monotonic()
                if near or not live or newer or remaining <= 0 or cancelled():
                    break
                self._cond.wait(min(remaining, 0.05))
        if not candidates:
            return Pairing(problem='no depth image received yet')
        d_stamp, payload = min(candidates, key=lambda c: abs(c[0] - stamp_ns))
        if abs(d_stamp - stamp_ns) > slop_ns:
            return Pairing(problem=f'no depth within {slop_s:.3f} s of the image (nearest '
                                   f'{(d_stamp - stamp_ns) * 1e-9:+.3f} s)')
        return Pairing(payload=payload)
