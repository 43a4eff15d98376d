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

``--holdout-ids N`` scores on a same-domain validation set instead: the benchmark's own
generator (seed, cameras and options of ``configs/synthetic.yaml``) rendered with ``N``
more identities after its test identities, and only those ``N`` identities (query and
gallery built as the benchmark's test split) are scored, through the ``custom`` CSV
dataset. Those people were never trained on and are not in the benchmark's test split,
but they walk past the same cameras, unlike the other-seed datasets above.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import List

from ccreid.commands.tester import test_checkpoint
from ccreid.config import load_config
from ccreid.data.synthetic import generate, read_manifest, split_identities
from ccreid.runs.results import aggregate_seeds, markdown_table
from ccreid.runtime.io import atomic_path, write_json, write_text


def holdout_overrides(extra: int) -> List[str]:
    """Render the benchmark's dataset with ``extra`` more test identities; overrides that score
    only those identities (a ``custom`` manifest of their query and gallery images)."""
    s = load_config("synthetic").data.synthetic
    root = Path(f"data/synthetic-holdout{extra}")
    generate(root, s.ids, s.outfits, s.images_per_outfit, s.height, s.width, s.seed,
             extra_test_ids=s.extra_test_ids + extra)
    first = split_identities(s.ids, s.extra_test_ids)[2].stop
    roles = {"train": "train", "gallery": "gallery", "query_sc": "query", "query_cc": "query"}
    manifest = root / "holdout.csv"
    with atomic_path(manifest) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "pid", "camid", "clothes_id", "split"))
        for split, records in read_manifest(root).items():
            for r in records:
                if split in roles and (split == "train" or r.pid >= first):
                    writer.writerow((os.path.relpath(r.path, root), r.pid, r.camid, r.clothes_id,
                                     roles[split]))
    return ["data.name=custom", f"data.root={manifest}", "train.threads=2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("LABEL", "RUN_DIR"))
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--extra-test-ids", type=int, default=0, help="test-only identities of those datasets")
    parser.add_argument("--holdout-ids", type=int, default=0,
                        help="score on N unseen identities of the benchmark's own generator instead")
    parser.add_argument("--out", default="outputs/external_val")
    parser.add_argument("--note", default="", help="text placed under the table (e.g. the selection rule)")
    args = parser.parse_args()
    if args.holdout_ids:  # one dataset, prepared once for every group
        datasets = {0: holdout_overrides(args.holdout_ids)}
    else:
        suffix = f"-x{args.extra_test_ids}" if args.extra_test_ids else ""
        datasets = {seed: [f"data.synthetic.seed={seed}", f"data.root=data/synthetic-seed{seed}{suffix}",
                           f"data.synthetic.extra_test_ids={args.extra_test_ids}", "train.threads=2"]
                    for seed in args.data_seeds}
    groups = {}
    for label, *runs in args.group:
        scored = []
        for data_seed, overrides in datasets.items():
            for run in runs:
                out = Path(args.out) / args.name / label.replace(" ", "_") / f"data{data_seed}" / Path(run).name
                scored.append(next(iter(test_checkpoint(Path(run) / "model.safetensors", out, None,
                                                        overrides).values())))
        groups[label] = {"runs": runs, "results": aggregate_seeds(scored)}
    table = markdown_table({label: g["results"] for label, g in groups.items()}, ("rank1", "mAP"))
    seeds = " ".join(map(str, args.data_seeds))
    if args.holdout_ids:
        where = (f"--holdout-ids {args.holdout_ids} ", f"Dataset: the benchmark's own generator (`configs/synthetic.yaml`, "
                 f"seed 0, same cameras) rendered with {args.holdout_ids} more identities after its test identities; "
                 f"only those {args.holdout_ids} are scored (never trained on, not in the benchmark's test split). "
                 "Mean ± std over the runs of each group.")
    else:
        where = (f"--data-seeds {seeds} " + (f"--extra-test-ids {args.extra_test_ids} " if args.extra_test_ids else ""),
                 f"Datasets: `configs/synthetic.yaml` generator options with `data.synthetic.seed` in {{{seeds}}} "
                 f"and `extra_test_ids={args.extra_test_ids}` (their test protocols: {48 + args.extra_test_ids} unseen "
                 "identities each, none shared with the benchmark's seed-0 dataset; other camera scenes). "
                 "Mean ± std over runs x datasets of each group.")
    command = f"python benchmarks/external_val.py --name {args.name} " + where[0] + " ".join(
        f'--group "{label}" ' + " ".join(g["runs"]) for label, g in groups.items())
    lines = [f"# `{args.name}`: runs scored on an independent synthetic validation set", "", where[1], "",
             f"Command: `{command}`", "", table, "", args.note, ""]
    write_json(f"benchmarks/results/{args.name}.json", {"command": command, "groups": groups, "note": args.note})
    write_text(f"benchmarks/results/{args.name}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
