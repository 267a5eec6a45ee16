"""``motionseg evaluate``: J, F and J&F of the pipeline on a dataset folder or a bag.

ROOT is a dataset folder (DAVIS 2016 / 2017, FBMS-59, SegTrack v2; layout detected) or a bag
with ground truth on /gt/masks (``motionseg make-bag --gt-masks``). Writes DIR/results.json,
DIR/results.csv, DIR/per_frame.csv, DIR/report.md with PNG plots, and prints a table.
Finished sequences are cached in DIR/sequences/ and skipped by a rerun with the same settings.

Several roots, each NAME=PATH (or PATH, named after its folder), are splits scored with the
same options: DIR/NAME/ holds each one's outputs as above, a table per split is printed, then
one with a row per split; DIR/results.json and DIR/report.md hold them all. E.g.
  motionseg evaluate train=../data/davis2016_train val=../shared/data/davis2016 -o out
(DAVIS-2016 train: export it with ../shared/tools/davis2016_train.sh, see its header.)

Modes: ``direct`` runs the pipeline in-process on every frame (deterministic); ``live`` replays
each sequence to a ``segment_node`` subprocess over DDS and scores what it published.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from motionseg_ros.cli import CliError

if TYPE_CHECKING:
    from motionseg_ros.evaluation.options import EvalOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        'evaluate', help='score the pipeline (J, F, J&F) on a dataset folder or a bag',
        description=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('roots', nargs='+', metavar='ROOT',
                   help='dataset folder or bag with /gt/masks; NAME=PATH names a split')
    p.add_argument('--output', '-o', required=True, help='folder for results and report')
    p.add_argument('--config', default=None, help='pipeline YAML merged over the default')
    p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                   help='config override, e.g. classifier.params.threshold=0.6 (repeatable)')
    p.add_argument('--sequences', nargs='+', default=None, help='only these sequences')
    p.add_argument('--jobs', '-j', type=int, default=1,
                   help='sequences in parallel (direct); each runs torch and OpenCV on at most '
                        'cores / jobs threads')
    p.add_argument('--mode', choices=('direct', 'live'), default='direct')
    p.add_argument('--per-object', action='store_true',
                   help='also score objects one-to-one (Hungarian matching, DAVIS-2017 style)')
    p.add_argument('--max-frames', type=int, default=None,
                   help='only the first N frames of each sequence (quick checks)')
    p.add_argument('--topic', '--image-topic', dest='image_topic', default=None, metavar='TOPIC',
                   help="a bag's image topic, as for `motionseg run --topic` (default: its only "
                        'one besides /gt/masks, or /camera/image_raw)')
    p.add_argument('--no-resume', action='store_true', help='recompute cached sequences')
    p.add_argument('--no-plots', action='store_true')
    p.add_argument('--json', default=None, metavar='FILE',
                   help='also write every split (meta, per-split summary, sequences) '
                        'to this JSON file')
    live = p.add_argument_group('live mode')
    live.add_argument('--rate', type=float, default=1.0,
                      help='replay speed factor (1 = recorded timing)')
    live.add_argument('--fps', type=float, default=None,
                      help='frame rate of dataset sequences replayed live (default: dataset)')
    live.add_argument('--node-command', default=None,
                      help='command starting the node (default: python -m '
                           'motionseg_ros.ros.segment_node with the remap and params file)')
    live.add_argument('--params-file', default=None,
                      help='node parameters (default: the packaged config/segment.yaml)')
    live.add_argument('--settle', type=float, default=3.0,
                      help='seconds to wait for late results after the last frame')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate every split, write the outputs, print the tables; exit 1 if a sequence failed."""
    from motionseg_ros.config import ConfigError, load_config
    from motionseg_ros.evaluation.evaluate import EvalOptions, EvaluationError, usable_cores
    from motionseg_ros.evaluation.report import format_split_table, write_json, write_split_report
    from motionseg_ros.evaluation.splits import check_split, parse_splits, select_sequences

    if args.jobs < 1:
        raise CliError('--jobs must be >= 1')
    if args.max_frames is not None and args.max_frames < 1:
        raise CliError('--max-frames must be >= 1')
    if not args.rate > 0:
        raise CliError('--rate must be positive')
    try:
        splits = parse_splits(args.roots)
        datasets = {s.name: check_split(s) for s in splits}   # every root before any run
        selected = select_sequences(splits, datasets, args.sequences)
        config = load_config(args.config, args.overrides)
    except (EvaluationError, ConfigError, ValueError) as exc:
        raise CliError(str(exc)) from None
    options = EvalOptions(
        config=config, mode=args.mode, per_object=args.per_object, max_frames=args.max_frames,
        jobs=args.jobs, resume=not args.no_resume, image_topic=args.image_topic,
        rate=args.rate, fps=args.fps, settle_s=args.settle,
        node_command=shlex.split(args.node_command) if args.node_command else None,
        node_params_file=args.params_file)
    output = Path(args.output)
    by_split = len(splits) > 1 or splits[0].named
    meta = {'mode': args.mode, 'config': args.config or 'default', 'overrides': args.overrides,
            'per_object': args.per_object, 'max_frames': args.max_frames,
            'machine': f'{platform.machine()} {platform.processor() or ""}'.strip()
            + f', {usable_cores()} CPUs',
            'started': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'fingerprint': options.fingerprint()}
    if args.mode == 'live':
        meta['rate'] = args.rate
    t0 = time.perf_counter()
    rows, results, failed = [], {}, 0
    for split in splits:
        if split.name not in selected:
            print(f'{split.name}: none of --sequences is here; skipped')
            continue
        if by_split:
            print(f'\n== {split.name}: {split.root}', flush=True)
        row, results[split.name] = _evaluate_root(
            split.name, split.root, output / split.name if by_split else output, options,
            selected[split.name], meta, plots=not args.no_plots)
        rows.append(row)
        failed += row['failed']
    meta['wall_s'] = round(time.perf_counter() - t0, 1)
    everything = {'meta': meta, 'summary': rows, 'splits': results}
    if by_split:
        print('\n' + format_split_table(rows))
        print(f"all splits: {write_json(output / 'results.json', everything)}  "
              f'report: {write_split_report(output, rows, meta)}')
    if args.json:
        print(f'json: {write_json(Path(args.json), everything)}')
    return 1 if failed else 0


def _evaluate_root(name: str, root: Path, output: Path, options: 'EvalOptions',
                   sequences: Optional[List[str]], meta: Dict[str, Any],
                   plots: bool) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Score one root into ``output`` (outputs, table); return its summary row and results."""
    from motionseg_ros.bags.reader import BagError
    from motionseg_ros.evaluation.datasets import DatasetError
    from motionseg_ros.evaluation.evaluate import EvaluationError, run_evaluation
    from motionseg_ros.evaluation.report import format_table, results_dict, write_outputs
    from motionseg_ros.evaluation.splits import summary_row

    t0 = time.perf_counter()
    try:
        result = run_evaluation(root, output, options, sequences,
                                progress=lambda m: print(m, flush=True))
    except (EvaluationError, DatasetError, BagError) as exc:
        raise CliError(str(exc)) from None
    meta = dict(meta, root=str(root), layout=result.layout, split=name,
                wall_s=round(time.perf_counter() - t0, 1), reused=result.reused,
                failed=result.failed)
    written = write_outputs(output, result.scores, result.summary, meta, plots=plots)
    if result.scores:
        print(format_table(result.scores, result.summary))
    print(f"results: {written['json']}  report: {written['report']}")
    if result.failed:
        print(f'{len(result.failed)} sequence(s) failed: {", ".join(result.failed)}')
    row = summary_row(name, root, result.layout, result.summary, result.failed)
    return row, results_dict(result.scores, result.summary, meta)
