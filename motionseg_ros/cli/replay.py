"""``motionseg replay``: publish a bag's topics with rclpy at their recorded timing.

A stand-in for ``ros2 bag play`` where rosbag2 is absent: rosbag2 (MCAP, sqlite3) and ROS 1
bags, all topics or ``--topics``, ``--rate`` factor, ``--start-offset`` seconds into the bag,
``--loop`` (each loop's stamps shifted by the played span plus one period, so time keeps
increasing), ``--clock`` (rosgraph_msgs/Clock with the bag time, for use_sim_time), and
``--remap FROM:=TO`` (rcl remapping rules, given to rcl once as ``--ros-args -r``). Publishers
are reliable with depth 10 unless ``--best-effort``. Playing starts once every topic has a
subscriber, or after ``--wait-subscribers`` seconds (5; 0 = at once): a publisher's first
messages are lost until discovery matched its subscribers.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any, List

from motionseg_ros.cli import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` sub-command."""
    p = subparsers.add_parser(
        'replay', help='publish a bag with rclpy at its recorded timing (ros2 bag play)',
        description=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('bag', help='rosbag2 folder, .mcap, .db3 or ROS 1 .bag')
    p.add_argument('--rate', '-r', type=float, default=1.0, help='speed factor')
    p.add_argument('--start-offset', type=float, default=0.0, help='seconds to skip')
    p.add_argument('--loop', '-l', action='store_true')
    p.add_argument('--clock', action='store_true', help='publish /clock with the bag time')
    p.add_argument('--clock-hz', type=float, default=40.0)
    p.add_argument('--topics', nargs='+', default=None, help='only these topics')
    p.add_argument('--remap', nargs='+', default=[], metavar='FROM:=TO')
    p.add_argument('--best-effort', action='store_true', help='best-effort publishers')
    p.add_argument('--depth', type=int, default=10, help='publisher queue depth')
    p.add_argument('--wait-subscribers', type=float, default=5.0, metavar='SECONDS',
                   help='wait up to SECONDS (default 5; 0 = none) for a subscriber on every '
                        'topic before playing')
    p.add_argument('--allow-partial', action='store_true',
                   help='play the present files of a split bag with files missing')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Play the bag until it ends (or Ctrl-C); print what was published."""
    from motionseg_ros.bags.player import BagPlayer, parse_remaps
    from motionseg_ros.bags.reader import BagError
    try:
        import rclpy
    except ImportError as exc:
        raise CliError(f'rclpy is not available ({exc}); source env.sh') from None
    try:
        remap = parse_remaps(args.remap)
    except BagError as exc:
        raise CliError(str(exc)) from None
    # rcl gets only the remapping rules, once (not sys.argv: it would apply them again)
    ros_args = ['motionseg_replay', '--ros-args']
    for src, dst in remap.items():
        ros_args += ['-r', f'{src}:={dst}']
    _init_rclpy(rclpy, ros_args)
    node = rclpy.create_node('motionseg_replay')
    stop = threading.Event()
    # Ctrl-C / SIGTERM end the play between two messages; the summary is still printed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            player = BagPlayer(node, args.bag, topics=args.topics, rate=args.rate,
                               start_offset=args.start_offset, loop=args.loop,
                               clock=args.clock, clock_hz=args.clock_hz,
                               reliable=not args.best_effort, depth=args.depth,
                               allow_partial=args.allow_partial)
        except BagError as exc:
            raise CliError(str(exc)) from None
        for warning in _warnings(args) + player.warnings:
            print(f'warning: {warning}')
        _wait_for_subscribers(player, args.wait_subscribers)
        names = ', '.join(f'{t} -> {player.output_topic(t)}' if player.output_topic(t) != t
                          else t for t in player.topics)
        print(f'playing {args.bag} at x{args.rate:g}: {names}', flush=True)
        try:
            stats = player.play(stop)
        except KeyboardInterrupt:
            stop.set()
            stats = player.stats
        except BagError as exc:
            raise CliError(str(exc)) from None
        if not args.best_effort and not player.flush(timeout=5.0):
            print('warning: not every subscriber acknowledged the last messages within 5 s')
        counts = ', '.join(f'{t}: {n}' for t, n in stats.published.items())
        print(f'published {stats.total} messages ({counts}); max lateness '
              f'{stats.late_ms_max:.1f} ms')
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _init_rclpy(rclpy: Any, ros_args: List[str]) -> None:
    """Init rclpy with ``ros_args``; without its signal handlers (Ctrl-C ends the play)."""
    try:
        from rclpy.signals import SignalHandlerOptions
        options = {'signal_handler_options': SignalHandlerOptions.NO}
    except ImportError:  # pragma: no cover - older rclpy
        options = {}
    try:
        rclpy.init(args=ros_args, **options)
    except Exception as exc:  # noqa: BLE001 - rcl rejects a malformed rule (RCLError)
        raise CliError(f'bad --remap {ros_args[2:]}: {exc}') from None


def _wait_for_subscribers(player: Any, timeout: float) -> None:
    """Wait (bounded) until every published topic has a subscriber; say what happened."""
    if timeout <= 0:
        return
    print(f'waiting up to {timeout:g} s for a subscriber on every topic '
          '(--wait-subscribers 0: start at once)', flush=True)
    start = time.monotonic()
    if player.wait_for_subscribers(timeout=timeout):
        print(f'subscribers matched after {time.monotonic() - start:.1f} s', flush=True)
        return
    missing = [player.output_topic(t) for t in player.topics
               if player.publishers[t].get_subscription_count() < 1]
    print(f'warning: no subscriber on {", ".join(missing)} after {timeout:g} s; playing anyway',
          flush=True)


def _warnings(args: argparse.Namespace) -> list:
    from motionseg_ros.bags.reader import BagReader
    with BagReader(args.bag, allow_partial=args.allow_partial) as reader:
        return list(reader.warnings)
