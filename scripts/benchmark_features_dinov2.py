#!/usr/bin/env python3
"""CPU cost of the dinov2 features backend per mode, on a random ViT-B/14 of the real size.

    python scripts/benchmark_features_dinov2.py [--height 480 --width 854 --repeat 2 --threads 2]

Speed does not depend on weight values, so the model is a random-init ``Dinov2Model`` built from
a ``Dinov2Config`` with dinov2-base's shape (768-d, 12 layers, 12 heads, 518-px position grid),
saved as a transformers folder and loaded by the backend as the real weights are. Prints wall and
process CPU seconds per ``extract`` call (one frame, 500 tracks) for each mode. The CPU seconds
are the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    """Time each mode's extract on one frame."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--height', type=int, default=480)
    ap.add_argument('--width', type=int, default=854)
    ap.add_argument('--repeat', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--modes', default='fast,faithful')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import Dinov2Config, Dinov2Model

    from motionseg_ros import registry
    from motionseg_ros.stages import StageContext
    from motionseg_ros.types import Frame
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       mlp_ratio=4, patch_size=14, image_size=518)
    rng = np.random.default_rng(0)
    frame = Frame(image=rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8),
                  stamp_ns=0)
    xy = np.stack([rng.uniform(0, args.width, 500), rng.uniform(0, args.height, 500)], 1)
    print(f'frame {args.height}x{args.width}, random ViT-B/14, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
    with tempfile.TemporaryDirectory() as tmp:
        Dinov2Model(cfg).eval().save_pretrained(Path(tmp))
        for mode in args.modes.split(','):
            stage = registry.create('features', 'dinov2', {'model': tmp, 'device': 'cpu',
                                                           'dtype': 'float32', 'mode': mode})
            shape = stage.input_shape(args.height, args.width)
            for i in range(args.repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                stage.extract(frame, xy, StageContext())
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(f'{mode:8s} input {shape[0]}x{shape[1]} stride {stage.stride} call {i}: '
                      f'wall {wall:.2f} s, CPU {cpu:.2f} s')


if __name__ == '__main__':
    main()
