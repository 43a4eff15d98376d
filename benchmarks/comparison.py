"""The comparison table (issue 14): several `ccreid ablation` folders merged into one file.

    python benchmarks/comparison.py outputs/comparison outputs/comparison_vit [--presets baseline pcb ...]
        [--carry benchmarks/results/comparison.json] [--out benchmarks/results/comparison]
        [--rename 1:ps=ps-same-position] [--benchmark "synthetic video benchmark" --config synthetic_video]

Each folder is the output of one `ccreid ablation` command (its results.json holds the
per-preset mean and std over seeds, the config, machine and time). The commands are
recorded as given with --commands (one per folder, same order). ``--presets`` keeps those
presets, in that order (a folder may hold more, e.g. an ablation's). ``--carry`` keeps the rows
and commands of an earlier comparison.json (rows not trained again). ``--rename N:OLD=NEW`` names
preset OLD of the N-th folder (0-based) NEW: a preset trained with other options (a variant) gets
a row of its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ccreid.runs.results import markdown_table
from ccreid.runtime.io import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="ccreid ablation output folders")
    parser.add_argument("--commands", nargs="+", required=True, help="the command that made each folder")
    parser.add_argument("--notes", default=None, help="a Markdown file appended to the table (what holds, what not)")
    parser.add_argument("--presets", nargs="+", default=None, help="presets to keep, in table order")
    parser.add_argument("--carry", default=None, help="an earlier comparison.json whose rows are kept")
    parser.add_argument("--out", default="benchmarks/results/comparison")
    parser.add_argument("--rename", nargs="+", default=[], metavar="N:OLD=NEW",
                        help="preset OLD of folder N (0-based) is row NEW")
    parser.add_argument("--benchmark", default="synthetic benchmark", help="what the table was measured on")
    parser.add_argument("--test-split", default="the 144-identity test split", help="the test split, in words")
    parser.add_argument("--config", default="synthetic", help="the packaged config every run used")
    args = parser.parse_args()
    renames = {}
    for item in args.rename:
        index, _, names = item.partition(":")
        old, _, new = names.partition("=")
        if not (index.isdigit() and old and new):
            parser.error(f"--rename {item!r}: write N:OLD=NEW")
        renames.setdefault(int(index), {})[old] = new
    if len(args.commands) != len(args.folders):
        parser.error("one --commands entry per folder")
    presets, runs = {}, []
    if args.carry:
        carried = json.loads(Path(args.carry).read_text())
        presets, runs = dict(carried["presets"]), list(carried["runs"])
    for index, (folder, command) in enumerate(zip(args.folders, args.commands)):
        results = json.loads((Path(folder) / "results.json").read_text())
        named = renames.get(index, {})
        presets.update({named.get(k, k): v for k, v in results["presets"].items()})
        runs.append({"folder": folder, "command": command, "seeds": results["seeds"],
                     "total_s": results["timings"]["total_s"], "per_run_s": results["timings"]["per_run_s"],
                     "train_images_per_s": results["timings"]["train_images_per_s"],
                     "machine": results["machine"], "config": results["config"]})
    if args.presets:
        missing = [p for p in args.presets if p not in presets]
        if missing:
            parser.error(f"--presets: {', '.join(missing)} in none of the folders")
        presets = {p: presets[p] for p in args.presets}
    write_json(args.out + ".json", {"presets": presets, "runs": runs})
    metrics = [m for m in ("rank1", "rank5", "mAP", "mINP")  # mINP: runs made before it was recorded lack it
               if any(m in protocol for res in presets.values() for protocol in res.values())]
    seeds = sorted({s for r in runs for s in r["seeds"]})
    lines = [f"# Methods compared on the {args.benchmark}", "",
             f"{' / '.join(metrics)} in %, mean ± std over seeds {seeds}, on {args.test_split}; "
             "model selection on the validation identities (`train.select_on=val`), never the test split.", "",
             markdown_table(presets, metrics), ""]
    for run in runs:
        per_run = {p: f"{sum(v) / len(v):.0f}" for p, v in run["per_run_s"].items()}
        lines += [f"- `{run['command']}`: {run['total_s']:.0f} s in all, mean seconds per run {per_run}; "
                  f"machine {run['machine']}"]
    lines += ["", f"Config (every run; `model.preset` and `seed` vary): `configs/{args.config}.yaml` with "
              "`train.select_on=val`, as resolved:", "", "```yaml", runs[0]["config"].rstrip(), "```"]
    if args.notes:
        lines += ["", Path(args.notes).read_text().rstrip()]
    write_text(args.out + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines[:8]))


if __name__ == "__main__":
    main()
