"""Wall time of `ccreid demo` (default and --quick) on this machine, after installation.

    python benchmarks/bench_demo.py

Targets (issues 2, 3 and 16): the default demo (baseline + ours, dataset generation included)
under 5 minutes on a 2-core CPU with the default `train.amp=auto` (bf16 where the CPU has it)
and with `train.amp=off` (fp32, as on CPUs without bf16 instructions); `--quick` under a minute.
The runs follow one another in one process, the load average recorded before and after each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text


def timed(args: list[str], cwd: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ccreid", *args, "--quiet"], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, json.loads((cwd / "out" / "results.json").read_text())


def main() -> None:
    rows = {}
    for label, args in (("demo --quick", ["demo", "--quick"]), ("demo", ["demo"]),
                        ("demo train.amp=off", ["demo", "train.amp=off"])):
        work = Path(tempfile.mkdtemp())  # fresh folder: the synthetic dataset is generated inside the timing
        load_before = os.getloadavg()
        seconds, results = timed([*args, "--out", "out"], work)
        rows[label] = {"seconds": round(seconds, 1), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
                       "results": {p: {k: {m: round(v[m], 1) for m in ("rank1", "mAP")} for k, v in res.items()}
                                   for p, res in results["presets"].items()}}
        shutil.rmtree(work)
    result = {"machine": machine_info(torch.device("cpu")), "runs": rows}
    write_json("benchmarks/results/demo_time.json", result)
    lines = ["# `ccreid demo` wall time", "", f"Machine: {result['machine']}", "",
             "Fresh working folder each time (synthetic dataset generation, training, evaluation and report.html all inside the timing).", "",
             "| command | wall time (s) | load avg before / after (1 min) | SC top-1 (baseline / ours) | CC top-1 (baseline / ours) |",
             "|---|---:|---:|---:|---:|"]
    for label, row in rows.items():
        res = row["results"]
        sc = " / ".join(f"{res[p]['sc']['rank1']:.1f}" for p in res)
        cc = " / ".join(f"{res[p]['cc']['rank1']:.1f}" for p in res)
        load = f"{row['load_avg_before'][0]:.2f} / {row['load_avg_after'][0]:.2f}"
        lines.append(f"| `ccreid {label}` | {row['seconds']:.0f} | {load} | {sc} | {cc} |")
    write_text("benchmarks/results/demo_time.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
