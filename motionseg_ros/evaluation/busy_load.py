"""CPU-bound competing processes, to benchmark the pipeline on a machine that is busy elsewhere.

A robot's computer runs more than the segmentation: ``BusyLoad(k)`` keeps ``k`` cores busy
with pure-Python loops in separate processes while the benchmarked code runs, and stops them
(terminate, join, kill if needed) when its ``with`` block ends, also on an exception or Ctrl-C.
The children ignore SIGINT (the parent stops them) and exit by themselves when their parent
dies, so a killed benchmark leaves no spinning orphan.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from typing import Any, List, Optional


def _spin(parent: int) -> None:
    """Burn CPU until terminated or until the parent process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    x = 0
    while os.getppid() == parent:
        for i in range(200_000):
            x = (x + i) & 0xFFFF


def cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of a live process from /proc (None when it is gone)."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat.rsplit(')', 1)[1].split()  # after "pid (comm)": state is field 3
    if fields[0] == 'Z':
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class BusyLoad:
    """``with BusyLoad(k) as load:`` runs ``k`` busy processes for the block (0: none)."""

    def __init__(self, processes: int) -> None:
        """Plan ``processes`` competing CPU-bound processes (started by :meth:`start`)."""
        if processes < 0:
            raise ValueError(f'busy processes must be >= 0, got {processes}')
        self.processes = int(processes)
        self._procs: List[Any] = []
        self.cpu_used: List[float] = []  # CPU seconds each consumed, filled by stop()

    @property
    def pids(self) -> List[int]:
        """Process ids of the running busy processes."""
        return [p.pid for p in self._procs]

    def start(self) -> 'BusyLoad':
        """Start the processes (spawned: no copy of the parent's torch or OpenCV state)."""
        ctx = mp.get_context('spawn')
        try:
            for i in range(self.processes):
                proc = ctx.Process(target=_spin, args=(os.getpid(),), daemon=True,
                                   name=f'busy-{i}')
                proc.start()
                self._procs.append(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate and join every process (SIGKILL for one that does not end)."""
        procs, self._procs = self._procs, []
        self.cpu_used = [cpu_seconds(p.pid) or 0.0 for p in procs]
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()
            p.close()

    def describe(self) -> str:
        """One line for a benchmark's machine line."""
        if not self.processes:
            return 'no busy processes'
        return f'{self.processes} busy CPU-bound processes (pids {", ".join(map(str, self.pids))})'

    def __enter__(self) -> 'BusyLoad':
        """Start the processes."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the processes, whatever ended the block."""
        self.stop()
