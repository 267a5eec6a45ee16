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

import copy
import dataclasses
import json
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from motionseg_ros.evaluation import metrics
from motionseg_ros.evaluation.bag_sequence import BagSequence, bag_frames, open_bag_sequence
from motionseg_ros.evaluation.datasets import Dataset, SequenceData, open_dataset
from motionseg_ros.evaluation.live import evaluate_live_bag, evaluate_live_sequence
from motionseg_ros.evaluation.options import EvalOptions, EvaluationError
from motionseg_ros.io.sources import is_bag
from motionseg_ros.types import Frame

__all__ = ['EvalOptions', 'EvalRun', 'EvaluationError', 'evaluate_bag',
           'evaluate_dataset_sequence', 'job_threads', 'run_evaluation', 'usable_cores']


# ----------------------------------------------------------------------------- inputs
def _dataset_frames(seq: SequenceData, max_frames: Optional[int]
                    ) -> Iterator[Tuple[Frame, Optional[int]]]:
    """(frame, GT key or None) for a dataset sequence; stamps from the sequence rate."""
    n = len(seq) if max_frames is None else min(len(seq), max_frames)
    for i in range(n):
        frame = Frame(image=seq.image(i), stamp_ns=int(round(i * 1e9 / seq.fps)), index=i,
                      name=seq.frame_names[i])
        yield frame, (i if i in seq.gt_paths else None)


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
    score = metrics.score_predictions(name, names, preds, gts, options.per_object)
    score.runtime = metrics.runtime_stats(latencies, n, wall)
    score.runtime.update(_threads_in_use())
    return score


def _threads_in_use() -> Dict[str, int]:
    """Return the thread counts OpenCV and (when loaded) torch ran with, for the record."""
    import cv2
    used = {'opencv_threads': int(cv2.getNumThreads())}
    if 'torch' in sys.modules:
        used['torch_threads'] = int(sys.modules['torch'].get_num_threads())
    return used


def evaluate_dataset_sequence(seq: SequenceData, options: EvalOptions) -> metrics.SequenceScore:
    """Score one dataset sequence in the configured mode."""
    if options.mode == 'live':
        return evaluate_live_sequence(seq, options)
    return _run_direct(seq.name, _dataset_frames(seq, options.max_frames), seq.gt, options)


def evaluate_bag(bseq: BagSequence, options: EvalOptions) -> metrics.SequenceScore:
    """Score one bag in the configured mode."""
    if options.mode == 'live':
        return evaluate_live_bag(bseq, options)
    return _run_direct(bseq.name, bag_frames(bseq, options.max_frames),
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


def usable_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def job_threads(jobs: int, cores: Optional[int] = None) -> int:
    """Return the threads each of ``jobs`` sequences run in parallel may use: cores // jobs."""
    return max(1, (usable_cores() if cores is None else int(cores)) // max(1, int(jobs)))


def thread_budget_config(config: Dict[str, Any], threads: int) -> Dict[str, Any]:
    """Return ``config`` with torch's and OpenCV's thread counts at most ``threads``.

    The pipeline applies them as it always does (``pipeline.opencv_threads``, the moseg
    classifier's ``threads``); 0 ("library default": every core) becomes ``threads``.
    """
    config = copy.deepcopy(config)
    pipe = config.setdefault('pipeline', {})
    opencv = int(pipe.get('opencv_threads') or 0)
    pipe['opencv_threads'] = threads if opencv <= 0 else min(opencv, threads)
    classifier = config.get('classifier') or {}
    params = classifier.get('params')
    if classifier.get('name') == 'moseg' and isinstance(params, dict):
        torch_threads = int(params.get('threads') or 0)
        params['threads'] = threads if torch_threads <= 0 else min(torch_threads, threads)
    return config


def _worker(kind: str, item: Any, options: EvalOptions, threads: int) -> Dict[str, Any]:
    """Process-pool entry: score one sequence on ``threads`` threads, return it as a dict.

    Live mode leaves the config alone: the pipeline runs in the node, with its own threads.
    """
    if options.mode != 'live':
        options = dataclasses.replace(options,
                                      config=thread_budget_config(options.config, threads))
        try:
            import torch
            torch.set_num_threads(threads)  # a backend without its own setting: the budget
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
    if is_bag(root):
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
    jobs = min(jobs, max(1, len(todo)))
    threads = job_threads(jobs)
    if jobs == 1:
        for kind, name, item in todo:
            try:
                done(name, _worker(kind, item, options, threads))
            except Exception as exc:  # noqa: BLE001 - one bad sequence must not stop the rest
                failed[name] = _reason(exc)
                say(f'{name}: FAILED: {failed[name]}')
    else:
        import multiprocessing
        ctx = multiprocessing.get_context('spawn')
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_worker, kind, item, options, threads): name
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
