"""Score trained runs on a second, independently generated synthetic dataset (a validation
set of unseen identities that shares nothing with the benchmark's test split).

    python benchmarks/external_val.py --name sc_selection \
        --group "baseline" outputs/ablation/baseline/seed0 outputs/ablation/baseline/seed1 ... \
        --group "ours (defaults)" outputs/ablation/ours/seed0 ...

Each run's ``model.safetensors`` is evaluated with ``ccreid test`` on the test protocols
of the dataset generated with ``data.synthetic.seed=--data-seed`` (default 1) and the
same generator options, and the mean ± std per group is written to
``benchmarks/results/<name>.md/.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ccreid.engine.results import aggregate_seeds, markdown_table
from ccreid.engine.runtime import write_json, write_text
from ccreid.engine.tester import test_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("LABEL", "RUN_DIR"))
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--data-root", default="data/synthetic-seed1")
    parser.add_argument("--out", default="outputs/external_val")
    parser.add_argument("--note", default="", help="text placed under the table (e.g. the selection rule)")
    args = parser.parse_args()
    overrides = [f"data.synthetic.seed={args.data_seed}", f"data.root={args.data_root}", "train.threads=2"]
    groups = {}
    for label, *runs in args.group:
        per_run = [test_checkpoint(Path(run) / "model.safetensors", Path(args.out) / args.name / label.replace(" ", "_")
                                   / Path(run).name, overrides=overrides) for run in runs]
        groups[label] = {"runs": runs, "results": aggregate_seeds([next(iter(r.values())) for r in per_run])}
    table = markdown_table({label: g["results"] for label, g in groups.items()}, ("rank1", "mAP"))
    command = "python benchmarks/external_val.py " + f"--name {args.name} --data-seed {args.data_seed} " + " ".join(
        f'--group "{label}" ' + " ".join(g["runs"]) for label, g in groups.items())
    lines = [f"# `{args.name}`: runs scored on an independent synthetic validation set", "",
             f"Dataset: `configs/synthetic.yaml` generator options with `data.synthetic.seed={args.data_seed}` "
             "(its test protocols: unseen identities, none shared with the benchmark's seed-0 dataset). "
             "Mean ± std over the runs of each group.", "", f"Command: `{command}`", "", table, "", args.note, ""]
    write_json(f"benchmarks/results/{args.name}.json", {"command": command, "groups": groups, "note": args.note})
    write_text(f"benchmarks/results/{args.name}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
