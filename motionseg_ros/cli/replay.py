"""``motionseg replay``: publish a bag's topics with rclpy at their recorded timing.

A stand-in for ``ros2 bag play`` where rosbag2 is absent: rosbag2 (MCAP, sqlite3) and ROS 1
bags, all topics or ``--topics``, ``--rate`` factor, ``--start-offset`` seconds into the bag,
``--loop``, ``--clock`` (rosgraph_msgs/Clock with the bag time, for use_sim_time), and
``--remap FROM:=TO``. Publishers are reliable with depth 10 unless ``--best-effort``.
"""

from __future__ import annotations

import argparse
import signal
import threading

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
    p.add_argument('--wait-subscribers', type=float, default=0.0, metavar='SECONDS',
                   help='wait up to SECONDS for a subscriber on every topic before playing')
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
    try:   # Ctrl-C must end the play, not invalidate the context under a publish
        from rclpy.signals import SignalHandlerOptions
        rclpy.init(args=None, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # pragma: no cover - older rclpy
        rclpy.init(args=None)
    node = rclpy.create_node('motionseg_replay')
    stop = threading.Event()
    # Ctrl-C / SIGTERM end the play between two messages; the summary is still printed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            player = BagPlayer(node, args.bag, topics=args.topics, remap=remap, rate=args.rate,
                               start_offset=args.start_offset, loop=args.loop,
                               clock=args.clock, clock_hz=args.clock_hz,
                               reliable=not args.best_effort, depth=args.depth,
                               allow_partial=args.allow_partial)
        except BagError as exc:
            raise CliError(str(exc)) from None
        for warning in _warnings(args) + player.warnings:
            print(f'warning: {warning}')
        if args.wait_subscribers > 0 and not player.wait_for_subscribers(
                timeout=args.wait_subscribers):
            print(f'warning: no subscriber on some topics after {args.wait_subscribers:g} s; '
                  'playing anyway')
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


def _warnings(args: argparse.Namespace) -> list:
    from motionseg_ros.bags.reader import BagReader
    with BagReader(args.bag, allow_partial=args.allow_partial) as reader:
        return list(reader.warnings)
