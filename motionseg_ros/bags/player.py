"""Publish a bag's messages with rclpy at their recorded timing: ``ros2 bag play`` without rosbag2.

ROS 2 bags (CDR) are published as the recorded bytes (``publish_raw``): exact, fast, and generic
for every type whose Python message package is importable. ROS 1 bags are deserialized and
copied field by field into the rclpy message class (``header.seq`` and other fields that ROS 2
lacks are dropped). ``/clock`` (rosgraph_msgs/Clock) carries the bag time when asked, published
before each message and at ``clock_hz`` while waiting.
"""

from __future__ import annotations

import array
import functools
import importlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from motionseg_ros.bags.reader import BagError, BagMessage, BagReader

PathLike = Union[str, Path]


def message_class(msgtype: str) -> Any:
    """Return the rclpy class of ``pkg/msg/Name``; BagError when its package is missing."""
    parts = msgtype.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3:
        raise BagError(f'cannot map type {msgtype!r} to a Python message class')
    pkg, sub, name = parts
    try:
        module = importlib.import_module(f'{pkg}.{sub}')
        return getattr(module, name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f'message type {msgtype} is not available to rclpy ({exc}); install '
                       f'its interface package or leave the topic out with --topics') from None


_ARRAY_CODES = {'octet': 'B', 'uint8': 'B', 'char': 'B', 'int8': 'b', 'uint16': 'H',
                'int16': 'h', 'uint32': 'I', 'int32': 'i', 'uint64': 'Q', 'int64': 'q',
                'float': 'f', 'float32': 'f', 'double': 'd', 'float64': 'd'}


def copy_fields(src: Any, dst_cls: Any) -> Any:
    """Build an rclpy message of ``dst_cls`` from a rosbags dataclass, recursively by name.

    Fields the source lacks keep their defaults; fields only the source has (``seq``) are
    dropped.
    """
    dst = dst_cls()
    types = dst_cls.get_fields_and_field_types()
    # ROS 1 spells some fields differently (CameraInfo D, K, R, P): match case-insensitively
    src_names = {n.lower(): n for n in getattr(src, '__dataclass_fields__', {})}
    for name, typ in types.items():
        src_name = name if hasattr(src, name) else src_names.get(name.lower())
        if src_name is None:
            continue
        value = getattr(src, src_name)
        current = getattr(dst, name)
        if hasattr(current, 'get_fields_and_field_types'):
            setattr(dst, name, copy_fields(value, type(current)))
            continue
        if typ.startswith('sequence<') or typ.endswith(']'):
            elem = typ[len('sequence<'):].split(',')[0].rstrip('>') if typ.startswith(
                'sequence<') else typ.split('[')[0]
            code = _ARRAY_CODES.get(elem)
            if isinstance(current, np.ndarray):            # fixed-size numeric array
                setattr(dst, name, np.asarray(value, dtype=current.dtype))
            elif code is not None and isinstance(current, array.array):
                arr = np.asarray(value)
                setattr(dst, name, array.array(code, arr.astype(
                    np.dtype(code) if code not in 'bB' else arr.dtype, copy=False).tobytes()))
            elif isinstance(value, (list, tuple, np.ndarray)) and len(value) and hasattr(
                    value[0], '__dataclass_fields__'):
                sub_cls = _sequence_class(dst_cls, name)
                setattr(dst, name, [copy_fields(v, sub_cls) for v in value])
            else:
                setattr(dst, name, list(value) if isinstance(value, np.ndarray) else value)
            continue
        if isinstance(value, np.generic):
            value = value.item()
        setattr(dst, name, value)
    return dst


def _sequence_class(cls: Any, name: str) -> Any:
    """Message class of the elements of sequence field ``name`` of ``cls``."""
    slot_types = getattr(cls, 'SLOT_TYPES', ())
    fields = list(cls.get_fields_and_field_types())
    spec = slot_types[fields.index(name)]
    value_type = getattr(spec, 'value_type', spec)
    ns = getattr(value_type, 'namespaces', None)
    return message_class('/'.join([*ns, value_type.name]))


@dataclass
class PlayStats:
    """What a play published."""

    published: Dict[str, int] = field(default_factory=dict)
    first_wall: Optional[float] = None
    last_wall: Optional[float] = None
    late_ms_max: float = 0.0
    loops: int = 0

    @property
    def total(self) -> int:
        """All messages published."""
        return sum(self.published.values())


class BagPlayer:
    """Publishes a bag through an rclpy node (the caller owns the node and its spinning)."""

    def __init__(self, node: Any, bag: PathLike, topics: Optional[Iterable[str]] = None,
                 rate: float = 1.0, start_offset: float = 0.0, loop: bool = False,
                 clock: bool = False, clock_hz: float = 40.0, reliable: bool = True,
                 depth: int = 10, allow_partial: bool = False) -> None:
        """Open the bag and create one publisher per topic (and /clock when asked)."""
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy
        if not rate > 0:
            raise BagError(f'rate must be positive, got {rate}')
        if start_offset < 0:
            raise BagError(f'start offset must be >= 0, got {start_offset}')
        self.node = node
        self.path = Path(bag)
        self.rate = float(rate)
        self.start_offset_ns = int(round(start_offset * 1e9))
        self.loop = loop
        self.clock_period = 1.0 / clock_hz if clock_hz > 0 else None
        self.allow_partial = allow_partial
        with BagReader(self.path, allow_partial=allow_partial) as reader:
            all_topics = reader.topics
            self.start_ns = reader.start_ns
        wanted = list(topics) if topics else sorted(all_topics)
        unknown = [t for t in wanted if t not in all_topics]
        if unknown:
            raise BagError(f'{self.path}: no topic(s) {unknown}; the bag has '
                           f'{sorted(all_topics)}')
        self.warnings: List[str] = []
        self.classes = {}
        for t in list(wanted):
            try:
                self.classes[t] = message_class(all_topics[t].msgtype)
            except BagError as exc:
                if topics:   # asked for by name: an error
                    raise
                # all topics: leave out those without a ROS 2 type here (ROS 1 rosgraph_msgs/Log)
                self.warnings.append(f'{t} left out: {exc}')
                wanted.remove(t)
        if not wanted:
            raise BagError(f'{self.path}: no topic with a message type available to rclpy')
        self.topics = wanted
        self.types = {t: all_topics[t].msgtype for t in wanted}
        qos = QoSProfile(depth=int(depth), reliability=(
            QoSReliabilityPolicy.RELIABLE if reliable else QoSReliabilityPolicy.BEST_EFFORT))
        self.publishers = {t: node.create_publisher(self.classes[t], t, qos)
                           for t in wanted}
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock
            self.clock_pub = node.create_publisher(Clock, '/clock', 10)
            self._clock_cls = Clock
        self.stats = PlayStats({t: 0 for t in wanted})

    def output_topic(self, topic: str) -> str:
        """Topic name a bag topic is published on (after remapping)."""
        return self.publishers[topic].topic_name

    def wait_for_subscribers(self, topics: Optional[Iterable[str]] = None, count: int = 1,
                             timeout: float = 10.0) -> bool:
        """Block until each of ``topics`` (default: all) has ``count`` matched subscribers."""
        deadline = time.monotonic() + timeout
        topics = list(topics) if topics is not None else self.topics
        while time.monotonic() < deadline:
            if all(self.publishers[t].get_subscription_count() >= count for t in topics):
                return True
            time.sleep(0.02)
        return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until reliable subscribers acknowledged everything sent (before exiting).

        Without it the last messages of a play can be lost when the process ends right after
        publishing them.
        """
        from rclpy.duration import Duration
        deadline = time.monotonic() + timeout
        ok = True
        for pub in self.publishers.values():
            left = max(0.0, deadline - time.monotonic())
            try:
                ok = pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))) and ok
            except Exception:  # noqa: BLE001 - best-effort publishers / invalid context
                ok = False
        return ok

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is None:
            return
        from builtin_interfaces.msg import Time
        msg = self._clock_cls()
        msg.clock = Time(sec=int(bag_ns // 1_000_000_000), nanosec=int(bag_ns % 1_000_000_000))
        self.clock_pub.publish(msg)

    def _payload(self, m: BagMessage, offset_ns: int = 0) -> Any:
        """Return the recorded bytes when they can go out as they are, else a message."""
        if m.raw_format == 'cdr' and not offset_ns:
            return m.raw
        if m.raw_format == 'cdr':
            from rclpy.serialization import deserialize_message
            msg = deserialize_message(m.raw, self.classes[m.topic])
        else:
            msg = copy_fields(m.msg, self.classes[m.topic])
        return shift_stamps(msg, offset_ns) if offset_ns else msg

    def play(self, stop: Optional[threading.Event] = None,
             on_publish: Optional[Callable[[BagMessage, float], None]] = None) -> PlayStats:
        """Publish every message at its recorded time (scaled by ``rate``); return the counts.

        ``on_publish(message, wall_time)`` is called right after each publish. ``stop`` ends
        the play early (also between loops). With ``loop``, loop k is shifted by k times the
        played span plus one period, in timing, in ``/clock`` and in every stamp of the
        messages (``builtin_interfaces/Time`` fields), so that time never goes backwards.
        """
        timing = _Timing()
        while True:
            self._play_once(stop, on_publish, timing)
            self.stats.loops += 1
            if not self.loop or (stop is not None and stop.is_set()) or timing.first_ns is None:
                return self.stats
            timing.offset_ns = self.stats.loops * timing.loop_ns(self.stats)

    def _play_once(self, stop: Optional[threading.Event],
                   on_publish: Optional[Callable[[BagMessage, float], None]],
                   timing: '_Timing') -> None:
        if self.start_ns is None:
            return
        first_ns = self.start_ns + self.start_offset_ns
        with BagReader(self.path, allow_partial=self.allow_partial) as reader:
            for m in reader.messages(self.topics):
                if m.log_ns < first_ns:
                    continue
                if timing.t0 is None:
                    timing.t0, timing.first_ns = time.monotonic(), m.log_ns
                if not self.stats.loops:
                    timing.last_ns = m.log_ns
                bag_ns = m.log_ns + timing.offset_ns
                target = timing.t0 + (bag_ns - timing.first_ns) / 1e9 / self.rate
                if not self._wait_until(target, timing, stop):
                    return
                self._publish_clock(bag_ns)
                late = (time.monotonic() - target) * 1e3
                self.stats.late_ms_max = max(self.stats.late_ms_max, late)
                self.publishers[m.topic].publish(self._payload(m, timing.offset_ns))
                wall = time.time()
                if self.stats.first_wall is None:
                    self.stats.first_wall = wall
                self.stats.last_wall = wall
                self.stats.published[m.topic] += 1
                if on_publish is not None:
                    on_publish(m, wall)

    def _wait_until(self, target: float, timing: '_Timing',
                    stop: Optional[threading.Event]) -> bool:
        """Sleep until monotonic ``target`` publishing /clock meanwhile; False when stopped."""
        while True:
            if (stop is not None and stop.is_set()) or not self.node.context.ok():
                return False
            now = time.monotonic()
            wait = target - now
            if wait <= 0:
                return True
            if self.clock_pub is not None and self.clock_period:
                self._publish_clock(timing.first_ns + int((now - timing.t0) * self.rate * 1e9))
                time.sleep(min(wait, self.clock_period))
            else:
                time.sleep(min(wait, 0.05))


@dataclass
class _Timing:
    """Bag time <-> wall time of a play, kept across loops."""

    t0: Optional[float] = None          # monotonic time of the first message
    first_ns: Optional[int] = None      # its log time
    last_ns: Optional[int] = None       # log time of the first loop's last message
    offset_ns: int = 0                  # added to log times and stamps in this loop

    def loop_ns(self, stats: PlayStats) -> int:
        """Played span plus one period (span over the busiest topic's intervals; 1 s alone)."""
        span = self.last_ns - self.first_ns
        count = max(stats.published.values()) // max(stats.loops, 1)
        return span + (span // (count - 1) if count > 1 and span > 0 else 1_000_000_000)


def shift_stamps(msg: Any, offset_ns: int) -> Any:
    """Add ``offset_ns`` to every ``builtin_interfaces/Time`` in an rclpy message (in place)."""
    from builtin_interfaces.msg import Time
    _shift(msg, offset_ns, Time)
    return msg


def _shift(msg: Any, offset_ns: int, time_cls: Any) -> None:
    if isinstance(msg, time_cls):
        total = msg.sec * 1_000_000_000 + msg.nanosec + offset_ns
        msg.sec, msg.nanosec = int(total // 1_000_000_000), int(total % 1_000_000_000)
    elif isinstance(msg, list):
        for item in msg:
            _shift(item, offset_ns, time_cls)
    elif hasattr(msg, 'get_fields_and_field_types'):
        for name in _message_fields(type(msg)):
            _shift(getattr(msg, name), offset_ns, time_cls)


@functools.lru_cache(maxsize=None)
def _message_fields(cls: Any) -> Tuple[str, ...]:
    """Fields of ``cls`` holding a message or a sequence of messages (not plain data arrays).

    Cached per class: ``get_fields_and_field_types`` copies its dict on every call, and
    ``--loop`` shifts every message it publishes.
    """
    return tuple(name for name, typ in cls.get_fields_and_field_types().items() if '/' in typ)


def parse_remaps(items: Optional[List[str]]) -> Dict[str, str]:
    """``['/a:=/b', ...]`` -> ``{'/a': '/b'}``; BagError on a malformed item."""
    out = {}
    for item in items or []:
        src, sep, dst = item.partition(':=')
        if not sep or not src or not dst:
            raise BagError(f'bad remap {item!r}: expected FROM:=TO')
        out[src] = dst
    return out
