"""CMC curves and training curves as PNG (matplotlib's Agg renderer; optional extra ``viz``).

Training curves come from a run's ``metrics.jsonl``: one line per iteration (``epoch``,
``iter``, ``lr``, loss terms) and, when validation ran, lines ``{"epoch", "val": {protocol:
metrics}}``. Figures are built with matplotlib's object API (no pyplot global state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

from ccreid.errors import CCReIDError
from ccreid.runs.results import ordered_protocols
from ccreid.runs.runlog import loss_terms
from ccreid.runtime.io import atomic_path


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CCReIDError("plots need matplotlib: pip install 'ccreid[viz]'")
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def read_metrics(path: str | Path) -> Tuple[List[dict], List[dict]]:
    """``(iteration records, validation records)`` of a ``metrics.jsonl`` file."""
    steps, vals = [], []
    path = Path(path)
    if not path.is_file():
        raise CCReIDError(f"no training log {path}: is {path.parent} a training run folder (ccreid train --out)?")
    with open(path, errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise CCReIDError(f"metrics file {path} line {number} is not JSON; the run log is damaged")
            (vals if "val" in record else steps).append(record)
    return steps, vals


def epoch_positions(steps: Sequence[dict]) -> List[float]:
    """Each iteration's position in epochs: the j-th of n iterations of epoch e is at e-1+(j+1)/n."""
    counts: Dict[int, int] = {}
    for s in steps:
        counts[s["epoch"]] = counts.get(s["epoch"], 0) + 1
    seen: Dict[int, int] = {}
    positions = []
    for s in steps:
        seen[s["epoch"]] = seen.get(s["epoch"], 0) + 1
        positions.append(s["epoch"] - 1 + seen[s["epoch"]] / counts[s["epoch"]])
    return positions


def plot_cmc(curves: Mapping[str, Mapping[str, Sequence[float]]], out_path: str | Path, max_rank: int = 20) -> Path:
    """One panel per protocol, one CMC curve (in %) per label: ``curves[label][protocol]``."""
    protocols = ordered_protocols(sorted({p for by_protocol in curves.values() for p in by_protocol}))
    if not protocols:
        raise CCReIDError("no CMC curves to plot")
    fig = _figure(3.2 * len(protocols) + 0.6, 3.0)
    axes = fig.subplots(1, len(protocols), squeeze=False)[0]
    for ax, protocol in zip(axes, protocols):
        for label, by_protocol in curves.items():
            if protocol in by_protocol:
                cmc = list(by_protocol[protocol])[:max_rank]
                ax.plot(range(1, len(cmc) + 1), cmc, marker=".", label=label)
        ax.set(title=f"{protocol.upper()} CMC", xlabel="rank", ylabel="matching rate (%)", ylim=(0, 100.5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_path)


def plot_training(runs: Mapping[str, str | Path], out_path: str | Path) -> Path:
    """Losses, learning rate and validation top-1 over epochs for each ``label -> metrics.jsonl``.

    With one run every loss term is drawn; with several, the total loss of each run.
    """
    logs = {label: read_metrics(path) for label, path in runs.items()}
    empty = [path for label, path in runs.items() if not logs[label][0]]
    if empty:
        raise CCReIDError(f"training log {empty[0]} holds no iteration records (the run stopped before its first "
                          "log line: one every train.log_every iterations); nothing to plot")
    fig = _figure(12.0, 3.2)
    loss_ax, lr_ax, top1_ax = fig.subplots(1, 3)
    for label, (steps, vals) in logs.items():
        x = epoch_positions(steps)
        terms = loss_terms(steps[0]) if len(logs) == 1 else ["loss"]
        for term in terms:
            loss_ax.plot(x, [s.get(term, float("nan")) for s in steps], linewidth=1,
                         label=term if len(logs) == 1 else label)
        lr_ax.plot(x, [s["lr"] for s in steps], label=label)
        if vals:
            protocol = "cc" if "cc" in vals[0]["val"] else next(iter(vals[0]["val"]))
            top1_ax.plot([v["epoch"] for v in vals], [v["val"][protocol]["rank1"] for v in vals], marker="o",
                         label=f"{label} ({protocol.upper()})")
    loss_ax.set(title="training losses", xlabel="epoch", ylabel="loss")
    lr_ax.set(title="learning rate", xlabel="epoch", ylabel="lr")
    top1_ax.set(title="validation top-1", xlabel="epoch", ylabel="top-1 (%)")
    if not any(vals for _, vals in logs.values()):
        top1_ax.text(0.5, 0.5, "no validation logged\n(train.select_on=val)", ha="center", va="center",
                     transform=top1_ax.transAxes)
    for ax in (loss_ax, lr_ax, top1_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, out_path)
