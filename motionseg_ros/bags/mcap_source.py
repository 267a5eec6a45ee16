"""rosbag2 / plain MCAP files read with the ``mcap`` reader and rosbags' type system.

One code path for every MCAP quirk: ros2msg / ros2idl / ros1msg schemas, the ``ros1`` profile,
per-message zstd compression (``compression_mode: MESSAGE``, announced only in
``metadata.yaml``), ROS 1-style type names. Truncated or corrupt files raise ``BagError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

from motionseg_ros.bags.messages import (BagError, BagMessage, TopicInfo, bag_errors,
                                         normalize_type)

ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'


class McapSource:
    """rosbag2 / plain MCAP files read with the ``mcap`` reader and rosbags' type system."""

    def __init__(self, files: List[Path], compressed_messages: bool) -> None:
        from rosbags.typesys import Stores, get_typestore
        self.files = files
        self.compressed_messages = compressed_messages
        self.topics: Dict[str, TopicInfo] = {}
        self.formats: Dict[str, str] = {}
        self.stores = {'cdr': get_typestore(Stores.EMPTY), 'ros1': get_typestore(Stores.EMPTY)}
        self.start_ns: Optional[int] = None
        self.end_ns: Optional[int] = None
        self._fallback = get_typestore(Stores.LATEST)
        for path in files:
            self._scan(path)

    def _register(self, schema: Any, fmt: str) -> str:
        from rosbags.typesys import get_types_from_idl, get_types_from_msg
        name = normalize_type(schema.name)
        store = self.stores[fmt]
        if name in store.fielddefs:
            return name
        text = schema.data.decode('utf-8', 'replace')
        if schema.encoding in ('ros2msg', 'ros1msg'):
            types = get_types_from_msg(text, name)
        elif schema.encoding == 'ros2idl':
            sep = '=' * 80 + '\n'
            types = {}
            for part in (text.split(sep)[1:] if text.startswith(f'{sep}IDL: ') else [text]):
                idl = part.split('\n', 1)[1] if part.startswith('IDL: ') else part
                types.update(get_types_from_idl(idl))
        else:
            raise BagError(f'schema encoding {schema.encoding!r} of {schema.name} is not '
                           'supported')
        store.register({k: v for k, v in types.items() if k not in store.fielddefs})
        return name

    def _scan(self, path: Path) -> None:
        from mcap.reader import make_reader
        with bag_errors(f'{path}: truncated or corrupt MCAP file'):
            with open(path, 'rb') as fh:
                reader = make_reader(fh)
                profile = reader.get_header().profile
                summary = reader.get_summary()
                if summary is None:
                    raise BagError(f'{path}: MCAP file has no summary (truncated or written '
                                   'without an index)')
                for cid, ch in summary.channels.items():
                    schema = summary.schemas.get(ch.schema_id)
                    if schema is None:
                        continue
                    fmt = 'ros1' if (ch.message_encoding == 'ros1' or profile == 'ros1') \
                        else 'cdr'
                    if ch.message_encoding not in ('cdr', 'ros1'):
                        continue
                    name = self._register(schema, fmt)
                    count = 0
                    if summary.statistics is not None:
                        count = summary.statistics.channel_message_counts.get(cid, 0)
                    info = self.topics.get(ch.topic)
                    if info is None:
                        self.topics[ch.topic] = TopicInfo(ch.topic, name, count)
                        self.formats[ch.topic] = fmt
                    else:
                        info.count += count
                st = summary.statistics
                if st is not None and st.message_count:
                    self.start_ns = st.message_start_time if self.start_ns is None else min(
                        self.start_ns, st.message_start_time)
                    self.end_ns = st.message_end_time if self.end_ns is None else max(
                        self.end_ns, st.message_end_time)

    def messages(self, topics: Optional[Iterable[str]]) -> Iterator[BagMessage]:
        """Yield the messages of ``topics`` (all when None) in log-time order, file by file."""
        from mcap.reader import make_reader
        wanted = None if topics is None else [t for t in topics if t in self.topics]
        for path in self.files:
            with bag_errors(f'{path}: truncated or corrupt MCAP file'):
                with open(path, 'rb') as fh:
                    reader = make_reader(fh)
                    for schema, ch, message in reader.iter_messages(topics=wanted,
                                                                    log_time_order=True):
                        info = self.topics.get(ch.topic)
                        if info is None or schema is None:
                            continue
                        data = bytes(message.data)
                        # CDR starts with its encapsulation header, never the zstd magic
                        zstd = self.compressed_messages or self.formats[ch.topic] == 'cdr'
                        if zstd and data[:4] == ZSTD_MAGIC:
                            data = _zstd_decompress(data, path)
                        yield self._message(info, message.log_time, data)

    def _message(self, info: TopicInfo, log_ns: int, data: bytes) -> BagMessage:
        fmt = self.formats[info.name]
        store = self.stores[fmt]

        def decode() -> Any:
            try:
                if fmt == 'ros1':
                    return store.deserialize_ros1(data, info.msgtype)
                return store.deserialize_cdr(data, info.msgtype)
            except Exception as exc:  # noqa: BLE001
                raise BagError(f'cannot decode a {info.msgtype} message on {info.name} '
                               f'({exc})') from None
        return BagMessage(info.name, info.msgtype, int(log_ns), data, fmt, (decode,))


def _zstd_decompress(data: bytes, path: Path) -> bytes:
    try:
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    except Exception as exc:  # noqa: BLE001
        raise BagError(f'{path}: a zstd-compressed message does not decompress ({exc})') from None
