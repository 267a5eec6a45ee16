"""Read messages and images from ROS bags without ROS: rosbag2 (MCAP, sqlite3) and ROS 1.

Real bags are messy; this reader copes with, or names clearly, what recorders produce:

- split rosbag2 bags with files missing: ``BagError`` listing them, or, with
  ``allow_partial=True``, the files that are there;
- per-message zstd compression (``compression_mode: MESSAGE``, announced only in
  ``metadata.yaml``): payloads are decompressed before decoding;
- ROS 1-style type names in a ROS 2 bag (``sensor_msgs/Image``) map to ``sensor_msgs/msg/Image``;
- MCAP files with the ``ros1`` profile are decoded with the ROS 1 deserializer;
- images: row padding (``step``), ``is_bigendian`` (meaningless on 8-bit data, honoured on 16-bit),
  CompressedImage ``format`` strings with trailing spaces and the ``"<enc>; <codec> compressed"``
  convention, ``compressedDepth`` payloads (12-byte header then PNG), empty ``frame_id``;
- header stamps and log (receive) times are both reported: they often differ in re-recorded bags.

A truncated or corrupt file raises ``BagError`` naming it. MCAP goes through the ``mcap`` reader
plus rosbags' type system (one code path for every MCAP quirk); sqlite3 and ROS 1 bags go through
``rosbags.highlevel.AnyReader``.
"""

from __future__ import annotations

import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

import cv2
import numpy as np
import yaml

PathLike = Union[str, Path]
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
DEPTH_ENCODINGS = ('16UC1', '32FC1', 'mono16', '16SC1')


class BagError(Exception):
    """A bag that cannot be read (missing, truncated, corrupt, unsupported): names the file."""


def normalize_type(name: str) -> str:
    """ROS 2 type name: ``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image``."""
    name = name.strip()
    parts = name.split('/')
    if len(parts) == 2:
        return f'{parts[0]}/msg/{parts[1]}'
    return name


@dataclass
class TopicInfo:
    """One topic of a bag."""

    name: str
    msgtype: str       # ROS 2 style name
    count: int


@dataclass
class BagMessage:
    """One message in log-time order; ``raw`` is CDR (ROS 2) or ROS 1 serialized bytes."""

    topic: str
    msgtype: str
    log_ns: int
    raw: bytes
    raw_format: str    # 'cdr' | 'ros1'
    _decode: Any = None

    @property
    def msg(self) -> Any:
        """Return the deserialized message (a rosbags dataclass), decoded on first use."""
        if not isinstance(self._decode, tuple):
            return self._decode
        fn, = self._decode
        self._decode = fn()
        return self._decode


@dataclass
class BagImage:
    """One decoded image message."""

    topic: str
    log_ns: int
    stamp_ns: int
    frame_id: str
    image: np.ndarray   # BGR uint8 (H, W, 3) for colour / mono; raw values for depth
    encoding: str       # 'bgr8', 'mono8' (bgr=False), or the depth encoding ('16UC1', ...)
    msgtype: str

    @property
    def is_depth(self) -> bool:
        """Tell whether this is a depth / 16-bit image (values kept as recorded)."""
        return self.encoding not in ('bgr8', 'mono8')


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time-like object (``sec``/``nanosec``)."""
    sec = getattr(stamp, 'sec', None)
    if sec is None:
        sec = getattr(stamp, 'secs', 0)
    nsec = getattr(stamp, 'nanosec', None)
    if nsec is None:
        nsec = getattr(stamp, 'nsecs', 0)
    return int(sec) * 1_000_000_000 + int(nsec)


# ------------------------------------------------------------------------------------ images
def _as_bytes(data: Any) -> bytes:
    if isinstance(data, np.ndarray):
        return data.tobytes()
    return bytes(data)


def _to_bgr(img: np.ndarray, encoding: str) -> np.ndarray:
    from rosbags.image.image import convert_color
    if encoding == 'bgr8':
        return img
    if encoding == 'mono8' or (img.ndim == 2 and img.dtype == np.uint8):
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(convert_color(img, encoding, 'bgr8'))


def decode_raw_image(msg: Any, bgr: bool = True) -> tuple:
    """(image, encoding) of a sensor_msgs/Image: BGR uint8 for 8-bit colour/mono, else raw.

    With ``bgr=False`` single-channel 8-bit images (label images) stay 2-D ``mono8``.
    """
    from rosbags.image.image import to_cvtype
    encoding = str(msg.encoding).strip()
    try:
        _, _, typestr, nchan = to_cvtype(encoding)
    except Exception as exc:  # noqa: BLE001 - rosbags raises its own ImageFormatError
        raise ValueError(f'unsupported image encoding {encoding!r}') from exc
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(typestr)
    row = w * nchan * dtype.itemsize
    data = _as_bytes(msg.data)
    if h == 0 or w == 0:
        raise ValueError(f'empty image {w}x{h}')
    if step < row or len(data) < step * (h - 1) + row:
        raise ValueError(f'image data too short: {len(data)} bytes for {w}x{h} {encoding} '
                         f'(step {step})')
    buf = np.frombuffer(data, np.uint8, count=step * (h - 1) + row)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(step, 1))
    img = np.ascontiguousarray(rows).view(dtype)
    img = img.reshape((h, w) if nchan == 1 else (h, w, nchan))
    # is_bigendian only matters for multi-byte samples (drivers set it on 8-bit data too).
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != (sys.byteorder == 'big'):
        img = img.byteswap()
    if not bgr and dtype == np.uint8 and nchan == 1:
        return img, 'mono8'
    if dtype == np.uint8 and encoding not in DEPTH_ENCODINGS and nchan in (1, 2, 3, 4):
        return _to_bgr(img, encoding), 'bgr8'
    return img, encoding


def decode_compressed_image(msg: Any, bgr: bool = True) -> tuple:
    """(image, encoding) of a sensor_msgs/CompressedImage (jpeg, png, compressedDepth)."""
    fmt = str(msg.format).strip()
    data = _as_bytes(msg.data)
    orig = fmt.split(';')[0].strip() if ';' in fmt else ''
    if 'compresseddepth' in fmt.lower():
        if len(data) < 12 + len(PNG_MAGIC) or data[12:20] != PNG_MAGIC:
            raise ValueError(f'compressedDepth payload without its 12-byte header + PNG '
                             f'(format {fmt!r})')
        _, quant_a, quant_b = struct.unpack('<iff', data[:12])
        img = cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError('compressedDepth PNG does not decode')
        if orig == '32FC1':
            inv = img.astype(np.float32)
            depth = np.zeros_like(inv)
            ok = inv > 0
            depth[ok] = quant_a / (inv[ok] - quant_b)
            return depth, '32FC1'
        return img, orig or '16UC1'
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'compressed image ({fmt!r}, {len(data)} bytes) does not decode')
    if img.dtype != np.uint8:
        return img, orig if orig in DEPTH_ENCODINGS else ('16UC1' if img.ndim == 2 else orig)
    if img.ndim == 2:
        if not bgr:
            return img, 'mono8'
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), 'bgr8'
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR), 'bgr8'
    return img, 'bgr8'   # OpenCV decodes colour JPEG/PNG as BGR whatever the format says


def decode_image_message(msg: Any, msgtype: str, bgr: bool = True) -> tuple:
    """(image, encoding) of an Image or CompressedImage message."""
    if msgtype.endswith('CompressedImage') or hasattr(msg, 'format'):
        return decode_compressed_image(msg, bgr)
    return decode_raw_image(msg, bgr)


# ------------------------------------------------------------------------------------ sources
class _McapSource:
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
        try:
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
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - mcap raises many kinds on bad input
            raise BagError(f'{path}: truncated or corrupt MCAP file ({type(exc).__name__}: '
                           f'{exc})') from None

    def messages(self, topics: Optional[Iterable[str]]) -> Iterator[BagMessage]:
        from mcap.reader import make_reader
        wanted = None if topics is None else [t for t in topics if t in self.topics]
        for path in self.files:
            try:
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
            except BagError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise BagError(f'{path}: truncated or corrupt MCAP file '
                               f'({type(exc).__name__}: {exc})') from None

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


class _AnySource:
    """ROS 1 bags and rosbag2 sqlite3 bags through rosbags' AnyReader."""

    def __init__(self, paths: List[Path], label: Path) -> None:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
        self.label = label
        try:
            self.reader = AnyReader(paths, default_typestore=get_typestore(Stores.ROS2_KILTED))
            self.reader.open()
        except Exception as exc:  # noqa: BLE001 - AnyReaderError, struct errors, sqlite errors
            raise BagError(f'{label}: cannot open bag ({type(exc).__name__}: {exc})') from None
        self.fmt = 'cdr' if self.reader.is2 else 'ros1'
        self.topics: Dict[str, TopicInfo] = {}
        for conn in self.reader.connections:
            info = self.topics.get(conn.topic)
            if info is None:
                self.topics[conn.topic] = TopicInfo(conn.topic, normalize_type(conn.msgtype),
                                                    int(conn.msgcount))
            else:
                info.count += int(conn.msgcount)
        self.start_ns = int(self.reader.start_time) if self.topics else None
        self.end_ns = int(self.reader.end_time) if self.topics else None

    def messages(self, topics: Optional[Iterable[str]]) -> Iterator[BagMessage]:
        wanted = None if topics is None else set(topics)
        conns = [c for c in self.reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        try:
            for conn, log_ns, raw in self.reader.messages(connections=conns):
                yield self._message(conn, int(log_ns), bytes(raw))
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BagError(f'{self.label}: truncated or corrupt bag ({type(exc).__name__}: '
                           f'{exc})') from None

    def _message(self, conn: Any, log_ns: int, raw: bytes) -> BagMessage:
        reader = self.reader

        def decode() -> Any:
            try:
                return reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001
                raise BagError(f'{self.label}: cannot decode a {conn.msgtype} message on '
                               f'{conn.topic} ({exc})') from None
        return BagMessage(conn.topic, normalize_type(conn.msgtype), log_ns, raw, self.fmt,
                          (decode,))

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:  # noqa: BLE001 - closing a half-open reader
            pass


# ------------------------------------------------------------------------------------ reader
class BagReader:
    """Open a bag (rosbag2 folder, ``.mcap``, ``.db3`` or ROS 1 ``.bag``) and iterate it.

    Use as a context manager. ``messages()`` yields every message in log-time order;
    ``images()`` decodes Image / CompressedImage topics.
    """

    def __init__(self, path: PathLike, allow_partial: bool = False) -> None:
        """Open ``path``; ``allow_partial`` reads the present files of an incomplete split bag."""
        self.path = Path(path)
        self.allow_partial = allow_partial
        self.warnings: List[str] = []
        self._tmp: Optional[str] = None
        self._source: Any = None
        self._open()

    # -- opening
    def _open(self) -> None:
        path = self.path
        if not path.exists():
            raise BagError(f'{path}: no such bag')
        if path.is_dir():
            meta = path / 'metadata.yaml'
            if meta.is_file():
                self._open_rosbag2(path, meta)
                return
            files = sorted(path.glob('*.mcap')) or sorted(path.glob('*.db3'))
            if not files:
                raise BagError(f'{path}: not a bag (no metadata.yaml, .mcap, .db3 or .bag)')
            if files[0].suffix == '.mcap':
                self._source = _McapSource(files, compressed_messages=False)
            else:
                raise BagError(f'{path}: sqlite3 bag without metadata.yaml')
            return
        suffix = path.suffix.lower()
        if suffix == '.bag':
            self._source = _AnySource([path], path)
        elif suffix == '.mcap':
            meta = path.parent / 'metadata.yaml'
            mode = self._metadata(meta).get('compression_mode', '') if meta.is_file() else ''
            self._source = _McapSource([path], compressed_messages=str(mode).lower() == 'message')
        elif suffix == '.db3':
            if (path.parent / 'metadata.yaml').is_file():
                self._open_rosbag2(path.parent, path.parent / 'metadata.yaml', only=path)
            else:
                raise BagError(f'{path}: sqlite3 file without the metadata.yaml beside it')
        else:
            raise BagError(f'{path}: unknown bag format (expected a rosbag2 folder, .mcap, '
                           '.db3 or .bag)')

    @staticmethod
    def _metadata(meta: Path) -> Dict[str, Any]:
        try:
            data = yaml.safe_load(meta.read_text())
            return dict(data['rosbag2_bagfile_information'])
        except Exception as exc:  # noqa: BLE001
            raise BagError(f'{meta}: unreadable rosbag2 metadata ({exc})') from None

    def _open_rosbag2(self, folder: Path, meta: Path, only: Optional[Path] = None) -> None:
        info = self._metadata(meta)
        rel = [str(p) for p in info.get('relative_file_paths') or []]
        files = [folder / r for r in rel]
        storage = str(info.get('storage_identifier', '')).lower()
        mode = str(info.get('compression_mode', '') or '').lower()
        if mode == 'file':
            files_present = [f for f in files if f.exists()]
            if len(files_present) < len(files):
                raise BagError(f'{folder}: files missing: {[f.name for f in files]}')
            self._source = _AnySource([folder], folder)
            return
        if only is not None:
            files = [only]
        missing = [f for f in files if not f.exists()]
        present = [f for f in files if f.exists()]
        if missing:
            names = ', '.join(f.name for f in missing)
            if not self.allow_partial or not present:
                raise BagError(
                    f'{folder}: {len(missing)} of {len(files)} bag files listed in '
                    f'metadata.yaml are missing ({names})'
                    + ('; allow_partial (--allow-partial) reads the '
                       f'{len(present)} present' if present else ''))
            self.warnings.append(f'{folder}: reading {len(present)} of {len(files)} files '
                                 f'(missing: {names})')
        if storage == 'mcap' or (present and present[0].suffix == '.mcap'):
            self._source = _McapSource(present, compressed_messages=(mode == 'message'))
            return
        if missing or only is not None:
            # rosbags insists on every listed file: give it a copy of the metadata that lists
            # only the present ones (files linked, never copied).
            self._tmp = tempfile.mkdtemp(prefix='motionseg_bag_')
            tmp = Path(self._tmp)
            for f in present:
                (tmp / f.name).symlink_to(f.resolve())
            raw = yaml.safe_load(meta.read_text())
            bi = raw['rosbag2_bagfile_information']
            keep = {f.name for f in present}
            bi['relative_file_paths'] = [r for r in rel if Path(r).name in keep]
            if 'files' in bi:
                bi['files'] = [e for e in bi['files'] if Path(e['path']).name in keep]
            (tmp / 'metadata.yaml').write_text(yaml.safe_dump(raw))
            self._source = _AnySource([tmp], folder)
        else:
            self._source = _AnySource([folder], folder)

    # -- queries
    @property
    def topics(self) -> Dict[str, TopicInfo]:
        """Topic name -> TopicInfo."""
        return dict(self._source.topics)

    @property
    def start_ns(self) -> Optional[int]:
        """Log time of the first message."""
        return self._source.start_ns

    @property
    def end_ns(self) -> Optional[int]:
        """Log time of the last message."""
        return self._source.end_ns

    def image_topics(self) -> List[str]:
        """Topics carrying Image or CompressedImage messages."""
        return sorted(t for t, i in self.topics.items() if i.msgtype in IMAGE_TYPES)

    def messages(self, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None) in log-time order."""
        if topics is not None:
            topics = list(topics)
            unknown = [t for t in topics if t not in self._source.topics]
            if unknown:
                raise BagError(f'{self.path}: no topic(s) {unknown}; the bag has '
                               f'{sorted(self._source.topics)}')
        return self._source.messages(topics)

    def images(self, topics: Optional[Iterable[str]] = None, bgr: bool = True
               ) -> Iterator[BagImage]:
        """Yield decoded images of ``topics`` (default: every image topic) in log-time order.

        8-bit images come out BGR; with ``bgr=False`` single-channel ones stay 2-D (labels).
        """
        topics = list(topics) if topics is not None else self.image_topics()
        for t in topics:
            info = self._source.topics.get(t)
            if info is not None and info.msgtype not in IMAGE_TYPES:
                raise BagError(f'{self.path}: topic {t} carries {info.msgtype}, not images')
        for m in self.messages(topics):
            msg = m.msg
            try:
                img, enc = decode_image_message(msg, m.msgtype, bgr)
            except ValueError as exc:
                raise BagError(f'{self.path}: {m.topic} at {m.log_ns} ns: {exc}') from None
            header = getattr(msg, 'header', None)
            stamp = stamp_to_ns(header.stamp) if header is not None else m.log_ns
            frame_id = str(getattr(header, 'frame_id', '') or '')
            yield BagImage(m.topic, m.log_ns, stamp, frame_id, img, enc, m.msgtype)

    # -- lifetime
    def close(self) -> None:
        """Release files (and the temporary metadata of a partial sqlite3 bag)."""
        if isinstance(self._source, _AnySource):
            self._source.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> 'BagReader':
        """Return self."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close."""
        self.close()


def read_images(path: PathLike, topics: Optional[Iterable[str]] = None,
                allow_partial: bool = False) -> Iterator[BagImage]:
    """Shortcut: decoded images of a bag."""
    with BagReader(path, allow_partial=allow_partial) as reader:
        yield from reader.images(topics)
