"""``motionseg train-densifier``: train the mask head densifier on DAVIS-2016 train."""

from __future__ import annotations

import argparse

from motionseg_ros.cli import CliError
from motionseg_ros.cli._training_args import add_schedule_options, schedule_overrides


def add_parser(subparsers) -> None:
    """Register the sub-command."""
    p = subparsers.add_parser(
        'train-densifier', help='train the mask head densifier on DAVIS-2016 train',
        description='Record the pipeline inputs over every DAVIS-2016 train sequence (cached in '
                    'CACHE by config hash), train the mask head from scratch, choose its '
                    'threshold on the train sequences and write OUTPUT/model.pth (use it with '
                    'densifier.params.weights=OUTPUT/model.pth). See '
                    'config/training/mask_head.yaml.')
    p.add_argument('--config', required=True,
                   help='training YAML (config/training/mask_head.yaml)')
    p.add_argument('--data-root', required=True,
                   help='DAVIS-2016 train folder (../shared/tools/davis2016_train.sh exports it)')
    p.add_argument('--cache', required=True, help='folder for the recorded inputs')
    p.add_argument('--output', required=True, help='output folder')
    add_schedule_options(p)
    p.add_argument('--sequences', nargs='+', default=None, help='only these train sequences')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, train, print the summary."""
    from motionseg_ros.training.mask_head_train import TrainingError, load_training_config, train
    overrides = schedule_overrides(args)
    if args.sequences:
        overrides['data'] = {'sequences': list(args.sequences)}
    try:
        cfg = load_training_config(args.config, overrides)
        summary = train(cfg, args.data_root, args.cache, args.output,
                        log=lambda msg: print(msg, flush=True))
    except TrainingError as exc:
        raise CliError(str(exc)) from exc
    print(f"done: {summary['steps']} steps in {summary['training_time_s'] / 60:.1f} min, "
          f"loss {summary['final_loss_avg100']:.4f}, threshold {summary['threshold']} "
          f"(train J {summary['train_mean_j_at_threshold']:.4f}); "
          f"weights {args.output}/model.pth")
    return 0
