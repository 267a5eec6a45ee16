"""Frame sources: a video file, a folder of images, a DAVIS sequence folder, or a rosbag.

``open_source(path, fps=None)`` returns a :class:`FrameSource`: iterable of
:class:`~motionseg_ros.types.Frame` (BGR uint8, stamps from the frame rate, names from the file
stems or zero-padded indices), with ``len()`` when the length is known and a ``.name``.
Unreadable or empty input raises :class:`SourceError` with a message meant for the user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, List, Optional, Union

import cv2
import numpy as np

from motionseg_ros.types import Frame

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')
DEFAULT_FOLDER_FPS = 30.0


class SourceError(ValueError):
    """The input cannot be read as a frame source; the message says why."""


class FrameSource:
    """Iterable of frames with a name and, when known, a length."""

    name: str = ''
    fps: float = DEFAULT_FOLDER_FPS

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - interface
        raise NotImplementedError

    def __len__(self) -> int:
        """Return the number of frames (a best guess for videos)."""
        raise TypeError('length unknown')

    def _frame(self, image: np.ndarray, index: int, name: str) -> Frame:
        stamp = int(round(index * 1e9 / self.fps))
        return Frame(image=image, stamp_ns=stamp, index=index, name=name)


class ImageFolderSource(FrameSource):
    """Images of a folder in sorted file-name order; names are the file stems."""

    def __init__(self, folder: Path, fps: Optional[float] = None) -> None:
        """List the images in ``folder``; raise SourceError if there are none."""
        self.folder = folder
        self.files: List[Path] = sorted(p for p in folder.iterdir()
                                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise SourceError(f'{folder}: no images ({", ".join(IMAGE_EXTENSIONS)}) in folder')
        self.fps = float(fps) if fps else DEFAULT_FOLDER_FPS
        self.name = folder.name

    def __len__(self) -> int:
        """Return the number of images."""
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        """Yield the images as frames; an unreadable image raises SourceError."""
        for i, path in enumerate(self.files):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f'{path}: cannot read image')
            yield self._frame(image, i, path.stem)


class VideoSource(FrameSource):
    """Frames of a video file decoded by OpenCV; names are zero-padded indices."""

    def __init__(self, path: Path, fps: Optional[float] = None) -> None:
        """Open ``path``; raise SourceError if it is not a readable video."""
        self.path = path
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise SourceError(f'{path}: cannot open as a video')
            ok, _ = cap.read()
            if not ok:
                raise SourceError(f'{path}: video has no readable frame')
            self._count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
        self.fps = float(fps) if fps else (native if 0 < native < 1000 else DEFAULT_FOLDER_FPS)
        self.name = path.stem

    def __len__(self) -> int:
        """Frame count from the container (may be approximate)."""
        if self._count <= 0:
            raise TypeError('length unknown')
        return self._count

    def __iter__(self) -> Iterator[Frame]:
        """Decode and yield frames until the stream ends."""
        cap = cv2.VideoCapture(str(self.path))
        try:
            i = 0
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                yield self._frame(image, i, f'{i:05d}')
                i += 1
        finally:
            cap.release()


BAG_EXTENSIONS = ('.mcap', '.db3', '.bag')


def is_bag(path: Path) -> bool:
    """Tell whether ``path`` is a rosbag: a .mcap/.db3/.bag file or a rosbag2 folder."""
    if path.is_file():
        return path.suffix.lower() in BAG_EXTENSIONS
    return (path / 'metadata.yaml').is_file()


def choose_image_topic(path: Path, image_topics: List[str], topic: Optional[str] = None) -> str:
    """Return the camera topic of a bag: ``topic``, else its only one, else /camera/image_raw.

    The one rule of ``motionseg run --topic`` and ``motionseg evaluate --topic``; ground truth
    (``/gt/masks``) is never a camera topic.
    """
    from motionseg_ros.bags.messages import GT_TOPIC
    cameras = [t for t in image_topics if t != GT_TOPIC]
    if topic is not None:
        if topic not in cameras:
            raise SourceError(f'{path}: no image topic {topic!r}; image topics: {cameras}')
        return topic
    if not cameras:
        raise SourceError(f'{path}: no Image or CompressedImage topic in the bag'
                          + (f' besides the ground truth {GT_TOPIC}' if image_topics else ''))
    if len(cameras) == 1:
        return cameras[0]
    if '/camera/image_raw' in cameras:
        return '/camera/image_raw'
    raise SourceError(f'{path}: several image topics {cameras}; choose one with --topic')


class BagSource(FrameSource):
    """Images of one topic of a rosbag (rosbag2 MCAP/sqlite3 or ROS 1), read without ROS.

    Stamps are the messages' header stamps (what the node would see); frames are named by
    their index. The topic is chosen by :func:`choose_image_topic`. Depth images are refused
    with the reason, as the node refuses them.
    """

    def __init__(self, path: Path, topic: Optional[str] = None) -> None:
        """Open the bag and choose the image topic; raise SourceError on any bag problem."""
        from motionseg_ros.bags.reader import BagError, BagReader
        self.path = path
        self.name = path.stem if path.is_file() else path.name
        try:
            with BagReader(path) as bag:
                topics = bag.image_topics()
                info = bag.topics
                span = ((bag.end_ns or 0) - (bag.start_ns or 0)) * 1e-9
        except BagError as exc:
            raise SourceError(str(exc)) from None
        self.topic = choose_image_topic(path, topics, topic)
        self.msgtype = info[self.topic].msgtype
        self._count = int(info[self.topic].count)
        self.fps = (self._count - 1) / span if self._count > 1 and span > 0 else \
            DEFAULT_FOLDER_FPS

    def __len__(self) -> int:
        """Return the number of messages on the topic."""
        return self._count

    def __iter__(self) -> Iterator[Frame]:
        """Decode and yield the topic's images in log-time order."""
        from motionseg_ros.bags.reader import BagError, BagReader
        from motionseg_ros.image_codec import ImageCodecError, check_camera_encoding
        try:
            with BagReader(self.path) as bag:
                for i, im in enumerate(bag.images([self.topic])):
                    try:
                        check_camera_encoding(im.encoding)
                    except ImageCodecError as exc:
                        raise SourceError(f'{self.path}: {self.topic}: {exc}') from None
                    yield Frame(image=im.image, stamp_ns=im.stamp_ns, index=i, name=f'{i:05d}')
        except BagError as exc:
            raise SourceError(str(exc)) from None


def _davis_folder(path: Path) -> Optional[Path]:
    """Return the image folder of a DAVIS root (JPEGImages/480p), or None."""
    for cand in (path / 'JPEGImages' / '480p', path / 'JPEGImages'):
        if cand.is_dir():
            return cand
    return None


def open_source(path: Union[str, os.PathLike], fps: Optional[float] = None,
                topic: Optional[str] = None) -> FrameSource:
    """Open a video, an image folder, a DAVIS sequence (``root/JPEGImages/480p/seq``) or a bag.

    ``fps`` overrides the frame rate used for stamps (30 for folders when not given); bags keep
    their recorded header stamps. ``topic`` picks a bag's image topic.
    """
    p = Path(path)
    if fps is not None and not float(fps) > 0:
        raise SourceError(f'fps must be positive, got {fps}')
    if not p.exists():
        # DAVIS form "ROOT:seq" is not supported; say what exists instead
        raise SourceError(f'{p}: no such file or folder')
    if is_bag(p):
        return BagSource(p, topic)
    if p.is_dir():
        davis = _davis_folder(p)
        if davis is not None and not any(c.suffix.lower() in IMAGE_EXTENSIONS
                                         for c in p.iterdir() if c.is_file()):
            seqs = sorted(c.name for c in davis.iterdir() if c.is_dir())
            raise SourceError(f'{p}: a DAVIS root; give one sequence, e.g. {davis / seqs[0]}'
                              if seqs else f'{p}: DAVIS root without sequences')
        return ImageFolderSource(p, fps)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        raise SourceError(f'{p}: a single image; give a video or a folder of images')
    if not os.access(p, os.R_OK):
        raise SourceError(f'{p}: not readable (permissions)')
    return VideoSource(p, fps)
