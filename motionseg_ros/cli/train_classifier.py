"""``motionseg train-classifier``: train the trajectory classifier (synthetic + real windows)."""

from __future__ import annotations

import argparse

from motionseg_ros.cli import CliError
from motionseg_ros.cli._training_args import add_schedule_options, schedule_overrides


def add_parser(subparsers) -> None:
    """Register the sub-command."""
    p = subparsers.add_parser(
        'train-classifier', help='train the learned trajectory classifier on synthetic data',
        description='Train the moseg trajectory classifier on procedurally generated windows, '
                    'optionally mixed with real tracks of annotated DAVIS-layout video '
                    '(CPU-friendly; see config/training/*.yaml). Writes logs, checkpoints and '
                    'model.pth into OUTPUT.')
    p.add_argument('--config', required=True, help='training YAML (config/training/*.yaml)')
    p.add_argument('--output', required=True, help='output folder')
    p.add_argument('--resume', action='store_true', help='continue from OUTPUT/last.pth')
    add_schedule_options(p)
    p.add_argument('--real-root', default=None,
                   help='override data.real.root: DAVIS-layout folder of real training video '
                        '(e.g. DAVIS-2016 train from ../shared/tools/davis2016_train.sh)')
    p.add_argument('--real-ratio', type=float, default=None,
                   help='override data.real.ratio: probability that a step takes a real window')
    p.add_argument('--real-cache', default=None,
                   help='override data.real.cache: folder for the extracted real windows')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, train, print the summary."""
    from motionseg_ros.training.train import TrainingError, load_training_config, train
    overrides = schedule_overrides(args)
    real = {key: value for key, value in (('root', args.real_root), ('ratio', args.real_ratio),
                                          ('cache', args.real_cache)) if value is not None}
    if real:
        overrides['data'] = {'real': real}
    try:
        cfg = load_training_config(args.config, overrides)
        summary = train(cfg, args.output, resume=args.resume,
                        log=lambda msg: print(msg, flush=True))
    except TrainingError as exc:
        raise CliError(str(exc)) from exc
    val = summary['final_val']
    print(f"done: {summary['steps']} steps in {summary['training_time_s'] / 60:.1f} min; "
          f"validation AUC {val['auc']:.4f} F1 {val['f1']:.4f}; weights {args.output}/model.pth")
    return 0
