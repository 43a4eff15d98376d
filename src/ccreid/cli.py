"""The ``ccreid`` command line: the only module that talks to the terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccreid.errors import CCReIDError

#: wide enough for the results tables when output goes to a file or pipe
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

DEMO_PRESETS = ("baseline", "ours")
ABLATION_PRESETS = ("baseline", "baseline+bsga", "baseline+cre", "baseline+bctri", "ours-wo-bsga", "ours")
#: Overrides that turn the demo config into a sub-minute smoke run.
QUICK_OVERRIDES = ["data.synthetic.ids=40", "data.synthetic.images_per_outfit=4", "train.epochs=2",
                   "train.warmup_epochs=1", "train.milestones=[]", "data.root=data/synthetic-quick"]


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CCReIDError(f"option --size: {text!r} must look like HxW, e.g. 128x64")
    return h, w


def print_results(presets: Dict[str, Dict[str, dict]], title: str) -> None:
    """A rich table: rows = presets, columns = protocol x (top-1, top-5, mAP)."""
    from ccreid.engine.results import ordered_protocols

    protocols = ordered_protocols(sorted({p for res in presets.values() for p in res}))
    table = Table(title=title)
    table.add_column("preset")
    for p in protocols:
        for m in ("top-1", "top-5", "mAP"):
            table.add_column(f"{p.upper()} {m}", justify="right")
    for preset, res in presets.items():
        cells = []
        for p in protocols:
            for key in ("rank1", "rank5", "mAP"):
                value = res.get(p, {}).get(key)
                std = res.get(p, {}).get(f"{key}_std")
                cells.append("–" if value is None else f"{value:.1f}" + (f"±{std:.1f}" if std else ""))
        table.add_row(preset, *cells)
    console.print(table)


def _log_line(record: dict) -> None:
    terms = " ".join(f"{k}={v:.3f}" for k, v in record.items()
                     if isinstance(v, float) and k not in ("lr", "images_per_s"))
    err_console.print(f"[dim]epoch {record['epoch']} iter {record['iter']} lr={record['lr']:.2e} "
                      f"{terms} img/s={record['images_per_s']:.0f}[/dim]")


def cmd_synth(args: argparse.Namespace) -> None:
    from ccreid.data.synthetic import generate

    height, width = _parse_size(args.size)
    root = generate(args.out, ids=args.ids, outfits=args.outfits, images_per_outfit=args.images_per_outfit,
                    height=height, width=width, seed=args.seed, progress=_progress(args))
    console.print(f"synthetic dataset ready in {root}")


def cmd_train(args: argparse.Namespace) -> None:
    from ccreid.config import load_config
    from ccreid.engine.results import strip_curves, write_results
    from ccreid.engine.runtime import machine_info, resolve_device
    from ccreid.engine.trainer import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, args.out, progress=_progress(args), on_log=None if args.quiet else _log_line,
                   resume=args.resume)
    presets = {result.preset: strip_curves(result.results)}
    write_results(args.out, presets, f"{result.preset} on {cfg.data.name}",
                  timings={"train_and_eval_s": round(result.seconds, 1),
                           "train_images_per_s": round(result.images_per_second, 1)},
                  validation=strip_curves({k: v for k, v in result.val_results.items() if k != "epoch"}),
                  machine=machine_info(resolve_device(cfg.train.device)))
    print_results(presets, f"{result.preset} on {cfg.data.name}")
    console.print(f"outputs in {args.out} (model.safetensors, metrics.jsonl, results.json, results.md)")


def cmd_test(args: argparse.Namespace) -> None:
    from ccreid.engine.tester import test_checkpoint

    presets = test_checkpoint(args.weights, args.out, args.config, args.overrides, progress=_progress(args))
    print_results(presets, f"evaluation of {args.weights}")
    console.print(f"results in {args.out}/results.json")


def _run_experiment(args: argparse.Namespace, presets: Sequence[str], seeds: Sequence[int],
                    overrides: List[str], title: str, jobs: int = 1) -> None:
    from ccreid.config import load_config
    from ccreid.engine.experiments import run_presets

    cfg = load_config(args.config, overrides)
    on_run: Callable[[str, int], None] = lambda p, s: err_console.print(f"[bold]training {p} (seed {s})[/bold]")
    summary = run_presets(cfg, presets, seeds, args.out, title, progress=_progress(args),
                          on_log=None if args.quiet else _log_line, on_run=None if args.quiet else on_run, jobs=jobs)
    print_results(summary["presets"], title)
    console.print(f"wrote {args.out}/results.json and {args.out}/results.md "
                  f"({summary['timings']['total_s']:.0f} s)")


def cmd_demo(args: argparse.Namespace) -> None:
    overrides = (QUICK_OVERRIDES if args.quick else []) + args.overrides
    presets = ABLATION_PRESETS if args.all else DEMO_PRESETS
    _run_experiment(args, presets, [0], overrides, "ccreid demo: synthetic clothes-changing benchmark")


def cmd_ablation(args: argparse.Namespace) -> None:
    seeds = list(range(args.seeds))
    _run_experiment(args, args.presets, seeds, args.overrides,
                    f"ablation on {args.config} ({args.seeds} seeds, mean ± std)", args.jobs)


def one_line(err: CCReIDError) -> str:
    """The user message; errors re-raised from a DataLoader worker carry it on their last line."""
    lines = str(err).strip().splitlines()
    return lines[-1].removeprefix("ccreid.errors.CCReIDError: ") if len(lines) > 1 else str(err)


def cmd_data_check(args: argparse.Namespace) -> None:
    import json

    from ccreid.data.check import DatasetUnusable, check_dataset

    try:
        report = check_dataset(args.dataset, args.root, args.parsing, args.labels, args.deep, _progress(args))
    except DatasetUnusable as err:
        if args.json:
            console.print_json(json.dumps({"dataset": args.dataset, "unusable": one_line(err)}))
        raise
    if args.json:
        print(json.dumps(report))
        return
    table = Table(title=f"{args.dataset} at {args.root}")
    for col in ("split", "images", "ids", "cameras", "clothes"):
        table.add_column(col, justify="left" if col == "split" else "right")
    rows = [("train", report["train"])] + [
        (f"{name} {part}", stats[part]) for name, stats in report["protocols"].items() for part in ("query", "gallery")
    ]
    for label, stats in rows:
        table.add_row(label, *(str(stats[k]) for k in ("images", "ids", "cameras", "clothes")))
    console.print(table)
    parsing = report["parsing"]
    console.print(f"parsing maps: {parsing['found']} found, {parsing['missing']} missing, {parsing['resized']} resized")
    for problem in report["problems"]:
        console.print(f"[yellow]problem:[/yellow] {escape(problem)}", highlight=False)
    if not report["problems"]:
        console.print("[green]no problems found[/green]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccreid", description="Clothes-changing person re-identification toolkit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--quiet", action="store_true", help="no progress bars or per-iteration logs")
        p.set_defaults(func=func)
        return p

    p = add("synth", "generate the synthetic clothes-changing dataset (cached)", cmd_synth)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ids", type=int, default=120, help="number of identities (train 50%%, val 10%%, test 40%%)")
    p.add_argument("--outfits", type=int, default=3, help="outfits per identity")
    p.add_argument("--images-per-outfit", type=int, default=6)
    p.add_argument("--size", default="128x64", help="image size HxW")

    p = add("train", "train a model and evaluate it on the dataset's protocols", cmd_train)
    p.add_argument("-c", "--config", required=True, help="YAML config file or packaged config name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=3")

    p = add("test", "evaluate a trained checkpoint", cmd_test)
    p.add_argument("--weights", required=True, help="model.safetensors of a training run (or its folder)")
    p.add_argument("-c", "--config", default=None, help="config file (default: the one saved in the weights)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/data/prcc")

    p = add("demo", "the main job: train baseline and ours on the synthetic benchmark", cmd_demo)
    p.add_argument("--quick", action="store_true", help="sub-minute smoke run")
    p.add_argument("--all", action="store_true", help="all six ablation presets")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("-c", "--config", default="synthetic", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="dotted config overrides")

    p = add("ablation", "train the ablation presets over several seeds; paper-style table", cmd_ablation)
    p.add_argument("-c", "--config", default="synthetic", help="YAML config file or packaged config name")
    p.add_argument("--presets", nargs="+", default=list(ABLATION_PRESETS), metavar="PRESET")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--out", default="outputs/ablation", help="output folder")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (CPU threads shared out)")
    p.add_argument("overrides", nargs="*", help="dotted config overrides")

    data = sub.add_parser("data", help="dataset tools", description="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = data_sub.add_parser("check", help="validate a dataset folder in seconds (no model)",
                            description="validate a dataset folder in seconds (no model)")
    p.add_argument("--dataset", required=True, help="registered dataset name (prcc, vcclothes, ltcc, ...)")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--parsing", default=None, help="parsing-map tree mirroring the image tree")
    p.add_argument("--labels", default="lip", help="parsing label set: lip, atr or a table file")
    p.add_argument("--deep", action="store_true", help="decode every image and map")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_check)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CCReIDError as err:
        err_console.print(f"[red]error:[/red] {escape(one_line(err))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
