"""Dataset loaders on small fixtures written in each benchmark's real layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DAVIS, require_data
from PIL import Image

from motionseg_ros.evaluation.datasets import DatasetError, detect_layout, open_dataset

H, W = 24, 32


def frame(i: int) -> np.ndarray:
    return np.full((H, W, 3), 10 * i, np.uint8)


def rect(y0, y1, x0, x1, value=255, dtype=np.uint8):
    m = np.zeros((H, W), dtype)
    m[y0:y1, x0:x1] = value
    return m


def write_davis(root: Path, indexed: bool, ann: str = 'Annotations') -> None:
    for seq, n in (('walk', 4), ('run', 3)):
        img_dir = root / 'JPEGImages' / '480p' / seq
        ann_dir = root / ann / '480p' / seq
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(img_dir / f'{i:05d}.jpg'), frame(i))
            if indexed:
                m = rect(2, 8, 2 + i, 10 + i, 1) + rect(12, 20, 20, 28, 2)
                m[0, 0] = 255   # void
                img = Image.frombytes('P', (W, H), m.tobytes())
                img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
                img.save(ann_dir / f'{i:05d}.png')
            else:
                Image.fromarray(rect(2, 8, 2 + i, 10 + i)).save(ann_dir / f'{i:05d}.png')


def test_davis2016_layout(tmp_path):
    write_davis(tmp_path, indexed=False)
    assert detect_layout(tmp_path) == 'davis2016'
    ds = open_dataset(tmp_path)
    assert sorted(ds.sequences) == ['run', 'walk']
    walk = ds.sequences['walk']
    assert len(walk) == 4 and walk.annotated == [0, 1, 2, 3]
    assert walk.frame_names == ['00000', '00001', '00002', '00003']
    labels, void = walk.gt(1)
    assert void is None and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, rect(2, 8, 3, 11, 1))
    assert walk.image(2).shape == (H, W, 3)
    assert [s.name for s in ds.select(['walk'])] == ['walk']
    with pytest.raises(DatasetError, match='nope'):
        ds.select(['nope'])
    short = walk.truncated(2)
    assert len(short) == 2 and short.annotated == [0, 1]


def test_davis2017_indexed_layout_with_void(tmp_path):
    write_davis(tmp_path, indexed=True)
    assert detect_layout(tmp_path) == 'davis2017'
    seq = open_dataset(tmp_path).sequences['walk']
    labels, void = seq.gt(0)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert void is not None and void[0, 0] and void.sum() == 1 and labels[0, 0] == 0
    np.testing.assert_array_equal(labels == 2, rect(12, 20, 20, 28, 1).astype(bool))


def test_davis2017_prefers_unsupervised_annotations(tmp_path):
    write_davis(tmp_path, indexed=True, ann='Annotations_unsupervised')
    assert detect_layout(tmp_path) == 'davis2017'
    assert open_dataset(tmp_path).sequences['run'].annotated == [0, 1, 2]


def test_fbms_sparse_colour_and_grey_ground_truth(tmp_path):
    # colour (ppm, white background) ground truth every 3rd frame, named <frame>_gt.ppm
    cars = tmp_path / 'cars1'
    (cars / 'GroundTruth').mkdir(parents=True)
    for i in range(1, 8):
        cv2.imwrite(str(cars / f'cars1_{i:02d}.jpg'), frame(i))
    for i in (1, 4, 7):
        rgb = np.full((H, W, 3), 255, np.uint8)
        rgb[2:8, 2:10] = (255, 0, 0)          # object A: red
        if i != 4:                               # object B absent in frame 4
            rgb[12:20, 20:28] = (0, 0, 255)      # object B: blue
        Image.fromarray(rgb).save(cars / 'GroundTruth' / f'cars1_{i:02d}_gt.ppm')
    # grey (pgm, black background), names that only share the frame number
    marple = tmp_path / 'marple1'
    (marple / 'GroundTruth').mkdir(parents=True)
    for i in range(1, 6):
        cv2.imwrite(str(marple / f'marple1_{i:04d}.jpg'), frame(i))
    for i in (1, 5):
        Image.fromarray(rect(2, 8, 2, 10, 100) + rect(12, 20, 20, 28, 200)).save(
            marple / 'GroundTruth' / f'{i:03d}_gt.pgm')
    (tmp_path / 'README.txt').write_text('not a sequence')
    assert detect_layout(tmp_path) == 'fbms'
    ds = open_dataset(tmp_path)
    cars_seq = ds.sequences['cars1']
    assert len(cars_seq) == 7 and cars_seq.annotated == [0, 3, 6]
    l0, _ = cars_seq.gt(0)
    l3, _ = cars_seq.gt(3)
    # labels stable across frames: blue keeps its label although absent in frame 4
    blue0 = int(l0[15, 25])
    red0 = int(l0[4, 4])
    assert {red0, blue0} == {1, 2} and l0[0, 0] == 0
    assert l3[4, 4] == red0 and l3[15, 25] == 0
    with pytest.raises(KeyError):
        cars_seq.gt(1)
    marple_seq = ds.sequences['marple1']
    assert marple_seq.annotated == [0, 4]
    lm, _ = marple_seq.gt(4)
    assert (lm[4, 4], lm[15, 25], lm[0, 0]) == (1, 2, 0)
    # a single FBMS sequence folder works too
    assert list(open_dataset(cars).sequences) == ['cars1']


def test_segtrack_v2_single_and_multi_object(tmp_path):
    for seq, objects in (('bird', 0), ('penguin', 2)):
        img_dir = tmp_path / 'JPEGImages' / seq
        img_dir.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(img_dir / f'{seq}_{i:05d}.png'), frame(i))
            if objects == 0:
                gt_dir = tmp_path / 'GroundTruth' / seq
                gt_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(gt_dir / f'{seq}_{i:05d}.png'), rect(2, 8, 2, 10))
            else:
                for k in range(1, objects + 1):
                    gt_dir = tmp_path / 'GroundTruth' / seq / str(k)
                    gt_dir.mkdir(parents=True, exist_ok=True)
                    m = rect(2, 8, 2, 10) if k == 1 else rect(12, 20, 20, 28)
                    cv2.imwrite(str(gt_dir / f'{seq}_{i:05d}.png'), m)
    assert detect_layout(tmp_path) == 'segtrackv2'
    ds = open_dataset(tmp_path)
    bird, _ = ds.sequences['bird'].gt(2)
    assert set(np.unique(bird)) == {0, 1}
    peng, _ = ds.sequences['penguin'].gt(0)
    assert (peng[4, 4], peng[15, 25], peng[0, 0]) == (1, 2, 0)


def test_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match='unknown dataset layout'):
        detect_layout(tmp_path)
    with pytest.raises(DatasetError, match='not a folder'):
        detect_layout(tmp_path / 'missing')
    write_davis(tmp_path / 'd', indexed=False)
    bad = tmp_path / 'd' / 'Annotations' / '480p' / 'walk' / '00001.png'
    bad.write_bytes(b'garbage')
    seq = open_dataset(tmp_path / 'd').sequences['walk']
    with pytest.raises(DatasetError, match='00001.png'):
        seq.gt(1)


def test_real_davis2016_is_detected():
    root = require_data(DAVIS)
    ds = open_dataset(root)
    assert ds.layout == 'davis2016' and len(ds.sequences) == 13
    seq = ds.sequences['car-shadow']
    assert len(seq) == 40 and len(seq.annotated) == 40
    labels, void = seq.gt(0)
    assert labels.shape == (480, 854) and set(np.unique(labels)) == {0, 1} and void is None
