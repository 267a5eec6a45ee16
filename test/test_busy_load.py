"""Competing busy processes for the benchmark: they burn CPU while it runs and are gone after.

The processes are real (spawned Python loops); "burns CPU" is read from their /proc CPU times,
"gone" from /proc after the block or the script ends — on success, on an exception inside the
benchmarked code, and on Ctrl-C. No wall-clock figure is asserted (the waits only bound a test
that would otherwise hang).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from motionseg_ros.evaluation.busy_load import BusyLoad, cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'benchmark_pipeline.py'
DEMO = ROOT / 'motionseg_ros' / 'assets' / 'demo.mp4'
GEOMETRIC = ROOT / 'config' / 'geometric.yaml'


def wait_cpu(pids: List[int], seconds: float, limit_s: float = 120.0) -> List[float]:
    """Wait until every process has used ``seconds`` of CPU; return their CPU times."""
    end = time.monotonic() + limit_s
    while True:
        used = [cpu_seconds(p) for p in pids]
        if all(u is not None and u >= seconds for u in used) or time.monotonic() > end:
            return used
        time.sleep(0.05)


def assert_gone(pids: List[int]) -> None:
    """No process with these ids runs any more (no /proc entry, or only a zombie's)."""
    assert pids
    assert [cpu_seconds(p) for p in pids] == [None] * len(pids)


def test_busy_load_starts_k_processes_that_consume_cpu_and_stops_them():
    with BusyLoad(2) as load:
        pids = load.pids
        assert len(set(pids)) == 2
        used = wait_cpu(pids, 0.3)
        assert all(u is not None and u >= 0.3 for u in used), used
        assert '2 busy CPU-bound processes' in load.describe()
    assert_gone(pids)
    assert len(load.cpu_used) == 2 and min(load.cpu_used) >= 0.3
    assert load.pids == []


def test_busy_load_stops_its_processes_when_the_block_raises():
    with pytest.raises(RuntimeError, match='benchmarked code failed'):
        with BusyLoad(1) as load:
            pids = load.pids
            assert wait_cpu(pids, 0.2)[0] >= 0.2
            raise RuntimeError('benchmarked code failed')
    assert_gone(pids)


def test_busy_load_zero_runs_nothing_and_negative_is_refused():
    with BusyLoad(0) as load:
        assert load.pids == [] and load.describe() == 'no busy processes'
    with pytest.raises(ValueError):
        BusyLoad(-1)


def busy_pids(line: str) -> List[int]:
    """The pids named in the benchmark's machine line."""
    m = re.search(r'busy CPU-bound processes \(pids ([\d, ]+)\)', line)
    assert m, line
    return [int(p) for p in m.group(1).split(',')]


def test_benchmark_busy_cores_option_runs_the_load_and_stops_it():
    out = subprocess.run([sys.executable, str(SCRIPT), str(DEMO), '--config', str(GEOMETRIC),
                          '--frames', '4', '--warmup', '1', '--busy-cores', '2'],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    machine = next(line for line in out.splitlines() if line.startswith('machine:'))
    pids = busy_pids(machine)
    assert len(pids) == 2
    m = re.search(r'busy processes ran: 2, CPU s each: ([\d.]+), ([\d.]+); all stopped', out)
    assert m, out
    assert min(float(m.group(1)), float(m.group(2))) > 0
    assert 'end to end:' in out and 'peak RSS:' in out
    assert_gone(pids)


def test_benchmark_stops_the_load_when_the_benchmarked_code_raises(tmp_path):
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'not a video')
    res = subprocess.run([sys.executable, str(SCRIPT), str(bad), '--config', str(GEOMETRIC),
                          '--frames', '4', '--busy-cores', '1'],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    machine = next(line for line in res.stdout.splitlines() if line.startswith('machine:'))
    assert_gone(busy_pids(machine))


def test_benchmark_stops_the_load_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(DEMO), '--config', str(GEOMETRIC),
                             '--frames', '100000', '--busy-cores', '1'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ''
        while not line.startswith('machine:'):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        pids = busy_pids(line)
        assert wait_cpu(pids, 0.2)[0] >= 0.2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and 'KeyboardInterrupt' in err
    assert_gone(pids)


def test_package_sets_a_passive_openmp_wait_policy_unless_the_user_chose_one():
    code = ('import os, motionseg_ros, torch; torch.ones(64, 64) @ torch.ones(64, 64); '
            'print(os.environ["OMP_WAIT_POLICY"])')
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ['PASSIVE']
    out = subprocess.run([sys.executable, '-c', code], env={**env, 'OMP_WAIT_POLICY': 'ACTIVE'},
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ['ACTIVE']
