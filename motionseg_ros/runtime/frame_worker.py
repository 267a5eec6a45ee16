"""A one-slot newest-frame buffer drained by one worker thread, with exact frame accounting.

Why: inference takes tens of milliseconds to seconds per frame, so whoever receives frames (a
ROS subscription callback) must never run it. :meth:`FrameWorker.offer` only stores the item in
a one-slot buffer (a newer item replaces an unprocessed older one, which is counted as
dropped) and wakes the worker. At every instant::

    received = processed + dropped + rejected + in_flight

where ``in_flight`` (0 or 1 item being processed, plus 0 or 1 waiting) is 0 once the input
stops and the worker has caught up.
"""

from __future__ import annotations

import collections
import threading
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

#: what a handler returns for an item it refuses: (reason code, text for the log)
Rejection = Tuple[str, str]


class FrameWorker:
    """Run ``handle(item)`` on the newest offered item, on a thread of its own.

    ``handle`` returns None when the item was processed, or a :data:`Rejection`. An exception
    in ``handle`` counts the item as rejected (code ``pipeline_error``) and is passed to
    ``on_error`` with its traceback; the worker keeps running. Rejections are passed to
    ``on_rejected`` outside the lock.
    """

    def __init__(self, handle: Callable[[Any], Optional[Rejection]],
                 on_rejected: Callable[[str, str], None],
                 on_error: Callable[[str], None], name: str = 'frame_worker') -> None:
        """Prepare the worker; :meth:`start` runs it."""
        self._handle, self._on_rejected, self._on_error = handle, on_rejected, on_error
        self._name = name
        self._lock = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._busy = 0
        self._counts: Dict[str, int] = collections.Counter()
        self._reasons: Dict[str, int] = collections.Counter()
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start (or restart after :meth:`stop`) the worker thread; counters are kept."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self.stopping,),
                                        name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.5) -> bool:
        """Stop the worker and drop a waiting item; return False if it is still busy.

        Waits up to ``timeout`` s for the item in progress; a worker still busy after that
        finishes in the background and counts that item as dropped.
        """
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        self.drop_pending()
        return thread is None or not thread.is_alive()

    def offer(self, item: Any) -> None:
        """Count ``item`` as received and make it the one the worker takes next."""
        with self._lock:
            self._counts['received'] += 1
            if self._has_pending:
                self._counts['dropped'] += 1
            self._pending, self._has_pending = item, True
            self._lock.notify()

    def drop_pending(self) -> None:
        """Drop (and count) the waiting item, if any."""
        with self._lock:
            if self._has_pending:
                self._pending, self._has_pending = None, False
                self._counts['dropped'] += 1

    # ------------------------------------------------------------------ state
    def counters(self) -> Dict[str, int]:
        """Return a consistent snapshot: received, processed, dropped, rejected, in_flight."""
        with self._lock:
            c = self._counts
            return {'received': c['received'], 'processed': c['processed'],
                    'dropped': c['dropped'], 'rejected': c['rejected'],
                    'in_flight': self._busy + (1 if self._has_pending else 0)}

    def reasons(self) -> Dict[str, int]:
        """Return the rejection counts by reason code."""
        with self._lock:
            return dict(self._reasons)

    # ------------------------------------------------------------------ worker
    def _take(self, stop: threading.Event) -> Tuple[bool, Any]:
        with self._lock:
            while not self._has_pending and not stop.is_set():
                self._lock.wait(0.2)
            if stop.is_set():
                return False, None
            item, self._pending, self._has_pending = self._pending, None, False
            self._busy = 1
            return True, item

    def _run(self, stop: threading.Event) -> None:
        while True:
            ok, item = self._take(stop)
            if not ok:
                return
            rejected: Optional[Rejection] = None
            try:
                rejected = self._handle(item)
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                rejected = ('shutdown', '') if stop.is_set() else \
                    ('pipeline_error', f'pipeline error: {exc!r}')
                if not stop.is_set():  # after stop: publishing on torn-down outputs
                    self._on_error(traceback.format_exc())
            with self._lock:  # one update, so the counters always add up
                self._busy = 0
                if rejected is not None and rejected[0] == 'shutdown':
                    self._counts['dropped'] += 1
                    return
                if rejected is None:
                    self._counts['processed'] += 1
                else:
                    self._counts['rejected'] += 1
                    self._reasons[rejected[0]] += 1
            if rejected is not None:
                self._on_rejected(*rejected)
