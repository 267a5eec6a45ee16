"""Several named dataset roots (splits) in one evaluation: parsing, checks, the summary table.

The data protocol reports DAVIS-2016 *train* and *val* side by side, so ``motionseg evaluate``
takes ``NAME=PATH`` roots; each split is scored as a single root is (same options, its own
output folder and cache) and one table gives a row per split. Every root is checked before
anything runs: a missing train export must not surface after an hour spent on val.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from motionseg_ros.evaluation.datasets import Dataset, DatasetError, open_dataset
from motionseg_ros.evaluation.options import EvaluationError
from motionseg_ros.io.sources import is_bag

#: exports DAVIS-2016 train (30 sequences) in the layout of ../shared/data/davis2016
DAVIS2016_TRAIN_SCRIPT = '../shared/tools/davis2016_train.sh'
_NAME = re.compile(r'([A-Za-z0-9][A-Za-z0-9_.-]*)=(.+)')


@dataclass
class Split:
    """One dataset root and the name its results go under."""

    name: str
    root: Path
    named: bool   # given as NAME=PATH (results go to DIR/NAME/ even when it is the only one)


def parse_splits(args: Sequence[str]) -> List[Split]:
    """``PATH`` or ``NAME=PATH`` arguments -> splits; an existing path is never split at '='."""
    splits = []
    for arg in args:
        match = _NAME.fullmatch(arg)
        if match and not Path(arg).exists():
            splits.append(Split(match.group(1), Path(match.group(2)), True))
        else:
            root = Path(arg)
            splits.append(Split(root.resolve().name or str(root), root, False))
    names = [s.name for s in splits]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EvaluationError(f'two roots named {twice}: name them, e.g. train=PATH val=PATH')
    return splits


def root_hint(split: Split) -> str:
    """Where the protocol's roots come from; the train export script first for a train name."""
    train = f'DAVIS-2016 train is exported by {DAVIS2016_TRAIN_SCRIPT} (its header says how)'
    if 'train' in split.name.lower() or 'train' in str(split.root).lower():
        return train
    return f'{train}; DAVIS-2016 val is ../shared/data/davis2016'


def check_split(split: Split) -> Optional[Dataset]:
    """Open a split's dataset (``None`` for a bag) or raise an error that says how to get it."""
    where = split.root if not split.named else f'{split.name}={split.root}'
    if not split.root.exists():
        raise EvaluationError(f'{where}: no such dataset folder or bag. {root_hint(split)}')
    if is_bag(split.root):
        return None
    try:
        return open_dataset(split.root)
    except DatasetError as exc:
        raise EvaluationError(f'{where}: {exc}. {root_hint(split)}') from None


def select_sequences(splits: Sequence[Split], datasets: Dict[str, Optional[Dataset]],
                     names: Optional[Sequence[str]]) -> Dict[str, Optional[List[str]]]:
    """``--sequences`` per split: each split evaluates the named ones it has.

    One root keeps the single-root rule (every name must exist there); with several, a name
    has to exist in at least one dataset split, and a split holding none of them is left out
    (absent from the result). Bags take the names as they are (and refuse them).
    """
    if not names or len(splits) == 1:
        return {s.name: (list(names) if names else None) for s in splits}
    out: Dict[str, Optional[List[str]]] = {}
    found = set()
    for split in splits:
        dataset = datasets.get(split.name)
        if dataset is None:
            out[split.name] = list(names)
            continue
        mine = [n for n in names if n in dataset.sequences]
        found.update(mine)
        if mine:
            out[split.name] = mine
    unknown = [n for n in names if n not in found]
    if unknown and all(datasets.get(s.name) is not None for s in splits):
        have = {s.name: sorted(datasets[s.name].sequences) for s in splits}  # type: ignore
        raise EvaluationError(f'no sequence(s) {unknown} in any split; have {have}')
    return out


def summary_row(name: str, root: Path, layout: str, summary: Dict[str, Any],
                failed: Dict[str, str]) -> Dict[str, Any]:
    """One split's line of the summary table (scores as fractions, as in results.json)."""
    runtime = summary.get('runtime') or {}
    return {'split': name, 'root': str(root), 'layout': layout,
            'sequences': summary.get('num_sequences', 0), 'frames': summary.get('num_frames', 0),
            'JF': summary.get('JF'), 'J': summary.get('J'), 'F': summary.get('F'),
            'fps': runtime.get('fps'), 'failed': len(failed)}
