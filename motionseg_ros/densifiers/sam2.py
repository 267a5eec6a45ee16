"""Densifier ``sam2``: streaming SAM2 (or EdgeTAM) video masks prompted by the moving tracks.

Frames enter one at a time through the transformers streaming session
(``Sam2VideoProcessor.init_video_session`` + ``Sam2VideoModel(inference_session, frame=...)``),
so each object's memory bank carries its identity across frames. Which objects exist is decided
by the stream-adapted iterative prompting in :mod:`motionseg_ros.densifiers.prompting` (paper
section 10); the grouping stage's ids are ignored because SAM2 groups tracks itself, as in the
paper. Memory stays bounded: the session keeps only the current frame, each object keeps its
first conditioning frame plus the most recent ones and the last ``memory_frames`` tracked
frames, and at most ``max_objects`` objects live at once.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import numpy as np

from motionseg_ros.densifiers.prompting import Plan, PromptPlanner, points_in_masks
from motionseg_ros.registry import BackendError, register
from motionseg_ros.runtime_params import table
from motionseg_ros.stages import Densifier, StageContext
from motionseg_ros.types import Frame, ObjectMask, TrackWindow, mask_box
from motionseg_ros.weights import (free_gpu_memory, is_oom, resolve_device, resolve_dtype,
                                   resolve_weights)

LOG = logging.getLogger(__name__)

#: config.json model_type -> transformers class name
MODEL_CLASSES = {'sam2_video': 'Sam2VideoModel', 'edgetam_video': 'EdgeTamVideoModel'}
#: the prompting thresholds, changeable at run time (ranges of PromptPlanner.validate)
PLANNER_RUNTIME = table("""
min_uncovered     int   1..10000  Uncovered dynamic tracks that prompt a new object.
min_coverage      float 0..1      Re-prompt below this fraction of the object's dynamic tracks
  inside its mask.
min_tracks        int   0..10000  Dynamic tracks an object's mask must hold to be kept.
grace_frames      int   0..10000  Frames an object may hold too few tracks.
merge_iou         float 0.01..1   IoU above which two objects are duplicates.
merge_containment float 0.01..1   Containment above which two objects are duplicates.
merge_frames      int   1..1000   Consecutive duplicate frames before a merge.
max_objects       int   1..100    Most objects tracked at once.
reprompt_interval int   0..10000  Least frames between two prompts of an object.
dilation          int   0..100    Pixels masks grow by before a track counts as uncovered.
""")
PLANNER_PARAMS = tuple(p.name for p in PLANNER_RUNTIME)


def warn(ctx: Optional[StageContext], message: str) -> None:
    """Log a degradation and leave it in ``ctx.scratch['warnings']`` for the result."""
    LOG.warning(message)
    if ctx is not None:
        ctx.scratch.setdefault('warnings', []).append(message)


@register('densifier', 'sam2')
class Sam2Densifier(Densifier):
    """Per-object masks from a streaming SAM2/EdgeTAM session, prompted by dynamic tracks."""

    # the model, device, dtype and memory sizes are fixed once the session exists
    runtime_params = PLANNER_RUNTIME + table("""
mask_threshold    float -1e6..1e6  Logit above which a pixel belongs to a mask.
""")

    def __init__(self, model: str = 'sam2.1-hiera-tiny', model_type: str = 'auto',
                 device: str = 'auto', dtype: str = 'auto', mask_threshold: float = 0.0,
                 min_uncovered: int = 6, min_coverage: float = 0.7, min_tracks: int = 6,
                 grace_frames: int = 8, merge_iou: float = 0.9, merge_containment: float = 0.9,
                 merge_frames: int = 3, max_objects: int = 8, reprompt_interval: int = 8,
                 dilation: int = 4, memory_frames: int = 0, max_cond_frames: int = 3) -> None:
        """Load the model from the local folder ``model`` (transformers layout).

        ``model_type``: auto (from config.json) | sam2 | edgetam. ``memory_frames``: tracked
        frames kept per object (0 = what the model attends to: max(num_maskmem, object
        pointers)). ``max_cond_frames``: prompted frames kept per object (the first one plus
        the most recent). The other parameters are :class:`PromptPlanner`'s thresholds.
        """
        import torch
        import transformers

        self.model_path = resolve_weights(model, 'densifier sam2', kind='dir',
                                          hub_id='facebook/sam2.1-hiera-tiny')
        import json
        with open(self.model_path / 'config.json', encoding='utf-8') as fh:
            found_type = json.load(fh).get('model_type', '')
        wanted = {'auto': found_type, 'sam2': 'sam2_video', 'edgetam': 'edgetam_video'}.get(
            str(model_type).lower())
        if wanted is None:
            raise BackendError(f'densifier sam2: model_type {model_type!r} is not one of '
                               'auto, sam2, edgetam')
        if wanted not in MODEL_CLASSES:
            raise BackendError(f'densifier sam2: {self.model_path} holds a {found_type!r} model; '
                               f'expected one of {sorted(MODEL_CLASSES)} (a *video* checkpoint)')
        if found_type != wanted:
            raise BackendError(f'densifier sam2: model_type {model_type!r} asks for {wanted!r} '
                               f'but {self.model_path} holds {found_type!r}')
        cls = getattr(transformers, MODEL_CLASSES[wanted], None)
        if cls is None:
            raise BackendError(f'densifier sam2: transformers {transformers.__version__} has no '
                               f'{MODEL_CLASSES[wanted]}')
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = cls.from_pretrained(str(self.model_path), local_files_only=True,
                                         dtype=self.dtype).to(self.device).eval()
        self.processor = transformers.Sam2VideoProcessor.from_pretrained(
            str(self.model_path), local_files_only=True)
        # Meta's predictor resizes frames with PIL's bicubic filter; transformers' processor
        # defaults to bilinear (pixel gap 0.23 -> 0.035, see docs/paper-fidelity.md)
        from transformers.image_utils import PILImageResampling
        self.processor.image_processor.resample = PILImageResampling.BICUBIC
        self.model_type = wanted
        self.mask_threshold = float(mask_threshold)
        cfg = self.model.config
        attended = max(int(cfg.num_maskmem), int(cfg.max_object_pointers_in_encoder))
        self.memory_frames = int(memory_frames) if int(memory_frames) > 0 else attended
        self.max_cond_frames = max(1, int(max_cond_frames))
        self.planner = PromptPlanner(
            min_uncovered=min_uncovered, min_coverage=min_coverage, min_tracks=min_tracks,
            grace_frames=grace_frames, merge_iou=merge_iou, merge_containment=merge_containment,
            merge_frames=merge_frames, max_objects=max_objects,
            reprompt_interval=reprompt_interval, dilation=dilation)
        self._torch = torch
        self.reset()

    # ------------------------------------------------------------------ control
    def __getattr__(self, name: str) -> Any:
        """Expose the planner's thresholds as this stage's parameters."""
        if name in PLANNER_PARAMS and 'planner' in self.__dict__:
            return getattr(self.__dict__['planner'], name)
        raise AttributeError(name)

    def apply_params(self, values: Dict[str, Any]) -> None:
        """Apply validated values: the prompting thresholds belong to the planner."""
        for key, value in values.items():
            setattr(self.planner if key in PLANNER_PARAMS else self, key, value)

    def reset(self) -> None:
        """Start a new stream: a fresh session, no objects."""
        self.session = self.processor.init_video_session(
            inference_device=self.device, dtype=self.dtype, max_vision_features_cache_size=1)
        self.planner.reset()
        self._frame_idx = -1
        self._next_id = 1
        self._prev_masks: Optional[np.ndarray] = None
        self._prev_ids: List[int] = []

    def close(self) -> None:
        """Free the model (and GPU memory)."""
        self.__dict__.pop('model', None)
        self.__dict__.pop('session', None)
        free_gpu_memory()

    @property
    def object_ids(self) -> List[int]:
        """Ids of the objects the session tracks now."""
        return [int(i) for i in self.session.obj_ids]

    def memory_stats(self) -> Dict[str, int]:
        """Sizes of everything that could grow with the stream (for tests and diagnostics)."""
        s = self.session
        outs = s.output_dict_per_obj.values()
        return {
            'objects': len(s.obj_ids),
            'frames': len(s.processed_frames or {}),
            'vision_cache': len(s.cache._vision_features),
            'cond_outputs': sum(len(o['cond_frame_outputs']) for o in outs),
            'non_cond_outputs': sum(len(o['non_cond_frame_outputs']) for o in outs),
            'tracked_entries': sum(len(v) for v in s.frames_tracked_per_obj.values()),
            'point_inputs': sum(len(v) for v in s.point_inputs_per_obj.values()),
            'owned_tracks': len(self.planner.owner),
        }

    # ------------------------------------------------------------------ processing
    def densify(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                object_ids: np.ndarray, prob: np.ndarray, ctx: StageContext
                ) -> List[ObjectMask]:
        """Prompt, run the session on ``frame``, update objects; return their masks."""
        self._frame_idx += 1
        t = self._frame_idx
        h, w = frame.size
        n = window.num_tracks
        dynamic = np.asarray(dynamic, bool).reshape(-1)
        prob = np.asarray(prob, np.float32).reshape(-1)
        if dynamic.shape[0] != n or prob.shape[0] != n:
            raise ValueError(f'densifier sam2: dynamic {dynamic.shape} / prob {prob.shape} do '
                             f'not match {n} tracks')
        if n and window.num_frames:
            xy_now, vis_now = window.xy[:, -1], window.visible[:, -1]
        else:
            xy_now, vis_now = np.zeros((n, 2), np.float32), np.zeros(n, bool)
        prev_ok = (window.num_frames >= 2 and self._prev_masks is not None
                   and self._prev_masks.shape[1:] == (h, w))
        plan = self.planner.plan(
            t, window.ids, xy_now, vis_now, dynamic, self._prev_ids,
            masks_prev=self._prev_masks if prev_ok else None,
            xy_prev=window.xy[:, -2] if prev_ok else None,
            visible_prev=window.visible[:, -2] if prev_ok else None)
        if not self.session.obj_ids and not plan.new:
            self._prev_masks, self._prev_ids = None, []
            return []
        image = np.ascontiguousarray(frame.image[..., ::-1])  # BGR -> RGB
        mask_logits, logits, ids = self._run(image, t, plan, ctx)
        if ids is None:
            self._prev_masks, self._prev_ids = None, []
            return []
        masks = mask_logits > self.mask_threshold
        upd = self.planner.update(t, window.ids, xy_now, vis_now, dynamic, ids, masks)
        remove = set(upd.drop)
        for keep, gone in upd.merges:
            self.planner.forget([gone], into=keep)
            remove.add(gone)
        if remove:
            self.planner.forget(sorted(remove))
            self._remove_objects(sorted(remove))
        self._trim(t)
        keep_idx = [k for k, oid in enumerate(ids) if oid not in remove]
        self._prev_ids = [ids[k] for k in keep_idx]
        self._prev_masks = masks[keep_idx] if keep_idx else None
        inside = points_in_masks(masks, xy_now, dynamic & vis_now)
        out = []
        for k in keep_idx:
            held = inside[k]
            score = (float(prob[held].mean()) if held.any()
                     else float(1.0 / (1.0 + np.exp(-logits[k]))))
            out.append(ObjectMask(id=ids[k], label=0, mask=masks[k], score=score,
                                  box=mask_box(masks[k]), num_dynamic_tracks=int(held.sum())))
        return out

    def _run(self, image: np.ndarray, t: int, plan: Plan, ctx: StageContext):
        """Add the plan's prompts and run the session on frame ``t``, degrading on GPU OOM."""
        for attempt in range(3):
            try:
                return self._prompt_and_forward(image, t, plan)
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(exc):
                    raise
                free_gpu_memory()
                self.session.processed_frames = {}
                live = self.object_ids
                if not live or attempt == 2:
                    warn(ctx, f'sam2: GPU out of memory on frame {t}; no masks this frame')
                    return None, None, None
                newest = max(live)
                self.planner.max_objects = max(1, len(live) - 1)
                self.planner.forget([newest])
                self._remove_objects([newest])
                plan = Plan()
                warn(ctx, f'sam2: GPU out of memory; dropped object {newest} and lowered '
                          f'max_objects to {self.planner.max_objects}')
        return None, None, None

    def _prompt_and_forward(self, image: np.ndarray, t: int, plan: Plan):
        """Add prompts at frame ``t``, run the model; return (logits, object scores, ids).

        ``logits`` are the mask logits at frame size, (K, H, W) float32.
        """
        torch = self._torch
        h, w = image.shape[:2]
        inputs = self.processor(images=image, device=self.device, return_tensors='pt')
        prompted = []
        for prompt in plan.reprompt + plan.new:
            oid = prompt.object_id
            if oid is None:
                oid = self._next_id
                self._next_id += 1
            self._forget_frame(oid, t)
            self.processor.add_inputs_to_inference_session(
                self.session, frame_idx=t, obj_ids=oid,
                input_points=[[prompt.points.astype(float).tolist()]],
                input_labels=[[prompt.labels.astype(int).tolist()]],
                original_size=(h, w))
            self.planner.register(oid, t)
            prompted.append(oid)
        # every prompted object (not only the last call's) must count as having new inputs
        self.session.obj_with_new_inputs = list(prompted)
        # transformers' Sam2VideoModel encodes all objects' memories in one batch and binarises
        # every mask when any object was prompted; Meta's SAM2 binarises only prompted ones
        split = (bool(prompted) and len(prompted) < len(self.session.obj_ids)
                 and hasattr(self.model, '_batch_encode_memories'))
        with torch.inference_mode():
            out = self.model(inference_session=self.session,
                             frame=inputs.pixel_values[0].to(self.device, self.dtype),
                             frame_idx=t, run_mem_encoder=not split)
            if split:
                self._encode_memories(t, set(prompted))
            logits = self.processor.post_process_masks(
                [out.pred_masks.float()], original_sizes=[[h, w]], binarize=False)[0]
        obj_logits = out.object_score_logits.float().reshape(-1).cpu().numpy()
        return logits[:, 0].cpu().numpy(), obj_logits, [int(i) for i in out.object_ids]

    def _encode_memories(self, t: int, prompted: set) -> None:
        """Encode frame ``t``'s memories in two batches, prompted and tracked objects.

        Prompted objects get binarised masks (as Meta's SAM2 does for clicked frames), tracked
        ones their soft masks.
        """
        s = self.session
        groups: Dict[bool, tuple] = {True: ([], [], []), False: ([], [], [])}
        for oid in s.obj_ids:
            outs = s.output_dict_per_obj[s._obj_id_to_idx[oid]]
            rec = outs['cond_frame_outputs'].get(t) or outs['non_cond_frame_outputs'].get(t)
            if rec is None or 'high_res_masks' not in rec or 'maskmem_features' in rec:
                continue
            idxs, masks, scores = groups[int(oid) in prompted]
            idxs.append(s._obj_id_to_idx[oid])
            masks.append(rec['high_res_masks'].to(self.device))
            scores.append(rec['object_score_logits'])
        for from_points, (idxs, masks, scores) in groups.items():
            if idxs:
                self.model._batch_encode_memories(
                    inference_session=s, frame_idx=t, objects_needing_memory_encoding=idxs,
                    high_res_masks_for_memory=masks, object_score_logits_for_memory=scores,
                    is_mask_from_pts_per_obj=[from_points] * len(idxs))

    # ------------------------------------------------------------------ session upkeep
    def _forget_frame(self, oid: int, t: int) -> None:
        """Make frame ``t`` a fresh conditioning frame for an existing object."""
        s = self.session
        idx = s._obj_id_to_idx.get(oid)
        if idx is None:
            return
        s.frames_tracked_per_obj[idx].pop(t, None)
        s.output_dict_per_obj[idx]['non_cond_frame_outputs'].pop(t, None)

    def _remove_objects(self, oids: List[int]) -> None:
        """Delete objects from the session, renumbering the survivors' model-side indices."""
        s = self.session
        gone = set(int(o) for o in oids)
        survivors = [o for o in s.obj_ids if int(o) not in gone]
        old_idx = {o: s._obj_id_to_idx[o] for o in survivors}
        per_idx = [s.point_inputs_per_obj, s.mask_inputs_per_obj, s.output_dict_per_obj,
                   s.frames_tracked_per_obj]
        saved = [{o: d[old_idx[o]] for o in survivors} for d in per_idx]
        s._obj_id_to_idx.clear()
        s._obj_idx_to_id.clear()
        for d in per_idx:
            d.clear()
        for new, o in enumerate(survivors):
            s._obj_id_to_idx[o] = new
            s._obj_idx_to_id[new] = o
            for d, keep in zip(per_idx, saved):
                d[new] = keep[o]
        s.obj_ids = list(survivors)
        s.obj_with_new_inputs = [o for o in s.obj_with_new_inputs if int(o) not in gone]

    def _trim(self, t: int) -> None:
        """Bound the session: current frame only, recent memories, few prompted frames."""
        s = self.session
        if s.processed_frames:
            for k in [k for k in s.processed_frames if k != t]:
                del s.processed_frames[k]
        oldest = t - self.memory_frames
        for idx, outs in s.output_dict_per_obj.items():
            non_cond = outs['non_cond_frame_outputs']
            for k in [k for k in non_cond if k < oldest]:
                del non_cond[k]
            tracked = s.frames_tracked_per_obj[idx]
            for k in [k for k in tracked if k < oldest]:
                del tracked[k]
            cond = outs['cond_frame_outputs']
            for rec in list(cond.values()) + list(non_cond.values()):
                rec.pop('high_res_masks', None)   # image-size masks, only needed to encode
            if len(cond) > self.max_cond_frames:
                keys = sorted(cond)
                keep = {keys[0]} | set(keys[-(self.max_cond_frames - 1):]
                                       if self.max_cond_frames > 1 else [])
                for k in keys:
                    if k not in keep:
                        del cond[k]
            for inputs in (s.point_inputs_per_obj[idx], s.mask_inputs_per_obj[idx]):
                for k in [k for k in inputs if k not in cond]:
                    del inputs[k]
