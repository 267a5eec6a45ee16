"""A bag as an evaluation sequence: its camera topic, its frames and its ground truth by stamp.

Frames are read through :class:`motionseg_ros.io.sources.BagSource`, so the camera topic is
chosen and decoded exactly as ``motionseg run --topic`` does; ground truth is the label images
on ``/gt/masks`` (``motionseg make-bag --gt-masks``), matched to frames by header stamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from motionseg_ros.bags.messages import GT_TOPIC
from motionseg_ros.evaluation.options import EvaluationError
from motionseg_ros.types import Frame


@dataclass
class BagSequence:
    """A bag with an image topic and ground truth on ``/gt/masks`` (matched by header stamp)."""

    path: Path
    image_topic: str
    name: str
    gt_by_stamp: Dict[int, np.ndarray]
    n_frames: int
    image_type: str = 'sensor_msgs/msg/Image'


def open_bag_sequence(path: Path, image_topic: Optional[str] = None,
                      gt_topic: str = GT_TOPIC) -> BagSequence:
    """Index a bag for evaluation: its image topic, frame count and GT label images."""
    from motionseg_ros.bags.reader import BagReader
    from motionseg_ros.io.sources import BagSource, SourceError
    with BagReader(path) as bag:
        if gt_topic not in bag.topics:
            raise EvaluationError(f'{path}: no ground truth topic {gt_topic} (make one with '
                                  '`motionseg make-bag ... --gt-masks`)')
        gt = {}
        for im in bag.images([gt_topic], bgr=False):
            gt[im.stamp_ns] = im.image if im.image.ndim == 2 else im.image[..., 0]
    try:
        source = BagSource(path, image_topic)
    except SourceError as exc:
        raise EvaluationError(str(exc)) from None
    return BagSequence(path, source.topic, source.name, gt, len(source), source.msgtype)


def bag_frames(bseq: BagSequence, max_frames: Optional[int]
               ) -> Iterator[Tuple[Frame, Optional[int]]]:
    """(frame, GT key or None) of a bag, in log-time order; the key is the header stamp."""
    from motionseg_ros.io.sources import BagSource
    for frame in BagSource(bseq.path, bseq.image_topic):
        if max_frames is not None and frame.index >= max_frames:
            break
        yield frame, (frame.stamp_ns if frame.stamp_ns in bseq.gt_by_stamp else None)
