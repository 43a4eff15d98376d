"""``results.json`` / ``results.md``: one schema for train, test, demo and ablation runs.

``{"presets": {PRESET: {PROTOCOL: {"rank1", "rank5", "rank10", "mAP", "queries",
"queries_without_match"}}}, ...}`` with metrics in percent; ablation runs add
``*_std`` keys (standard deviation over seeds) and ``seeds``. Single-shot results
(``test.single_shot`` N > 0) carry ``"single_shot": N`` and their titles say so.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Sequence

from ccreid.runtime.io import write_json, write_text

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")
PROTOCOL_ORDER = ("general", "sc", "cc")
#: a protocol's number of single-shot galleries, when its metrics are their mean
SINGLE_SHOT_KEY = "single_shot"


def strip_curves(results: Dict[str, dict]) -> Dict[str, dict]:
    """Drop per-rank CMC curves (kept for plots only)."""
    return {name: {k: v for k, v in m.items() if k != "cmc"} for name, m in results.items()}


def aggregate_seeds(runs: Sequence[Dict[str, dict]]) -> Dict[str, dict]:
    """Mean and (sample) std over seeds of each protocol's metrics."""
    out: Dict[str, dict] = {}
    for name in runs[0]:
        merged: dict = {}
        for key in (k for k in METRICS if all(k in run[name] for run in runs)):  # older runs: no mINP
            values = [run[name][key] for run in runs]
            merged[key] = statistics.fmean(values)
            merged[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        merged["queries"] = runs[0][name]["queries"]
        merged["queries_without_match"] = runs[0][name]["queries_without_match"]
        if SINGLE_SHOT_KEY in runs[0][name]:
            merged[SINGLE_SHOT_KEY] = runs[0][name][SINGLE_SHOT_KEY]
        out[name] = merged
    return out


def ordered_protocols(protocols: Sequence[str]) -> List[str]:
    known = [p for p in PROTOCOL_ORDER if p in protocols]
    return known + sorted(p for p in protocols if p not in PROTOCOL_ORDER)


def results_title(title: str, presets: Dict[str, Dict[str, dict]]) -> str:
    """``title``, plus what single-shot results are when there are any."""
    shots = sorted({m[SINGLE_SHOT_KEY] for res in presets.values() for m in res.values() if SINGLE_SHOT_KEY in m})
    if not shots:
        return title
    return f"{title}, single-shot x{'/'.join(map(str, shots))} (mean over galleries of one image per identity)"


def markdown_table(presets: Dict[str, Dict[str, dict]],
                   metrics: Sequence[str] = ("rank1", "rank5", "mAP", "mINP")) -> str:
    """A paper-style table: one row per preset, columns protocol x metric (mean ± std)."""
    protocols = ordered_protocols(sorted({p for res in presets.values() for p in res}))
    head = "| preset | " + " | ".join(f"{p.upper()} {m}" for p in protocols for m in metrics) + " |"
    rule = "|---|" + "---:|" * (len(protocols) * len(metrics))
    rows = [head, rule]
    for preset, res in presets.items():
        cells = []
        for p in protocols:
            for m in metrics:
                if p not in res or m not in res[p]:
                    cells.append("–")
                elif f"{m}_std" in res[p]:
                    cells.append(f"{res[p][m]:.1f} ± {res[p][m + '_std']:.1f}")
                else:
                    cells.append(f"{res[p][m]:.1f}")
        rows.append(f"| {preset} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def write_results(out_dir: str | Path, presets: Dict[str, Dict[str, dict]], title: str, **extra) -> None:
    """Write ``results.json`` and ``results.md`` atomically into ``out_dir``."""
    out = Path(out_dir)
    write_json(out / "results.json", {"presets": presets} | extra)
    lines = [f"# {results_title(title, presets)}", "", markdown_table(presets)]
    if "notes" in extra:
        lines += ["", *extra["notes"]]
    write_text(out / "results.md", "\n".join(lines))
