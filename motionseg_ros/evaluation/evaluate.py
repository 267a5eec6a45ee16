"""Score the pipeline on a dataset folder or a bag, in-process (direct) or through the node (live).

Direct mode runs :class:`~motionseg_ros.pipeline.StreamingPipeline` on every frame of each
sequence in order (deterministic: same input, same config, same scores) and scores the frames
that have ground truth. Live mode replays each sequence as a bag to a running ``segment_node``
over DDS and scores what the node published, matched to the input by header stamp; a frame
without a result counts as an empty prediction and is listed, so drops cost accuracy as they
would on a robot.

Each finished sequence is cached as ``DIR/sequences/<name>.json`` together with a fingerprint
of what produced it (config, mode, options); a rerun with the same fingerprint skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from motionseg_ros.evaluation import metrics
from motionseg_ros.evaluation.datasets import Dataset, SequenceData, open_dataset
from motionseg_ros.types import Frame

GT_TOPIC = '/gt/masks'


class EvaluationError(RuntimeError):
    """The evaluation cannot run (bad input, node failure); the message says why."""


@dataclass
class EvalOptions:
    """What to evaluate and how."""

    config: Dict[str, Any]
    mode: str = 'direct'                 # direct | live
    per_object: bool = False
    max_frames: Optional[int] = None
    jobs: int = 1
    resume: bool = True
    image_topic: Optional[str] = None    # bags: default the first non-GT image topic
    # live mode
    rate: float = 1.0                    # replay speed factor (1 = recorded timing)
    fps: Optional[float] = None          # dataset sequences: frame rate of the made bags
    node_command: Optional[List[str]] = None
    node_params_file: Optional[str] = None
    settle_s: float = 3.0                # wait after the last frame for late results
    startup_timeout_s: float = 60.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of everything that changes the scores (not jobs / resume)."""
        key = {'config': self.config, 'mode': self.mode, 'per_object': self.per_object,
               'max_frames': self.max_frames, 'image_topic': self.image_topic}
        if self.mode == 'live':
            key.update({'rate': self.rate, 'fps': self.fps, 'node': self.node_command,
                        'params': self.node_params_file})
        blob = json.dumps(key, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------- inputs
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
    with BagReader(path) as bag:
        topics = bag.topics
        if gt_topic not in topics:
            raise EvaluationError(f'{path}: no ground truth topic {gt_topic} (make one with '
                                  '`motionseg make-bag ... --gt-masks`)')
        candidates = [t for t in bag.image_topics() if t != gt_topic]
        if image_topic is None:
            if not candidates:
                raise EvaluationError(f'{path}: no image topic besides {gt_topic}')
            image_topic = candidates[0]
        elif image_topic not in candidates:
            raise EvaluationError(f'{path}: no image topic {image_topic}; have {candidates}')
        gt = {}
        for im in bag.images([gt_topic], bgr=False):
            gt[im.stamp_ns] = im.image if im.image.ndim == 2 else im.image[..., 0]
        n = topics[image_topic].count
        msgtype = topics[image_topic].msgtype
    name = path.stem if path.is_file() else path.name
    return BagSequence(path, image_topic, name, gt, n, msgtype)


def _dataset_frames(seq: SequenceData, max_frames: Optional[int]
                    ) -> Iterator[Tuple[Frame, Optional[int]]]:
    """(frame, GT key or None) for a dataset sequence; stamps from the sequence rate."""
    n = len(seq) if max_frames is None else min(len(seq), max_frames)
    for i in range(n):
        frame = Frame(image=seq.image(i), stamp_ns=int(round(i * 1e9 / seq.fps)), index=i,
                      name=seq.frame_names[i])
        yield frame, (i if i in seq.gt_paths else None)


def _bag_frames(bseq: BagSequence, max_frames: Optional[int]
                ) -> Iterator[Tuple[Frame, Optional[int]]]:
    from motionseg_ros.bags.reader import BagReader
    with BagReader(bseq.path) as bag:
        for i, im in enumerate(bag.images([bseq.image_topic])):
            if max_frames is not None and i >= max_frames:
                break
            frame = Frame(image=im.image, stamp_ns=im.stamp_ns, index=i,
                          name=f'{i:05d}')
            yield frame, (im.stamp_ns if im.stamp_ns in bseq.gt_by_stamp else None)


# ----------------------------------------------------------------------------- scoring
def score_predictions(name: str, frame_names: Sequence[str], preds: Sequence[np.ndarray],
                      gts: Sequence[Tuple[np.ndarray, Optional[np.ndarray]]],
                      per_object: bool) -> metrics.SequenceScore:
    """MOS scores (and per-object ones when asked) of one sequence's annotated frames."""
    labels = [g for g, _ in gts]
    voids = [v for _, v in gts]
    score = metrics.score_sequence_mos(name, list(frame_names), preds, labels, voids)
    if per_object:
        score.objects = metrics.match_objects(preds, labels, voids)
    return score


def _run_direct(name: str, frames: Iterator[Tuple[Frame, Optional[Any]]],
                gt_of: Callable[[Any], Tuple[np.ndarray, Optional[np.ndarray]]],
                options: EvalOptions) -> metrics.SequenceScore:
    from motionseg_ros.pipeline import StreamingPipeline
    pipe = StreamingPipeline(options.config)
    names: List[str] = []
    preds: List[np.ndarray] = []
    gts: List[Tuple[np.ndarray, Optional[np.ndarray]]] = []
    latencies: List[float] = []
    n = 0
    t_start = time.perf_counter()
    try:
        for frame, key in frames:
            t0 = time.perf_counter()
            result = pipe.process(frame)
            latencies.append((time.perf_counter() - t0) * 1e3)
            n += 1
            if key is None:
                continue
            gt = gt_of(key)
            pred = result.label_image()
            if pred.shape != gt[0].shape:
                raise EvaluationError(f'{name} frame {frame.name}: prediction {pred.shape} and '
                                      f'ground truth {gt[0].shape} differ in size')
            names.append(str(frame.name))
            preds.append(pred)
            gts.append(gt)
    finally:
        pipe.close()
    wall = time.perf_counter() - t_start
    if not names:
        raise EvaluationError(f'{name}: no frame with ground truth')
    score = score_predictions(name, names, preds, gts, options.per_object)
    score.runtime = metrics.runtime_stats(latencies, n, wall)
    return score


def evaluate_dataset_sequence(seq: SequenceData, options: EvalOptions) -> metrics.SequenceScore:
    """Score one dataset sequence in the configured mode."""
    if options.mode == 'live':
        from motionseg_ros.evaluation.live import evaluate_live_sequence
        return evaluate_live_sequence(seq, options)
    return _run_direct(seq.name, _dataset_frames(seq, options.max_frames), seq.gt, options)


def evaluate_bag(bseq: BagSequence, options: EvalOptions) -> metrics.SequenceScore:
    """Score one bag in the configured mode."""
    if options.mode == 'live':
        from motionseg_ros.evaluation.live import evaluate_live_bag
        return evaluate_live_bag(bseq, options)
    return _run_direct(bseq.name, _bag_frames(bseq, options.max_frames),
                       lambda stamp: (bseq.gt_by_stamp[stamp], None), options)


# ----------------------------------------------------------------------------- orchestration
def _cache_path(output: Path, name: str) -> Path:
    safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)
    return output / 'sequences' / f'{safe}.json'


def load_cached(output: Path, name: str, fingerprint: str) -> Optional[metrics.SequenceScore]:
    """Return the cached score of ``name`` if it was made with the same fingerprint."""
    path = _cache_path(output, name)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get('fingerprint') != fingerprint:
        return None
    return metrics.SequenceScore.from_dict(data['score'])


def save_cached(output: Path, score: metrics.SequenceScore, fingerprint: str) -> None:
    """Write one sequence's score atomically (a killed run never leaves half a file)."""
    path = _cache_path(output, score.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps({'fingerprint': fingerprint, 'score': score.to_dict()},
                              default=_json_default))
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _worker(kind: str, item: Any, options: EvalOptions) -> Dict[str, Any]:
    """Process-pool entry: score one sequence, return it as a dict (picklable)."""
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # noqa: BLE001 - torch is optional for the classical pipeline
        pass
    # Each sequence runs in a fresh thread: OpenCV's RNG (RANSAC / USAC) is per thread, so a
    # sequence never inherits the random state left by the one before it in this process, and
    # scores do not depend on --jobs or the order (the node's worker thread starts fresh too).
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            if kind == 'bag':
                box['score'] = evaluate_bag(item, options)
            else:
                box['score'] = evaluate_dataset_sequence(item, options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            box['error'] = exc

    thread = threading.Thread(target=target, name='motionseg-eval')
    thread.start()
    thread.join()
    if 'error' in box:
        raise box['error']
    return box['score'].to_dict()


@dataclass
class EvalRun:
    """What ``run_evaluation`` produced."""

    scores: List[metrics.SequenceScore]
    summary: Dict[str, Any]
    layout: str
    reused: List[str]
    failed: Dict[str, str]


def run_evaluation(root: Path, output: Path, options: EvalOptions,
                   sequences: Optional[Sequence[str]] = None,
                   progress: Optional[Callable[[str], None]] = None) -> EvalRun:
    """Evaluate every selected sequence of ``root`` (dataset folder or bag) into ``output``."""
    say = progress or (lambda _msg: None)
    root = Path(root)
    output.mkdir(parents=True, exist_ok=True)
    items: List[Tuple[str, str, Any]] = []
    if _is_bag(root):
        if sequences:
            raise EvaluationError('--sequences does not apply to a bag (a bag is one sequence)')
        bseq = open_bag_sequence(root, options.image_topic)
        items.append(('bag', bseq.name, bseq))
        layout = 'bag'
    else:
        dataset: Dataset = open_dataset(root)
        layout = dataset.layout
        for seq in dataset.select(sequences):
            items.append(('dataset', seq.name, seq))
    fp = options.fingerprint()
    scores: Dict[str, metrics.SequenceScore] = {}
    reused: List[str] = []
    todo = []
    for kind, name, item in items:
        cached = load_cached(output, name, fp) if options.resume else None
        if cached is not None:
            scores[name] = cached
            reused.append(name)
            say(f'{name}: cached (J&F {100 * cached.jf:.1f})')
        else:
            todo.append((kind, name, item))
    failed: Dict[str, str] = {}

    def done(name: str, data: Dict[str, Any]) -> None:
        score = metrics.SequenceScore.from_dict(data)
        scores[name] = score
        save_cached(output, score, fp)
        fps = (score.runtime or {}).get('fps', float('nan'))
        say(f'{name}: J {100 * score.j_mean:.1f}  F {100 * score.f_mean:.1f}  '
            f'J&F {100 * score.jf:.1f}  ({len(score.j)} frames, {fps:.1f} fps)')

    jobs = max(1, int(options.jobs))
    if options.mode == 'live' and jobs > 1:
        say('live mode runs one sequence at a time (one node); --jobs ignored')
        jobs = 1
    if jobs == 1 or len(todo) <= 1:
        for kind, name, item in todo:
            try:
                done(name, _worker(kind, item, options))
            except Exception as exc:  # noqa: BLE001 - one bad sequence must not stop the rest
                failed[name] = _reason(exc)
                say(f'{name}: FAILED: {failed[name]}')
    else:
        import multiprocessing
        ctx = multiprocessing.get_context('spawn')
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_worker, kind, item, options): name
                       for kind, name, item in todo}
            for fut in as_completed(futures):
                name = futures[fut]
                try:
                    done(name, fut.result())
                except Exception as exc:  # noqa: BLE001
                    failed[name] = _reason(exc)
                    say(f'{name}: FAILED: {failed[name]}')
    ordered = [scores[name] for _, name, _ in items if name in scores]
    summary = metrics.aggregate(ordered)
    runtimes = [s.runtime for s in ordered if s.runtime]
    if runtimes:
        summary['runtime'] = _merge_runtime(runtimes)
    return EvalRun(ordered, summary, layout, reused, failed)


def _reason(exc: BaseException) -> str:
    """One line for a failed sequence: our own errors as they are, others with their type."""
    if isinstance(exc, EvaluationError):
        return str(exc)
    return f'{type(exc).__name__}: {exc}'


def _merge_runtime(runtimes: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """Dataset-level runtime: totals for counts, frame-weighted means for rates."""
    sent = sum(int(r.get('frames_sent', 0)) for r in runtimes)
    recv = sum(int(r.get('frames_received', 0)) for r in runtimes)
    out: Dict[str, float] = {'frames_sent': sent, 'frames_received': recv,
                             'dropped': sent - recv, 'drop_rate': (sent - recv) / sent
                             if sent else 0.0}
    for key in ('fps', 'latency_mean_ms', 'latency_p50_ms', 'latency_p95_ms'):
        vals = [(r.get(key), r.get('frames_received', 0)) for r in runtimes]
        vals = [(v, w) for v, w in vals if v is not None and np.isfinite(v) and w]
        if vals:
            out[key] = float(np.average([v for v, _ in vals], weights=[w for _, w in vals]))
    return out


def _is_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in ('.mcap', '.db3', '.bag')
    return (path / 'metadata.yaml').is_file()
