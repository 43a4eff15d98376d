"""Where `ccreid demo`'s time goes: the demo run in this process with timers around its parts.

    python benchmarks/profile_demo.py [--tag fp32] [--quick] [overrides ...]   # e.g. train.amp=off

Runs ``ccreid demo`` (``ccreid.cli.main``) in a fresh folder, synthetic dataset generation
included, with wall-clock timers wrapped around: each training run and inside it dataset
generation, the training batches
(decode + transforms + collate, while training), the train step and inside it CRE, the
model's forward, backward and the optimizer update, evaluation (feature extraction and
metrics) and report.html. Each part counts only while it runs inside its phase (the
model's forward inside the train step, data loading inside training), so the parts do not
overlap; "other" is the rest of the wall time. CPU only (no device synchronisation).
Writes benchmarks/results/demo_profile_<tag>.md/.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.utils.data.dataloader as dataloader

import ccreid.cli as cli
import ccreid.data.synthetic as synthetic
import ccreid.inference.evaluator as evaluator
import ccreid.engine.trainer as trainer
from ccreid.models.cre import ClothesErasure
from ccreid.models.reid import ReIDModel
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text
from ccreid.training.step import TrainStep

#: (label, owner, attribute, phase it must run in or None, phase it opens), in table order
PARTS: List[Tuple[str, Any, str, Optional[str], Optional[str]]] = [
    ("training runs", trainer, "_train", None, "train"),
    ("  dataset generation", synthetic, "generate", "train", None),
    ("  batches (decode, transforms, collate)", dataloader._BaseDataLoaderIter, "__next__", "train", None),
    ("  train step", TrainStep, "__call__", "train", "step"),
    ("    CRE", ClothesErasure, "forward", "step", None),
    ("    model forward", ReIDModel, "forward", "step", None),
    ("    backward", torch.Tensor, "backward", "step", None),
    ("    optimizer update", torch.amp.GradScaler, "step", "step", None),
    ("  evaluation", trainer, "evaluate_splits", "train", "eval"),
    ("    feature extraction", evaluator, "extract_features", "eval", None),
    ("    metrics", evaluator, "_score", "eval", None),
    ("report.html", cli, "_write_report", None, "report"),
]


class Timers:
    """Seconds and calls per part; a stack of open phases."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}
        self.phases: List[str] = []

    @contextmanager
    def part(self, label: str, phase: Optional[str]) -> Iterator[None]:
        if phase is not None:
            self.phases.append(phase)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
            self.calls[label] = self.calls.get(label, 0) + 1
            if phase is not None:
                self.phases.pop()

    def wrap(self, label: str, func: Callable, inside: Optional[str], opens: Optional[str]) -> Callable:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if inside is not None and (not self.phases or self.phases[-1] != inside):
                return func(*args, **kwargs)
            with self.part(label, opens):
                return func(*args, **kwargs)
        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="default", help="results file suffix")
    parser.add_argument("--quick", action="store_true", help="profile `ccreid demo --quick` (a smoke run)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for the demo")
    args = parser.parse_args()
    timers = Timers()
    for label, owner, attr, inside, opens in PARTS:
        setattr(owner, attr, timers.wrap(label.strip(), getattr(owner, attr), inside, opens))
    results = Path("benchmarks/results").resolve()
    work = Path(tempfile.mkdtemp())
    os.chdir(work)
    start = time.perf_counter()
    assert cli.main(["demo", "--quiet", "--out", "out", *(["--quick"] if args.quick else []), *args.overrides]) == 0
    wall = time.perf_counter() - start
    command = " ".join(["python benchmarks/profile_demo.py", f"--tag {args.tag}", *(["--quick"] if args.quick else []),
                        *args.overrides])
    parts = {label.strip(): {"seconds": round(timers.seconds.get(label.strip(), 0.0), 1),
                             "calls": timers.calls.get(label.strip(), 0)} for label, *_ in PARTS}
    top = [label for label, *_ in PARTS if not label.startswith(" ")]
    parts["other (start-up, data setup, results)"] = {
        "seconds": round(wall - sum(timers.seconds.get(p, 0.0) for p in top), 1), "calls": 0}
    result = {"command": command, "machine": machine_info(torch.device("cpu")), "wall_s": round(wall, 1),
              "parts": parts}
    write_json(results / f"demo_profile_{args.tag}.json", result)
    lines = [f"# Where `ccreid demo` spends its time ({args.tag})", "", f"Command: `{command}`  ",
             f"Machine: {result['machine']}", "", f"Wall time: {wall:.0f} s (the demo run in-process; imports before "
             "it are not counted).", "", "| part | seconds | share | calls |", "|---|---:|---:|---:|"]
    labels = [label for label, *_ in PARTS] + ["other (start-up, data setup, results)"]
    for label in labels:
        row = parts[label.strip()]
        indent = "&nbsp;" * 4 * ((len(label) - len(label.lstrip())) // 2)
        lines.append(f"| {indent}{label.strip()} | {row['seconds']:.1f} | {100 * row['seconds'] / wall:.1f} % "
                     f"| {row['calls']} |")
    write_text(results / f"demo_profile_{args.tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
