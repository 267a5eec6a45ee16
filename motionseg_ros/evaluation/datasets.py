"""Benchmark dataset loaders, each in its own on-disk layout, behind one interface.

Layouts (detected from the folder, or named explicitly):

- ``davis2016``: ``JPEGImages/480p/<seq>/*.jpg`` and ``Annotations/480p/<seq>/*.png``, binary
  masks (0 / 255, mode L): all annotated objects merged into label 1.
- ``davis2017``: same folders, masks are palette-indexed PNGs (mode P): index k = object k,
  255 = void. ``Annotations_unsupervised`` is preferred when present (the unsupervised track).
- ``fbms``: ``<seq>/*.jpg`` with sparse ground truth in ``<seq>/GroundTruth/``: ``*_gt.ppm``
  (colour per object, white background), ``*.pgm`` / ``*.png`` (grey level per object, black
  background). Ground-truth files are matched to frames by name (``cars1_01_gt.pgm`` ->
  ``cars1_01.jpg``), else by the trailing frame number.
- ``segtrackv2``: ``JPEGImages/<seq>/*`` and ``GroundTruth/<seq>/*.png`` (one object) or
  ``GroundTruth/<seq>/<k>/*.png`` (one folder per object), masks binary.
- ``cdnet``: CDnet 2014 (change detection), ``input/in*.jpg`` and ``groundtruth/gt*.png`` in
  the folder itself or in each ``<seq>/``; grey levels 255 = moving, 0 and 50 (hard shadow) =
  static, 85 (outside the ROI) and 170 (unknown, object boundaries) = void. Frames outside
  ``temporalROI.txt`` (when present) have no ground truth. All movers share label 1.

Ground truth comes out as label images (0 = background, 1..K objects, the same object keeps its
label through the sequence) plus an optional void mask, so MOS and per-object scoring share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff')
LAYOUTS = ('davis2016', 'davis2017', 'fbms', 'segtrackv2', 'cdnet')
#: CDnet 2014 grey levels
CDNET_MOVING, CDNET_VOID = 255, (85, 170)
VOID_LABEL = 255


class DatasetError(ValueError):
    """A dataset folder that cannot be read, with the offending path in the message."""


def _images(folder: Path) -> List[Path]:
    """Image files of a folder, sorted by name (natural order of zero-padded numbers)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS), key=_natural_key)


def _natural_key(path: Path) -> Tuple:
    """Sort key that orders ``frame2`` before ``frame10``."""
    parts = re.split(r'(\d+)', path.name)
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _trailing_number(stem: str) -> Optional[int]:
    """Last integer in a file stem (``cars1_0042_gt`` -> 42)."""
    nums = re.findall(r'\d+', stem)
    return int(nums[-1]) if nums else None


def _read_raw(path: Path) -> np.ndarray:
    """Read a mask file keeping palette indices (PIL) or raw grey/colour values."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            if img.mode in ('P', 'L', 'I;16', 'I', '1'):
                arr = np.array(img)
            else:
                arr = np.array(img.convert('RGB'))
    except Exception as exc:  # noqa: BLE001 - any decoder error is a bad file
        raise DatasetError(f'cannot read mask {path}: {exc}') from exc
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return arr


def read_image(path: Path) -> np.ndarray:
    """Read an input frame as BGR uint8."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f'cannot read image {path}')
    return img


@dataclass
class SequenceData:
    """One sequence: its frames and its (possibly sparse) ground truth."""

    name: str
    image_paths: List[Path]
    gt_paths: Dict[int, List[Path]]     # frame index -> mask file(s) (one per object folder)
    kind: str                           # binary | indexed | colour | grey | objects | cdnet
    fps: float = 30.0
    _codes: Optional[List] = field(default=None, repr=False)

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.image_paths)

    @property
    def frame_names(self) -> List[str]:
        """Frame names (file stems)."""
        return [p.stem for p in self.image_paths]

    @property
    def annotated(self) -> List[int]:
        """Return the indices of the frames that have ground truth, ascending."""
        return sorted(self.gt_paths)

    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` as BGR uint8."""
        return read_image(self.image_paths[index])

    def truncated(self, max_frames: int) -> 'SequenceData':
        """Return the first ``max_frames`` frames (and their ground truth)."""
        return SequenceData(
            name=self.name, image_paths=self.image_paths[:max_frames],
            gt_paths={i: p for i, p in self.gt_paths.items() if i < max_frames},
            kind=self.kind, fps=self.fps, _codes=self._codes)

    def _colour_codes(self) -> List:
        """Sequence-wide sorted object values so labels stay stable from frame to frame."""
        if self._codes is None:
            values: set = set()
            for paths in self.gt_paths.values():
                arr = _read_raw(paths[0])
                if arr.ndim == 3:
                    code = _rgb_code(arr)
                    values.update(int(v) for v in np.unique(code))
                else:
                    values.update(int(v) for v in np.unique(arr))
            background = 0xFFFFFF if self.kind == 'colour' else 0
            values.discard(background)
            self._codes = sorted(values)
        return self._codes

    def gt(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(label image, void mask or None) of frame ``index``; raises if it has no GT."""
        paths = self.gt_paths.get(index)
        if not paths:
            raise KeyError(f'{self.name}: frame {index} has no ground truth')
        if self.kind == 'objects':
            labels: Optional[np.ndarray] = None
            for k, path in enumerate(paths, start=1):
                if path is None or not path.is_file():
                    continue
                arr = _read_raw(path)
                fg = (arr.max(axis=2) if arr.ndim == 3 else arr) > 127
                if labels is None:
                    labels = np.zeros(fg.shape, np.uint8)
                labels[fg & (labels == 0)] = k
            if labels is None:
                raise DatasetError(f'{self.name}: no readable mask for frame {index}')
            return labels, None
        arr = _read_raw(paths[0])
        if self.kind in ('binary', 'cdnet'):
            grey = arr.max(axis=2) if arr.ndim == 3 else arr
            if self.kind == 'binary':
                return (grey > 127).astype(np.uint8), None
            void = np.isin(grey, CDNET_VOID)
            return (grey == CDNET_MOVING).astype(np.uint8), (void if void.any() else None)
        if self.kind == 'indexed':
            if arr.ndim == 3:
                raise DatasetError(f'{paths[0]}: expected an indexed (palette) PNG')
            void = arr == VOID_LABEL
            labels = arr.astype(np.uint8 if arr.max(initial=0) < 256 else np.uint16)
            labels[void] = 0
            return labels, (void if void.any() else None)
        codes = self._colour_codes()
        values = _rgb_code(arr) if arr.ndim == 3 else arr.astype(np.int64)
        labels = np.zeros(values.shape, np.uint8 if len(codes) < 255 else np.uint16)
        for k, v in enumerate(codes, start=1):
            labels[values == v] = k
        return labels, None


def _rgb_code(arr: np.ndarray) -> np.ndarray:
    """Pack an RGB image into one integer per pixel (0xRRGGBB)."""
    a = arr.astype(np.int64)
    return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]


@dataclass
class Dataset:
    """Sequences of one benchmark folder."""

    root: Path
    layout: str
    sequences: Dict[str, SequenceData]

    def select(self, names: Optional[Sequence[str]]) -> List[SequenceData]:
        """Return the named sequences (all when ``names`` is empty), in the order given."""
        if not names:
            return [self.sequences[k] for k in sorted(self.sequences)]
        missing = [n for n in names if n not in self.sequences]
        if missing:
            raise DatasetError(f'{self.root}: no sequence(s) {missing}; have '
                               f'{sorted(self.sequences)}')
        return [self.sequences[n] for n in names]


def _resolution_dir(folder: Path) -> Path:
    """``folder/480p`` when present, else the only/first resolution sub-folder."""
    if (folder / '480p').is_dir():
        return folder / '480p'
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    # A resolution level holds sequence folders, which hold files.
    if subs and all(not _images(s) for s in subs):
        return subs[0]
    return folder


def _davis_mask_kind(ann_dir: Path) -> str:
    """``indexed`` for palette PNGs or more than two values, else ``binary``."""
    from PIL import Image
    for seq in sorted(p for p in ann_dir.iterdir() if p.is_dir()):
        masks = _images(seq)
        if masks:
            with Image.open(masks[0]) as img:
                if img.mode == 'P':
                    return 'indexed'
            values = np.unique(_read_raw(masks[0]))
            if any(v not in (0, 255) for v in values.tolist()):
                return 'indexed'
            return 'binary'
    raise DatasetError(f'{ann_dir}: no annotation PNGs')


def detect_layout(root: Union[str, Path]) -> str:
    """Name the layout of a dataset folder, or raise ``DatasetError`` saying what was seen."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'{root}: not a folder')
    if (root / 'JPEGImages').is_dir() and ((root / 'Annotations').is_dir()
                                           or (root / 'Annotations_unsupervised').is_dir()):
        ann = root / ('Annotations_unsupervised' if (root / 'Annotations_unsupervised').is_dir()
                      else 'Annotations')
        kind = _davis_mask_kind(_resolution_dir(ann))
        return 'davis2017' if kind == 'indexed' else 'davis2016'
    if (root / 'JPEGImages').is_dir() and (root / 'GroundTruth').is_dir():
        return 'segtrackv2'
    if _is_cdnet(root) or any(_is_cdnet(p) for p in root.iterdir() if p.is_dir()):
        return 'cdnet'
    if (root / 'GroundTruth').is_dir() or any(
            (p / 'GroundTruth').is_dir() for p in root.iterdir() if p.is_dir()):
        return 'fbms'
    raise DatasetError(f'{root}: unknown dataset layout (expected JPEGImages/ + Annotations/ '
                       '(DAVIS), JPEGImages/ + GroundTruth/ (SegTrack v2), '
                       '<seq>/GroundTruth/ (FBMS-59) or input/ + groundtruth/ (CDnet))')


def _load_davis(root: Path, layout: str) -> Dict[str, SequenceData]:
    ann_root = root / ('Annotations_unsupervised' if (root / 'Annotations_unsupervised').is_dir()
                       else 'Annotations')
    img_dir = _resolution_dir(root / 'JPEGImages')
    ann_dir = _resolution_dir(ann_root)
    kind = 'indexed' if layout == 'davis2017' else 'binary'
    out = {}
    for seq in sorted(p for p in img_dir.iterdir() if p.is_dir()):
        images = _images(seq)
        if not images:
            continue
        masks = {p.stem: p for p in _images(ann_dir / seq.name)}
        gt = {i: [masks[p.stem]] for i, p in enumerate(images) if p.stem in masks}
        out[seq.name] = SequenceData(seq.name, images, gt, kind, fps=24.0)
    return out


def _load_fbms_sequence(seq: Path) -> Optional[SequenceData]:
    images = _images(seq)
    gt_dir = seq / 'GroundTruth'
    if not images or not gt_dir.is_dir():
        return None
    gts = [p for p in _images(gt_dir) if 'PROB' not in p.name]
    ppm = [p for p in gts if p.suffix.lower() == '.ppm']
    kind = 'colour' if ppm else 'grey'
    if ppm:
        gts = ppm
    by_stem = {p.stem: i for i, p in enumerate(images)}
    by_number: Dict[int, int] = {}
    for i, p in enumerate(images):
        n = _trailing_number(p.stem)
        if n is not None:
            by_number.setdefault(n, i)
    gt_paths: Dict[int, List[Path]] = {}
    for path in gts:
        stem = re.sub(r'_gt$', '', path.stem)
        idx = by_stem.get(stem)
        if idx is None:
            n = _trailing_number(stem)
            idx = by_number.get(n) if n is not None else None
        if idx is None:
            raise DatasetError(f'{path}: matches no frame of {seq}')
        gt_paths[idx] = [path]
    return SequenceData(seq.name, images, gt_paths, kind, fps=30.0)


def _load_each(root: Path, is_sequence: Callable[[Path], bool],
               load: Callable[[Path], Optional[SequenceData]]) -> Dict[str, SequenceData]:
    """``root`` itself when it is a sequence, else each sub-folder: name -> loaded data."""
    seqs = [root] if is_sequence(root) else sorted(p for p in root.iterdir() if p.is_dir())
    out = {}
    for seq in seqs:
        data = load(seq)
        if data is not None:
            out[seq.name] = data
    return out


def _load_fbms(root: Path) -> Dict[str, SequenceData]:
    return _load_each(root, lambda p: (p / 'GroundTruth').is_dir(), _load_fbms_sequence)


def _load_segtrack(root: Path) -> Dict[str, SequenceData]:
    out = {}
    for seq in sorted(p for p in (root / 'JPEGImages').iterdir() if p.is_dir()):
        images = _images(seq)
        gt_dir = root / 'GroundTruth' / seq.name
        if not images or not gt_dir.is_dir():
            continue
        obj_dirs = sorted((p for p in gt_dir.iterdir() if p.is_dir()), key=_natural_key)
        folders = obj_dirs if obj_dirs else [gt_dir]
        per_obj = [{p.stem: p for p in _images(d)} for d in folders]
        gt_paths: Dict[int, List[Path]] = {}
        for i, img in enumerate(images):
            found = [m.get(img.stem) for m in per_obj]
            if any(f is not None for f in found):
                gt_paths[i] = found  # type: ignore[assignment]
        out[seq.name] = SequenceData(seq.name, images, gt_paths, 'objects', fps=30.0)
    return out


def _is_cdnet(folder: Path) -> bool:
    return (folder / 'input').is_dir() and (folder / 'groundtruth').is_dir()


def _load_cdnet_sequence(seq: Path) -> Optional[SequenceData]:
    images = _images(seq / 'input')
    if not images or not _is_cdnet(seq):
        return None
    first, last = 0, None
    roi = seq / 'temporalROI.txt'
    if roi.is_file():   # the 1-based frame numbers whose ground truth is valid
        try:
            first, last = (int(v) for v in roi.read_text().split()[:2])
        except ValueError as exc:
            raise DatasetError(f'{roi}: expected two frame numbers') from exc
    by_number = {_trailing_number(p.stem): p for p in _images(seq / 'groundtruth')}
    gt_paths: Dict[int, List[Path]] = {}
    for i, img in enumerate(images):
        n = _trailing_number(img.stem)
        if n is None or n not in by_number or n < first or (last is not None and n > last):
            continue
        gt_paths[i] = [by_number[n]]
    return SequenceData(seq.name, images, gt_paths, 'cdnet', fps=30.0)


def _load_cdnet(root: Path) -> Dict[str, SequenceData]:
    return _load_each(root, _is_cdnet, _load_cdnet_sequence)


def open_dataset(root: Union[str, Path], layout: Optional[str] = None) -> Dataset:
    """Load a dataset folder (layout detected unless given)."""
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f'unknown layout {layout!r}; choose from {LAYOUTS}')
    if layout in ('davis2016', 'davis2017'):
        seqs = _load_davis(root, layout)
    elif layout == 'fbms':
        seqs = _load_fbms(root)
    elif layout == 'cdnet':
        seqs = _load_cdnet(root)
    else:
        seqs = _load_segtrack(root)
    if not seqs:
        raise DatasetError(f'{root}: no sequences with frames found ({layout} layout)')
    empty = [n for n, s in seqs.items() if not s.gt_paths]
    if len(empty) == len(seqs):
        raise DatasetError(f'{root}: no ground truth found for any sequence ({layout} layout)')
    return Dataset(root=root, layout=layout, sequences=seqs)
