"""Parameters of the flow densifier: one dataclass, one declaration per field.

The defaults are the packaged config's (``config/default.yaml`` is the product's default;
``test_registry_config`` fails when the two disagree). Every field has a :class:`RuntimeParam`
(type, range, meaning) used to validate it at construction; those not in
:data:`CONSTRUCTION_ONLY` may also change between frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping

from motionseg_ros.runtime_params import RuntimeParam

PRESETS = ('ultrafast', 'fast', 'medium')


@dataclass
class FlowParams:
    """Every setting of :class:`~motionseg_ros.densifiers.flow.FlowDensifier` (see SPECS)."""

    scale: float = 0.5
    preset: str = 'medium'
    noise_floor_px: float = 1.5
    high: float = 3.0
    low: float = 1.5
    temporal: float = 0.5
    fb_abs_px: float = 1.0
    fb_rel: float = 0.1
    z_cap: float = 10.0
    hold_frames: int = 20
    min_area: float = 0.0005
    static_ratio: float = 0.5
    continue_overlap: float = 0.3
    grabcut: bool = True
    grabcut_side: int = 220
    grabcut_iters: int = 1
    close_px: int = 5
    relative_keep: float = 0.4
    hold_lost: int = 10
    min_region_tracks: int = 2
    dense_homography: bool = True
    bg_prob: float = 0.2
    grow: float = 0.25
    smooth_px: float = 1.0
    grabcut_reuse: bool = True
    refine_iters: int = 0
    fb_refine_iters: int = -1
    grabcut_pad: float = 0.2
    grabcut_split_px: int = 8000
    grabcut_overlap: int = 16

    def __post_init__(self) -> None:
        """Check and convert every field (ValueError naming the field and its range)."""
        for spec in SPECS:
            setattr(self, spec.name, spec.convert(getattr(self, spec.name), 'densifier flow'))

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> 'FlowParams':
        """Build from config params; unknown names are refused with the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f'densifier flow: unknown parameters {unknown}; known: '
                             f'{sorted(known)}')
        return cls(**dict(params))

    def as_dict(self) -> Dict[str, Any]:
        """Return field -> value."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _p(name: str, kind: type, description: str, low: Any = None, high: Any = None,
       choices: Any = None) -> RuntimeParam:
    return RuntimeParam(name, kind, description, low, high, choices)


SPECS = (
    _p('scale', float, 'Flow resolution (fraction of the input).', 0.1, 1.0),
    _p('preset', str, 'DIS optical flow preset.', choices=PRESETS),
    _p('noise_floor_px', float, 'Least noise scale (input px) of the residual.', 0.01, 50.0),
    _p('high', float, 'Hysteresis: score (noise units) that seeds a region.', 0.0, 100.0),
    _p('low', float, 'Hysteresis: score (noise units) a region extends to.', 0.0, 100.0),
    _p('temporal', float, 'Weight of the flow-warped previous score.', 0.0, 1.0),
    _p('fb_abs_px', float, 'Forward-backward tolerance (input px).', 0.0, 100.0),
    _p('fb_rel', float, 'Forward-backward tolerance per px of flow.', 0.0, 10.0),
    _p('z_cap', float, 'Largest score (noise units) of a pixel.', 0.1, 1000.0),
    _p('hold_frames', int, 'Frames a silent object keeps its moved mask while its tracks are '
       'still dynamic.', 0, 10000),
    _p('min_area', float, 'Smallest object region, as a fraction of the image area.',
       0.0, 0.5),
    _p('static_ratio', float, 'A region is rejected when its dynamic tracks are fewer than '
       'this times its static ones.', 0.0, 100.0),
    _p('continue_overlap', float, 'Overlap with a previous mask that keeps a region without '
       'dynamic tracks.', 0.0, 1.0),
    _p('grabcut', bool, 'Refine each new mask by GrabCut in its box.'),
    _p('grabcut_side', int, 'GrabCut box side (px) the crop is scaled to.', 16, 4096),
    _p('grabcut_iters', int, 'GrabCut iterations.', 1, 20),
    _p('close_px', int, 'Size (flow px) of the closing that cleans a mask.', 1, 99),
    _p('relative_keep', float, 'Drop regions whose mean score is below this fraction of the '
       "strongest region's.", 0.0, 1.0),
    _p('hold_lost', int, 'Frames a silent object keeps its moved mask once its tracks are '
       'gone.', 0, 10000),
    _p('min_region_tracks', int, 'Dynamic tracks a region needs to start an object.',
       1, 10000),
    _p('dense_homography', bool, 'Fit the background on the dense flow (area-weighted) '
       "instead of taking the tracks' homography."),
    _p('bg_prob', float, 'Static tracks below this probability are certain background for '
       'GrabCut.', 0.0, 1.0),
    _p('grow', float, 'How far (fraction of the box) GrabCut may extend a mask.', 0.0, 1.0),
    _p('smooth_px', float, 'Gaussian smoothing (flow px) of the mask contour before '
       'upsampling (0: none).', 0.0, 20.0),
    _p('grabcut_reuse', bool, "Start GrabCut from the object's colour models of the previous "
       'frame instead of a k-means initialisation.'),
    _p('refine_iters', int, 'DIS variational refinement iterations of the current->previous '
       "flow (-1: the preset's).", -1, 100),
    _p('fb_refine_iters', int, 'DIS variational refinement iterations of the '
       'previous->current flow (-1: as refine_iters).', -1, 100),
    _p('grabcut_pad', float, "Margin around the mask's box given to GrabCut (fraction of the "
       'box).', 0.0, 2.0),
    _p('grabcut_split_px', int, 'GrabCut crops of at least this many pixels run as two '
       'overlapping halves on two cores (0: never).', 0, 10_000_000),
    _p('grabcut_overlap', int, 'Pixels the two GrabCut halves share.', 0, 1000),
)

#: fixed once the densifier exists: the DIS objects and the stored images depend on them
CONSTRUCTION_ONLY = frozenset({'scale', 'preset', 'refine_iters', 'fb_refine_iters'})

RUNTIME = tuple(s for s in SPECS if s.name not in CONSTRUCTION_ONLY)
