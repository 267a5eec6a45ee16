"""Process entry of ``segment_node``: start, spin, and a clean stop on SIGINT / SIGTERM.

Why not rclpy's own signal handling: Ctrl-C on ``ros2 launch`` signals the whole process group
and launch then forwards SIGINT once more, so the node gets two SIGINTs. rclpy turns the first
into a context shutdown plus ``KeyboardInterrupt`` and the second into another
``KeyboardInterrupt`` wherever the main thread happens to be in the shutdown sequence (joining
the worker, destroying the node): a traceback, or an abort (``terminate called without an
active exception``) from its signal thread. Here the handlers only set a flag: the main loop
spins in 0.1 s slices, sees the flag, and runs the shutdown sequence once, to the end, with
later signals ignored (also during interpreter exit). Exit code 0 after a signal, 1 when the
node cannot start.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from typing import Any, Callable, List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

#: longest the main loop waits for work before looking at the stop flag (s)
SPIN_SLICE_S = 0.1
#: a shutdown still running after this many seconds prints every thread's stack to stderr
#: (a hung stop says where it hangs)
STOP_STACKS_S = 15.0


class StopSignals:
    """Turn SIGINT / SIGTERM into a flag (the first one) and ignore the following ones."""

    def __init__(self) -> None:
        """Install the handlers (call from the main thread)."""
        self.requested = threading.Event()
        self._signals = (signal.SIGINT, signal.SIGTERM)
        for sig in self._signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested.set()

    def ignore_further(self) -> None:
        """Ignore SIGINT / SIGTERM from now on (the shutdown sequence has begun).

        Ignored, not just flagged: at interpreter exit Python puts its own handlers back to
        the default action, and a late second SIGINT then kills the process (exit -2).
        """
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)


def _start(node: Any, setup_error: type) -> None:
    if not node.autostart:
        node.get_logger().info('autostart is false: waiting for lifecycle transitions')
        return
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        raise setup_error('configure failed (reason logged above)')
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        raise setup_error('activate failed (reason logged above)')


def _final_line(node: Any) -> None:
    """Stop the node and log its final counters, naming the node by its full name."""
    counts = node.stop()
    if node.worker_stuck:
        node.get_logger().error('the worker did not finish its frame: exiting without it')
    line = ('final counters: received={received} processed={processed} dropped={dropped} '
            'rejected={rejected}'.format(**counts) + f' ({node.get_fully_qualified_name()})')
    if rclpy.ok():
        node.get_logger().info(line)
    else:  # the context is down (shut down from outside): rosout is gone
        print(f'[INFO] [{node.get_fully_qualified_name()}]: {line}', file=sys.stderr,
              flush=True)


def run(node_factory: Callable[[], Any], setup_error: type,
        args: Optional[List[str]] = None) -> int:
    """Create the node, start it, spin until a signal; return the process exit code."""
    signals = StopSignals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    try:
        node = node_factory()
        _start(node, setup_error)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not signals.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
    except setup_error as exc:
        rclpy.logging.get_logger('segment_node').fatal(str(exc))
        code = 1
    except ExternalShutdownException:
        pass
    finally:
        signals.ignore_further()
        faulthandler.dump_traceback_later(STOP_STACKS_S, exit=False)
        if node is not None:
            _final_line(node)
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
    if node is not None and node.worker_stuck:  # leaving with native code still running on
        sys.stdout.flush()                      # the worker thread aborts in C++ destructors
        sys.stderr.flush()
        os._exit(code)
    return code
