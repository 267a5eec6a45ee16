"""``motionseg make-bag``: a video, an image folder or a DAVIS sequence -> a rosbag2.

Images go to ``/camera/image_raw`` (sensor_msgs/Image bgr8) or, with ``--compressed``, to
``/camera/image_raw/compressed`` (CompressedImage jpeg); ``--camera-info`` adds
``/camera/camera_info``; ``--gt-masks`` adds ground-truth label images (mono8, 0 = background,
k = object k) on ``/gt/masks`` with the same header stamps as the frames they annotate.
Stamps are ``start + index / rate``; log times equal the header stamps, so the bag replays with
its source timing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from motionseg_ros.bags.messages import GT_TOPIC
from motionseg_ros.cli import CliError

IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
INFO_TOPIC = '/camera/camera_info'
DEFAULT_START_S = 1_700_000_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``make-bag`` sub-command."""
    p = subparsers.add_parser(
        'make-bag', help='write a video / image folder / DAVIS sequence into a rosbag2',
        description=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('input', help='video file, folder of images or DAVIS sequence folder')
    p.add_argument('--output', '-o', required=True, help='bag folder to create')
    p.add_argument('--rate', type=float, default=None,
                   help='frames per second for the stamps (default: the video rate, 30 for '
                        'folders, 24 for DAVIS)')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    p.add_argument('--compressed', action='store_true',
                   help='write CompressedImage (jpeg) on /camera/image_raw/compressed')
    p.add_argument('--jpeg-quality', type=int, default=90)
    p.add_argument('--camera-info', action='store_true', help='also write /camera/camera_info')
    p.add_argument('--intrinsics', type=float, nargs=4, metavar=('FX', 'FY', 'CX', 'CY'),
                   help='camera matrix for --camera-info (default: fx = fy = image width, '
                        'principal point at the centre; an approximation)')
    p.add_argument('--gt-masks', default=None,
                   help="folder of ground-truth PNGs named like the frames, or 'auto' for a "
                        'DAVIS sequence (Annotations/480p/<seq>)')
    p.add_argument('--frame-id', default='camera')
    p.add_argument('--start-time', type=float, default=DEFAULT_START_S,
                   help='stamp of the first frame in seconds (default %(default)s)')
    p.add_argument('--max-frames', type=int, default=None)
    p.add_argument('--overwrite', action='store_true', help='replace an existing bag folder')
    p.set_defaults(func=run)


def davis_annotations(seq_dir: Path) -> Optional[Path]:
    """``ROOT/Annotations/<res>/<seq>`` for ``ROOT/JPEGImages/<res>/<seq>``, if it exists."""
    seq_dir = seq_dir.resolve()
    parts = list(seq_dir.parts)
    if 'JPEGImages' not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index('JPEGImages')
    for ann in ('Annotations_unsupervised', 'Annotations'):
        cand = Path(*parts[:i], ann, *parts[i + 1:])
        if cand.is_dir():
            return cand
    return None


def mask_to_labels(arr: np.ndarray) -> np.ndarray:
    """Label image of a GT file: palette indices kept, binary 0/255 -> 0/1, colours -> 1..K."""
    if arr.ndim == 3:
        code = (arr[..., 0].astype(np.int64) << 16) | (arr[..., 1].astype(np.int64) << 8) \
            | arr[..., 2]
        values = [v for v in np.unique(code) if v != 0]
        labels = np.zeros(code.shape, np.uint8)
        for k, v in enumerate(values, start=1):
            labels[code == v] = k
        return labels
    values = np.unique(arr)
    if set(values.tolist()) <= {0, 255}:
        return (arr > 127).astype(np.uint8)
    return arr


def _gt_files(folder: Path) -> Dict[str, Path]:
    from motionseg_ros.evaluation.datasets import _images
    files = _images(folder)
    if not files:
        raise CliError(f'{folder}: no ground-truth images')
    return {p.stem: p for p in files}


def run(args: argparse.Namespace) -> int:
    """Write the bag; print a one-line summary."""
    from motionseg_ros.bags.reader import BagError
    from motionseg_ros.bags.writer import BagWriter
    from motionseg_ros.evaluation.datasets import DatasetError, _read_raw
    from motionseg_ros.io.sources import SourceError, open_source

    src_path = Path(args.input)
    gt_dir: Optional[Path] = None
    rate = args.rate
    if args.gt_masks == 'auto':
        gt_dir = davis_annotations(src_path)
        if gt_dir is None:
            raise CliError(f'--gt-masks auto: no DAVIS Annotations folder beside {src_path}')
        if rate is None:
            rate = 24.0
    elif args.gt_masks:
        gt_dir = Path(args.gt_masks)
        if not gt_dir.is_dir():
            raise CliError(f'--gt-masks {gt_dir}: not a folder')
    elif rate is None and davis_annotations(src_path) is not None:
        rate = 24.0
    if rate is not None and not rate > 0:
        raise CliError(f'--rate must be positive, got {rate}')
    gt_files = _gt_files(gt_dir) if gt_dir is not None else {}
    try:
        source = open_source(src_path, fps=rate)
    except SourceError as exc:
        raise CliError(str(exc)) from None
    start_ns = int(round(args.start_time * 1e9))
    n = n_gt = 0
    size = None
    try:
        with BagWriter(args.output, storage=args.storage, overwrite=args.overwrite) as bag:
            for frame in source:
                if args.max_frames is not None and n >= args.max_frames:
                    break
                stamp = start_ns + int(frame.stamp_ns)
                img = frame.image
                size = img.shape[:2]
                if args.compressed:
                    bag.write_compressed(COMPRESSED_TOPIC, img, stamp, args.frame_id,
                                         quality=args.jpeg_quality)
                else:
                    bag.write_image(IMAGE_TOPIC, img, stamp, args.frame_id)
                if args.camera_info:
                    h, w = size
                    k = args.intrinsics or (float(w), float(w), (w - 1) / 2.0, (h - 1) / 2.0)
                    bag.write_camera_info(INFO_TOPIC, stamp, args.frame_id, w, h, k)
                gt_path = gt_files.get(frame.name or '')
                if gt_path is not None:
                    labels = mask_to_labels(_read_raw(gt_path))
                    if labels.shape != size:
                        raise CliError(f'{gt_path}: mask {labels.shape} differs from frame '
                                       f'{size}')
                    bag.write_labels(GT_TOPIC, labels, stamp, args.frame_id)
                    n_gt += 1
                n += 1
    except (BagError, SourceError, DatasetError) as exc:
        raise CliError(str(exc)) from None
    if n == 0:
        raise CliError(f'{src_path}: no frames written')
    if gt_dir is not None and n_gt == 0:
        raise CliError(f'{gt_dir}: no ground-truth file matched a frame name')
    topic = COMPRESSED_TOPIC if args.compressed else IMAGE_TOPIC
    extra = f', {n_gt} masks on {GT_TOPIC}' if gt_dir is not None else ''
    print(f'wrote {args.output} ({args.storage}): {n} frames {size[1]}x{size[0]} on {topic} '
          f'at {source.fps:g} Hz{extra}')
    return 0
