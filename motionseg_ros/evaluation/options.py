"""What an evaluation is told (:class:`EvalOptions`) and how it fails (:class:`EvaluationError`).

Shared by the direct (``evaluate.py``) and live (``live.py``) modes, so neither imports the other
for them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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
    image_topic: Optional[str] = None    # bags: as `motionseg run --topic` (choose_image_topic)
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
