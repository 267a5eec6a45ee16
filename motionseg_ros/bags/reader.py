"""Read messages and images from ROS bags without ROS: rosbag2 (MCAP, sqlite3) and ROS 1.

Real bags are messy; this reader copes with, or names clearly, what recorders produce:

- split rosbag2 bags with files missing: ``BagError`` listing them, or, with
  ``allow_partial=True``, the files that are there;
- per-message zstd compression (``compression_mode: MESSAGE``, announced only in
  ``metadata.yaml``): payloads are decompressed before decoding;
- ROS 1-style type names in a ROS 2 bag (``sensor_msgs/Image``) map to ``sensor_msgs/msg/Image``;
- MCAP files with the ``ros1`` profile are decoded with the ROS 1 deserializer;
- images decode through :mod:`motionseg_ros.image_codec`, the node's decoder too (row padding,
  ``is_bigendian``, ``"<enc>; <codec> compressed"`` formats, ``compressedDepth``); empty
  ``frame_id`` is kept;
- header stamps and log (receive) times are both reported: they often differ in re-recorded bags.

A truncated or corrupt file raises ``BagError`` naming it. MCAP goes through the ``mcap`` reader
plus rosbags' type system (``mcap_source.py``); sqlite3 and ROS 1 bags go through
``rosbags.highlevel.AnyReader``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np
import yaml

from motionseg_ros import image_codec
from motionseg_ros.bags.mcap_source import McapSource
from motionseg_ros.bags.messages import (IMAGE_TYPES, BagError, BagImage, BagMessage, TopicInfo,
                                         bag_errors, normalize_type)
from motionseg_ros.stamps import stamp_to_ns

__all__ = ['BagError', 'BagImage', 'BagMessage', 'BagReader', 'TopicInfo', 'decode_image_message',
           'normalize_type', 'read_images', 'stamp_to_ns']

PathLike = Union[str, Path]


# ------------------------------------------------------------------------------------ images
def decode_image_message(msg: Any, msgtype: str, bgr: bool = True) -> Tuple[np.ndarray, str]:
    """(image, encoding) of an Image or CompressedImage, decoded by :mod:`image_codec`.

    Camera encodings come out as BGR uint8 ``'bgr8'`` (16-bit ones keep their high 8 bits, as
    in the node); with ``bgr=False`` 8-bit single-channel ones stay 2-D ``'mono8'`` and 16-bit
    ones keep their values as ``'mono16'`` (label images). Depth (16UC1, 32FC1) keeps its
    recorded values and encoding. Raises :class:`ImageCodecError` (a ValueError) when the
    message does not decode.
    """
    decoded = (image_codec.decode_compressed(msg) if msgtype.endswith('CompressedImage')
               else image_codec.decode_raw(msg))
    if decoded.is_depth:
        return decoded.pixels, decoded.encoding
    if not bgr and decoded.pixels.ndim == 2 and decoded.encoding in ('mono8', '8UC1', 'mono16'):
        return decoded.pixels, 'mono8' if decoded.pixels.dtype == np.uint8 else 'mono16'
    image = image_codec.camera_bgr8(decoded)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image, 'bgr8'


# ------------------------------------------------------------------------------------ sources
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
        with bag_errors(f'{self.label}: truncated or corrupt bag'):
            for conn, log_ns, raw in self.reader.messages(connections=conns):
                yield self._message(conn, int(log_ns), bytes(raw))

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
                self._source = McapSource(files, compressed_messages=False)
            else:
                raise BagError(f'{path}: sqlite3 bag without metadata.yaml')
            return
        suffix = path.suffix.lower()
        if suffix == '.bag':
            self._source = _AnySource([path], path)
        elif suffix == '.mcap':
            meta = path.parent / 'metadata.yaml'
            mode = self._metadata(meta).get('compression_mode', '') if meta.is_file() else ''
            self._source = McapSource([path], compressed_messages=str(mode).lower() == 'message')
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
            self._source = McapSource(present, compressed_messages=(mode == 'message'))
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
