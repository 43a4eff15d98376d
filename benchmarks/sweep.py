"""Sweep config variants of one preset; choose on the validation split, report test beside it.

    python benchmarks/sweep.py --name p_cre --preset ours --seeds 1 \
        --variant "p=0" model.cre.p=0 --variant "p=0.5" model.cre.p=0.5 ...

Every run uses ``train.select_on=val`` (validation evaluated at the last epoch only
unless ``train.eval_every`` is set), so the validation columns are what settings are
chosen on; the test columns are reported, never used for choosing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ccreid.commands.experiments import run_presets
from ccreid.config import load_config
from ccreid.runs.results import aggregate_seeds
from ccreid.runtime.io import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--preset", default="ours")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("LABEL", "KEY=VALUE"))
    parser.add_argument("--out", default="outputs/sweeps")
    parser.add_argument("overrides", nargs="*", help="applied to every variant")
    args = parser.parse_args()
    rows = {}
    for label, *overrides in args.variant:
        cfg = load_config(args.config, ["train.select_on=val", *args.overrides, *overrides])
        out = Path(args.out) / args.name / label.replace("/", "_").replace(" ", "_")
        summary = run_presets(cfg, [args.preset], list(range(args.seeds)), out, f"{args.name}: {label}")
        val_runs = summary["validation"][args.preset]
        rows[label] = {"overrides": overrides, "val": aggregate_seeds(val_runs), "test": summary["presets"][args.preset],
                       "seconds": summary["timings"]["per_run_s"][args.preset]}
    command = "python benchmarks/sweep.py " + " ".join(
        [f"--name {args.name} --config {args.config} --preset {args.preset} --seeds {args.seeds}"]
        + [f'--variant "{label}" ' + " ".join(o) for label, *o in args.variant] + args.overrides)
    lines = [f"# Sweep `{args.name}` ({args.preset}, {args.seeds} seed(s); chosen on validation)", "",
             f"Command: `{command}`", "",
             "| variant | val SC top-1 | val SC mAP | val CC top-1 | val CC mAP | test SC top-1 | test SC mAP "
             "| test CC top-1 | test CC mAP |", "|---|" + "---:|" * 8]
    for label, row in rows.items():
        cells = [f"{row[s][p][m]:.1f}" for s in ("val", "test") for p in ("sc", "cc") for m in ("rank1", "mAP")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    out_base = Path(args.out) / args.name
    write_json(out_base / "sweep.json", {"command": command, "rows": rows})
    write_text(out_base / "sweep.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
