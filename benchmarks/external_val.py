"""Score trained runs on a second, independently generated synthetic dataset (a validation
set of unseen identities that shares nothing with the benchmark's test split).

    python benchmarks/external_val.py --name sc_selection \
        --group "baseline" outputs/ablation/baseline/seed0 outputs/ablation/baseline/seed1 ... \
        --group "ours (defaults)" outputs/ablation/ours/seed0 ...

Each run's ``model.safetensors`` is evaluated with ``ccreid test`` on the test protocols
of the datasets generated with ``data.synthetic.seed`` in ``--data-seeds`` (default 1)
and the same generator options except ``extra_test_ids`` (``--extra-test-ids``, default 0:
48 test identities each, as the earlier selections used); the mean ± std per group, over
runs x datasets, is written to ``benchmarks/results/<name>.md/.json``.
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
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--extra-test-ids", type=int, default=0, help="test-only identities of those datasets")
    parser.add_argument("--out", default="outputs/external_val")
    parser.add_argument("--note", default="", help="text placed under the table (e.g. the selection rule)")
    args = parser.parse_args()
    groups = {}
    for label, *runs in args.group:
        scored = []
        for data_seed in args.data_seeds:
            root = f"data/synthetic-seed{data_seed}" + (f"-x{args.extra_test_ids}" if args.extra_test_ids else "")
            overrides = [f"data.synthetic.seed={data_seed}", f"data.root={root}",
                         f"data.synthetic.extra_test_ids={args.extra_test_ids}", "train.threads=2"]
            for run in runs:
                out = Path(args.out) / args.name / label.replace(" ", "_") / f"data{data_seed}" / Path(run).name
                scored.append(next(iter(test_checkpoint(Path(run) / "model.safetensors", out, None,
                                                        overrides).values())))
        groups[label] = {"runs": runs, "results": aggregate_seeds(scored)}
    table = markdown_table({label: g["results"] for label, g in groups.items()}, ("rank1", "mAP"))
    seeds = " ".join(map(str, args.data_seeds))
    command = "python benchmarks/external_val.py " + f"--name {args.name} --data-seeds {seeds} " + (
        f"--extra-test-ids {args.extra_test_ids} " if args.extra_test_ids else "") + " ".join(
        f'--group "{label}" ' + " ".join(g["runs"]) for label, g in groups.items())
    lines = [f"# `{args.name}`: runs scored on an independent synthetic validation set", "",
             f"Datasets: `configs/synthetic.yaml` generator options with `data.synthetic.seed` in {{{seeds}}} "
             f"and `extra_test_ids={args.extra_test_ids}` (their test protocols: {48 + args.extra_test_ids} unseen "
             "identities each, none shared with the benchmark's seed-0 dataset). "
             "Mean ± std over runs x datasets of each group.", "", f"Command: `{command}`", "", table, "", args.note, ""]
    write_json(f"benchmarks/results/{args.name}.json", {"command": command, "groups": groups, "note": args.note})
    write_text(f"benchmarks/results/{args.name}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
