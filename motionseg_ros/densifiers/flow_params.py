"""Parameters of the flow densifier: one table declares every setting, its range and default.

The defaults are the packaged config's (``config/default.yaml`` is the product's default;
``test_registry_config`` fails when the two disagree). :class:`FlowParams`, the dataclass the
densifier and its steps read, is generated from the table, so a setting is named, typed,
bounded, described and defaulted in one line. Those not in :data:`CONSTRUCTION_ONLY` may also
change between frames.
"""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass
from typing import Any, Dict, Mapping

from motionseg_ros.runtime_params import table

SPECS = table("""
scale             float 0.1..1      0.5     Flow resolution (fraction of the input).
preset            str   ultrafast|fast|medium  medium  DIS optical flow preset.
noise_floor_px    float 0.01..50    1.5     Least noise scale (input px) of the residual.
high              float 0..100      3.0     Hysteresis: score (noise units) that seeds a region.
low               float 0..100      1.5     Hysteresis: score (noise units) a region extends to.
temporal          float 0..1        0.5     Weight of the flow-warped previous score.
fb_abs_px         float 0..100      1.0     Forward-backward tolerance (input px).
fb_rel            float 0..10       0.1     Forward-backward tolerance per px of flow.
z_cap             float 0.1..1000   10.0    Largest score (noise units) of a pixel.
hold_frames       int   0..10000    20      Frames a silent object keeps its moved mask while
  its tracks are still dynamic.
min_area          float 0..0.5      0.0005  Smallest object region, as a fraction of the image.
static_ratio      float 0..100      0.5     A region is rejected when its dynamic tracks are
  fewer than this times its static ones.
continue_overlap  float 0..1        0.3     Overlap with a previous mask that keeps a region
  without dynamic tracks.
grabcut           bool  -           true    Refine each new mask by GrabCut in its box.
grabcut_side      int   16..4096    220     GrabCut box side (px) the crop is scaled to.
grabcut_iters     int   1..20       1       GrabCut iterations.
close_px          int   1..99       5       Size (flow px) of the closing that cleans a mask.
relative_keep     float 0..1        0.4     Drop regions whose mean score is below this
  fraction of the strongest region's.
hold_lost         int   0..10000    10      Frames a silent object keeps its moved mask once
  its tracks are gone.
min_region_tracks int   1..10000    2       Dynamic tracks a region needs to start an object.
dense_homography  bool  -           true    Fit the background on the dense flow
  (area-weighted) instead of taking the tracks' homography.
bg_prob           float 0..1        0.2     Static tracks below this probability are certain
  background for GrabCut.
grow              float 0..1        0.25    How far (fraction of the box) GrabCut may extend a
  mask.
smooth_px         float 0..20       1.0     Gaussian smoothing (flow px) of the mask contour
  before upsampling (0: none).
grabcut_reuse     bool  -           true    Start GrabCut from the object's colour models of
  the previous frame instead of a k-means initialisation.
refine_iters      int   -1..100     0       DIS variational refinement iterations of the
  current->previous flow (-1: the preset's).
fb_refine_iters   int   -1..100     -1      DIS variational refinement iterations of the
  previous->current flow (-1: as refine_iters).
grabcut_pad       float 0..2        0.2     Margin around the mask's box given to GrabCut
  (fraction of the box).
grabcut_split_px  int   0..10000000 8000    GrabCut crops of at least this many pixels run as
  two overlapping halves on two cores (0: never).
grabcut_overlap   int   0..1000     16      Pixels the two GrabCut halves share.
""", with_default=True)

#: fixed once the densifier exists: the DIS objects and the stored images depend on them
CONSTRUCTION_ONLY = frozenset({'scale', 'preset', 'refine_iters', 'fb_refine_iters'})

RUNTIME = tuple(s for s in SPECS if s.name not in CONSTRUCTION_ONLY)


def _post_init(self: Any) -> None:
    """Check and convert every field (ValueError naming the field and its range)."""
    for spec in SPECS:
        setattr(self, spec.name, spec.convert(getattr(self, spec.name), 'densifier flow'))


def _from_mapping(cls: type, params: Mapping[str, Any]) -> Any:
    """Build from config params; unknown names are refused with the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f'densifier flow: unknown parameters {unknown}; known: '
                         f'{sorted(known)}')
    return cls(**dict(params))


def _as_dict(self: Any) -> Dict[str, Any]:
    """Return field -> value."""
    return {f.name: getattr(self, f.name) for f in fields(self)}


#: every setting of :class:`~motionseg_ros.densifiers.flow.FlowDensifier` (fields: SPECS)
FlowParams = make_dataclass(
    'FlowParams', [(s.name, s.kind, field(default=s.default)) for s in SPECS],
    namespace={'__post_init__': _post_init, 'from_mapping': classmethod(_from_mapping),
               'as_dict': _as_dict, '__doc__': 'Every setting of the flow densifier.',
               '__module__': __name__})
