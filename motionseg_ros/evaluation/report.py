"""Evaluation outputs: results.json, CSV tables, a Markdown report with PNG plots, a text table.

Scores are stored as fractions in JSON / CSV (as the DAVIS toolkit does) and shown as
percentages in the table and the report (as the papers do).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from motionseg_ros.evaluation.metrics import SequenceScore


def _pct(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{100 * value:.1f}'


def _num(value: Optional[float], fmt: str = '.1f') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, fmt)


def table_rows(scores: Sequence[SequenceScore], summary: Dict[str, Any]) -> List[List[str]]:
    """Rows (header first) of the per-sequence table with the mean as the last row."""
    per_object = any(s.objects for s in scores)
    head = ['sequence', 'frames', 'J', 'F', 'J&F', 'J recall']
    if per_object:
        head += ['obj J&F']
    head += ['fps', 'p95 ms', 'missing']
    rows = [head]
    for s in scores:
        rt = s.runtime or {}
        row = [s.name, str(len(s.j)), _pct(s.j_mean), _pct(s.f_mean), _pct(s.jf),
               _pct(_recall(s.j))]
        if per_object:
            row.append(_pct((s.objects or {}).get('JF')))
        row += [_num(rt.get('fps')), _num(rt.get('latency_p95_ms'), '.0f'), str(len(s.missing))]
        rows.append(row)
    rt = summary.get('runtime', {})
    mean = ['MEAN', str(summary.get('num_frames', 0)), _pct(summary.get('J')),
            _pct(summary.get('F')), _pct(summary.get('JF')), _pct(summary.get('J_recall'))]
    if per_object:
        mean.append(_pct(summary.get('per_object', {}).get('JF')))
    mean += [_num(rt.get('fps')), _num(rt.get('latency_p95_ms'), '.0f'),
             str(summary.get('missing_frames', 0))]
    rows.append(mean)
    return rows


def _recall(values: Sequence[float]) -> float:
    if not values:
        return float('nan')
    return sum(1 for v in values if v > 0.5) / len(values)


def format_table(scores: Sequence[SequenceScore], summary: Dict[str, Any]) -> str:
    """Fixed-width text table for the terminal."""
    return _fixed_width(table_rows(scores, summary), total_row=True)


def split_table_rows(rows: Sequence[Dict[str, Any]]) -> List[List[str]]:
    """Rows (header first) of the table with one line per split (``splits.summary_row``)."""
    out = [['split', 'sequences', 'frames', 'J&F', 'J', 'F', 'fps', 'failed']]
    for r in rows:
        out.append([r['split'], str(r['sequences']), str(r['frames']), _pct(r['JF']),
                    _pct(r['J']), _pct(r['F']), _num(r['fps']), str(r['failed'])])
    return out


def format_split_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Fixed-width text table with one line per split."""
    return _fixed_width(split_table_rows(rows), total_row=False)


def _fixed_width(rows: List[List[str]], total_row: bool) -> str:
    """First column left-aligned, the others right; a rule under the header (and above a total)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append('  '.join(cells))
        if k == 0 or (total_row and k == len(rows) - 2):
            lines.append('  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def _markdown_table(rows: List[List[str]]) -> str:
    out = ['| ' + ' | '.join(rows[0]) + ' |', '|' + '---|' * len(rows[0])]
    for row in rows[1:]:
        out.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(out)


def plot_results(scores: Sequence[SequenceScore], output: Path) -> List[str]:
    """Write the J&F bar chart and the J-over-time plot; return their file names."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    files = []
    if not scores:
        return files
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(scores) + 2), 4))
    names = [s.name for s in scores]
    ax.bar(range(len(scores)), [100 * s.jf for s in scores], color='tab:blue')
    ax.set_xticks(range(len(scores)))
    ax.set_xticklabels(names, rotation=60, ha='right', fontsize=8)
    ax.set_ylabel('J&F (%)')
    ax.set_ylim(0, 100)
    mean = 100 * sum(s.jf for s in scores) / len(scores)
    ax.axhline(mean, color='tab:red', linestyle='--', label=f'mean {mean:.1f}')
    ax.legend(loc='upper right')
    ax.set_title('J&F per sequence')
    fig.tight_layout()
    fig.savefig(output / 'jf_per_sequence.png', dpi=100)
    plt.close(fig)
    files.append('jf_per_sequence.png')

    cols = min(4, len(scores))
    rows = int(math.ceil(len(scores) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    for k, s in enumerate(scores):
        ax = axes[k // cols][k % cols]
        ax.plot(range(len(s.j)), [100 * v for v in s.j], color='tab:blue', linewidth=1)
        if s.missing:
            miss = set(s.missing)
            xs = [i for i, n in enumerate(s.frames) if n in miss]
            ax.scatter(xs, [100 * s.j[i] for i in xs], color='tab:red', s=6, zorder=3)
        ax.set_ylim(0, 100)
        ax.set_title(s.name, fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(len(scores), rows * cols):
        axes[k // cols][k % cols].axis('off')
    fig.suptitle('J (%) over annotated frames (red: no prediction received)', fontsize=9)
    fig.tight_layout()
    fig.savefig(output / 'j_over_time.png', dpi=100)
    plt.close(fig)
    files.append('j_over_time.png')
    return files


def results_dict(scores: Sequence[SequenceScore], summary: Dict[str, Any],
                 meta: Dict[str, Any]) -> Dict[str, Any]:
    """Return what results.json holds for one root: meta, dataset summary, every sequence."""
    return {'meta': meta, 'summary': summary,
            'sequences': {s.name: s.to_dict() for s in scores}}


def write_json(path: Path, data: Any) -> Path:
    """Write strict JSON (NaN -> null), creating the folder; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(data), indent=1, default=_default))
    return path


def write_split_report(output: Path, rows: Sequence[Dict[str, Any]],
                       meta: Dict[str, Any]) -> Path:
    """DIR/report.md of a run over several splits: the per-split table, links to each report."""
    lines = ['# Evaluation report', '']
    for key in ('config', 'mode', 'max_frames', 'machine', 'started', 'wall_s'):
        if key in meta:
            lines.append(f'- **{key}**: {meta[key]}')
    lines += ['', 'Scores in percent; each split is the mean over its sequences (DAVIS).', '',
              _markdown_table(split_table_rows(rows)), '']
    lines += [f"- {r['split']} (`{r['root']}`): [{r['split']}/report.md]({r['split']}/report.md)"
              for r in rows]
    path = output / 'report.md'
    path.write_text('\n'.join(lines + ['']))
    return path


def write_outputs(output: Path, scores: Sequence[SequenceScore], summary: Dict[str, Any],
                  meta: Dict[str, Any], plots: bool = True) -> Dict[str, Path]:
    """Write results.json, results.csv, per_frame.csv, report.md (+ PNGs) into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    written: Dict[str, Path] = {}
    written['json'] = write_json(output / 'results.json', results_dict(scores, summary, meta))

    rows = table_rows(scores, summary)
    path = output / 'results.csv'
    with path.open('w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['sequence', 'frames', 'J', 'F', 'JF', 'J_recall', 'object_JF', 'fps',
                    'latency_p50_ms', 'latency_p95_ms', 'drop_rate', 'missing_frames'])
        for s in scores:
            rt = s.runtime or {}
            w.writerow([s.name, len(s.j), s.j_mean, s.f_mean, s.jf, _recall(s.j),
                        (s.objects or {}).get('JF', ''), rt.get('fps', ''),
                        rt.get('latency_p50_ms', ''), rt.get('latency_p95_ms', ''),
                        rt.get('drop_rate', ''), len(s.missing)])
        rt = summary.get('runtime', {})
        w.writerow(['MEAN', summary.get('num_frames', 0), summary.get('J'), summary.get('F'),
                    summary.get('JF'), summary.get('J_recall'),
                    summary.get('per_object', {}).get('JF', ''), rt.get('fps', ''),
                    rt.get('latency_p50_ms', ''), rt.get('latency_p95_ms', ''),
                    rt.get('drop_rate', ''), summary.get('missing_frames', 0)])
    written['csv'] = path

    path = output / 'per_frame.csv'
    with path.open('w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['sequence', 'frame', 'J', 'F', 'missing'])
        for s in scores:
            miss = set(s.missing)
            for name, j, f in zip(s.frames, s.j, s.f):
                w.writerow([s.name, name, j, f, int(name in miss)])
    written['per_frame'] = path

    images = plot_results(scores, output) if plots else []
    lines = ['# Evaluation report', '']
    for key in ('root', 'layout', 'mode', 'config', 'per_object', 'max_frames', 'machine',
                'started', 'wall_s'):
        if key in meta:
            lines.append(f'- **{key}**: {meta[key]}')
    lines += ['', 'Scores in percent (DAVIS protocol: per-sequence means, then the mean over '
              'sequences; all objects merged into one foreground unless "obj").', '',
              _markdown_table(rows), '']
    if summary.get('runtime'):
        rt = summary['runtime']
        lines += [f"Runtime: {_num(rt.get('fps'))} fps, latency p50 "
                  f"{_num(rt.get('latency_p50_ms'), '.0f')} ms / p95 "
                  f"{_num(rt.get('latency_p95_ms'), '.0f')} ms, "
                  f"{rt.get('dropped', 0)} of {rt.get('frames_sent', 0)} frames without a "
                  'result.', '']
    if meta.get('failed'):
        lines += ['## Failed sequences', '']
        lines += [f'- {k}: {v}' for k, v in meta['failed'].items()] + ['']
    for img in images:
        lines += [f'![{img}]({img})', '']
    path = output / 'report.md'
    path.write_text('\n'.join(lines))
    written['report'] = path
    return written


def _finite(obj: Any) -> Any:
    """Replace NaN / inf by None so results.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)
