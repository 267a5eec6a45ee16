"""``motionseg run INPUT --output DIR``: segment the moving objects of a video or image folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from motionseg_ros.cli import CliError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` sub-command."""
    p = subparsers.add_parser(
        'run', help='segment moving objects in a video, image folder or DAVIS sequence',
        description='Segment every moving object of INPUT (a video file, a folder of images or '
                    'a DAVIS sequence folder) and write masks/, overlay.mp4, trajectories.npz '
                    'and summary.json to the output folder.')
    p.add_argument('input', metavar='INPUT',
                   help='video, image folder, DAVIS sequence or rosbag (MCAP, sqlite3, ROS 1)')
    p.add_argument('--topic', default=None, metavar='TOPIC',
                   help="a bag's image topic (default: its only one, or /camera/image_raw)")
    p.add_argument('--output', '-o', required=True, metavar='DIR', help='output folder')
    p.add_argument('--config', metavar='FILE', default=None,
                   help='YAML merged over the default config (path or packaged name)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override a config value, e.g. classifier.params.threshold=0.6')
    p.add_argument('--max-frames', type=int, default=0, metavar='N',
                   help='stop after N frames (0: all)')
    p.add_argument('--fps', type=float, default=None,
                   help="frame rate for stamps (default: the video's, 30 for folders)")
    p.add_argument('--no-video', action='store_true', help='do not write overlay.mp4')
    p.add_argument('--quiet', '-q', action='store_true', help='no progress bar')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline over the input and write the outputs."""
    from motionseg_ros.config import ConfigError, load_config
    from motionseg_ros.frame_checks import FrameError
    from motionseg_ros.io.outputs import ResultWriter
    from motionseg_ros.io.sources import SourceError, open_source
    from motionseg_ros.pipeline import StreamingPipeline
    from motionseg_ros.registry import BackendError

    if args.max_frames < 0:
        raise CliError('--max-frames must be >= 0')
    try:
        source = open_source(args.input, fps=args.fps, topic=args.topic)
    except SourceError as exc:
        raise CliError(str(exc)) from exc
    try:
        config = load_config(args.config, args.set)
        pipe = StreamingPipeline(config)
    except (ConfigError, BackendError) as exc:
        raise CliError(str(exc)) from exc
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f'{out_dir}: exists and is not a folder')
    try:
        writer = ResultWriter(out_dir, fps=source.fps, video=not args.no_video)
    except OSError as exc:
        raise CliError(f'{out_dir}: cannot create output folder: {exc}') from exc
    try:
        total = len(source)
    except TypeError:
        total = None
    if args.max_frames and total is not None:
        total = min(total, args.max_frames)
    elif args.max_frames:
        total = args.max_frames
    from tqdm import tqdm
    bar = tqdm(total=total, unit='frame', desc=source.name, disable=args.quiet,
               file=sys.stderr)
    t0 = time.perf_counter()
    count = 0
    try:
        for frame in source:
            if args.max_frames and count >= args.max_frames:
                break
            try:
                result = pipe.process(frame)
            except FrameError as exc:
                raise CliError(f'frame {frame.name}: {exc}') from exc
            writer.add(frame.name or f'{count:05d}', frame.image, result)
            count += 1
            bar.update(1)
            if result.objects:
                bar.set_postfix(objects=len(result.objects))
    except SourceError as exc:
        raise CliError(str(exc)) from exc
    finally:
        bar.close()
        pipe.close()
    if count == 0:
        raise CliError(f'{args.input}: no frame could be read')
    wall = time.perf_counter() - t0
    summary = writer.close({'input': str(args.input), 'backends': pipe.backends,
                            'wall_s': round(wall, 3), 'fps': round(count / wall, 2),
                            'config': config})
    print(f'{count} frames, {summary["num_objects"]} objects, {count / wall:.1f} frames/s; '
          f'outputs in {out_dir}/ (masks/, '
          f'{"overlay.mp4, " if writer.video else ""}trajectories.npz, summary.json)')
    return 0
