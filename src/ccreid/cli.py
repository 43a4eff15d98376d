"""The ``ccreid`` command line: the only module that talks to the terminal."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
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

#: Overrides that turn the demo config into a sub-minute smoke run.
QUICK_OVERRIDES = ["data.synthetic.ids=40", "data.synthetic.extra_test_ids=0", "data.synthetic.images_per_outfit=4",
                   "train.epochs=2", "train.warmup_epochs=1", "train.milestones=[]", "data.root=data/synthetic-quick"]
#: The same for ``ccreid demo --video`` (the video benchmark, configs/synthetic_video.yaml).
QUICK_VIDEO_OVERRIDES = ["data.synthetic.ids=20", "data.synthetic.frames=8", "train.epochs=2", "train.warmup_epochs=1",
                         "train.milestones=[]", "train.eval_every=0", "data.root=data/synthetic_video-quick"]


DEMO_OUT = "outputs/demo"

#: what to lower when a command runs out of memory
TRAIN_MEMORY = ("lower the training batch (data.ids_per_batch x data.images_per_id) or the evaluation batch "
                "(test.batch_size)")
MEMORY_HINTS = {"ccreid train": TRAIN_MEMORY, "ccreid demo": TRAIN_MEMORY, "ccreid ablation": TRAIN_MEMORY,
                "ccreid test": "lower test.batch_size (key=value)", "ccreid extract": "lower --batch-size",
                "ccreid parse": "lower --batch", "ccreid eval": "lower --chunk (with --rerank: --rerank-impl sparse "
                "holds Q x G instead of (Q+G)^2 distances)",
                "ccreid search": "pass fewer queries at a time (--images, or the rows of --features)"}
MEMORY_HINT = "close other programs, or run it on a machine with more memory"

#: a dotted config override (``train.epochs=3``, ``plugins=[a.py]``), wherever it stands on the command line
OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.\w+)*=")
#: the largest seed the random generators take (numpy: below 2**32)
MAX_SEED = 2**32 - 1


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def bounded(kind: Callable[[str], float], option: str, low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type``: a number of ``kind`` in ``low..high``, else one line naming ``option``
    (a CCReIDError passes through argparse, so the value is checked before any work)."""
    def convert(text: str) -> float:
        value = kind(text)  # not a number: argparse's own "invalid int value"
        if not low <= value <= high:  # NaN fails too
            raise CCReIDError(f"option {option}: {text} is out of range; use {span(low, high)}")
        return value
    convert.bounds = (low, high)
    return convert


def span(low: float, high: float) -> str:
    """``low..high`` without float noise (``0.001..1048576``)."""
    return "..".join(str(int(v)) if float(v).is_integer() else str(v) for v in (low, high))


def add_number(p: argparse.ArgumentParser, flag: str, kind: Callable[[str], float], low: float, high: float,
               default: Optional[float], help_text: str = "", **kwargs) -> None:
    """A numeric option of ``p`` bounded to ``low..high`` (said in its help)."""
    p.add_argument(flag, type=bounded(kind, flag, low, high), default=default,
                   help=f"{help_text} ({span(low, high)})".lstrip(), **kwargs)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CCReIDError(f"option --size: {text!r} must look like HxW, e.g. 128x64")
    if not (32 <= h <= 2048 and 16 <= w <= 2048):
        raise CCReIDError(f"option --size: {text} is out of range; use 32..2048 x 16..2048")
    return h, w


def print_results(presets: Dict[str, Dict[str, dict]], title: str) -> None:
    """A rich table, one row per preset and protocol, columns top-1, top-5, mAP, mINP: narrow
    whatever the number of protocols (VC-Clothes has five), so it fits 120 columns."""
    from ccreid.runs.results import ordered_protocols, results_title

    protocols = ordered_protocols(sorted({p for res in presets.values() for p in res}))
    table = Table(title=results_title(title, presets))
    for col in ("preset", "protocol", "top-1", "top-5", "mAP", "mINP"):
        table.add_column(col, justify="left" if col in ("preset", "protocol") else "right", no_wrap=True)
    for preset, res in presets.items():
        for row, p in enumerate(protocols):
            cells = []
            for key in ("rank1", "rank5", "mAP", "mINP"):
                value = res.get(p, {}).get(key)
                std = res.get(p, {}).get(f"{key}_std")
                cells.append("–" if value is None else f"{value:.1f}" + (f" ± {std:.1f}" if std else ""))
            table.add_row(preset if row == 0 else "", p, *cells)
        table.add_section()
    console.print(table)


def _write_report(args: argparse.Namespace, run_dir: str) -> None:
    """``report.html`` in ``run_dir`` unless ``--no-report``; a failure is reported, never fatal."""
    if getattr(args, "no_report", False):
        return
    try:
        from ccreid.viz.report import write_report
    except ImportError as err:
        err_console.print(f"[yellow]report.html skipped:[/yellow] {err.name} is not installed "
                          "(pip install 'ccreid[viz]')")
        return
    try:
        written = write_report(run_dir, progress=_progress(args))
    except CCReIDError as err:
        err_console.print(f"[yellow]report.html skipped:[/yellow] {escape(one_line(err))}", highlight=False)
        return
    console.print(f"report: {written[0]}")


def _log_line(record: dict) -> None:
    from ccreid.runs.runlog import loss_terms

    terms = " ".join(f"{k}={record[k]:.3f}" for k in loss_terms(record))
    err_console.print(f"[dim]epoch {record['epoch']} iter {record['iter']} lr={record['lr']:.2e} "
                      f"{terms} img/s={record['images_per_s']:.0f}[/dim]")


def cmd_synth(args: argparse.Namespace) -> None:
    from ccreid.data.synthetic import generate

    height, width = _parse_size(args.size)
    root = generate(args.out, ids=args.ids, outfits=args.outfits, images_per_outfit=args.images_per_outfit,
                    height=height, width=width, seed=args.seed, progress=_progress(args),
                    extra_test_ids=args.extra_test_ids)
    console.print(f"synthetic dataset ready in {root}")


def cmd_train(args: argparse.Namespace) -> None:
    from ccreid.config import load_config
    from ccreid.engine.trainer import train
    from ccreid.runs.results import strip_curves, write_results
    from ccreid.runtime.device import machine_info, resolve_device

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    if args.resume and (out / "results.json").is_file() and (out / "model.safetensors").is_file():
        raise CCReIDError(f"{out} is a finished run (model.safetensors, results.json); evaluate it again with "
                          f"`ccreid test --weights {out / 'model.safetensors'} --out {out / 'test'}`, or train it "
                          "again with --overwrite")
    result = train(cfg, args.out, progress=_progress(args), on_log=None if args.quiet else _log_line,
                   resume=args.resume, overwrite=args.overwrite)
    if result.rank != 0:  # under torchrun, rank 0 reports for the job
        return
    presets = {result.preset: strip_curves(result.results)}
    write_results(args.out, presets, f"{result.preset} on {cfg.data.name}",
                  timings={"train_and_eval_s": round(result.seconds, 1),
                           "train_images_per_s": round(result.images_per_second, 1)},
                  validation=strip_curves({k: v for k, v in result.val_results.items() if k != "epoch"}),
                  machine=machine_info(resolve_device(cfg.train.device)))
    print_results(presets, f"{result.preset} on {cfg.data.name}")
    console.print(f"outputs in {args.out} (model.safetensors, metrics.jsonl, results.json, results.md)")
    _write_report(args, args.out)


def cmd_test(args: argparse.Namespace) -> None:
    from ccreid.commands.tester import test_checkpoint

    overrides = args.overrides + (["test.rerank=true"] if args.rerank else [])
    presets = test_checkpoint(args.weights, args.out, args.config, overrides, progress=_progress(args),
                              overwrite=args.overwrite, backend=args.backend, precision=args.precision)
    print_results(presets, f"evaluation of {args.weights}")
    console.print(f"results in {args.out}/results.json")
    _write_report(args, args.out)


def _run_experiment(args: argparse.Namespace, presets: Sequence[str], seeds: Sequence[int],
                    overrides: List[str], title: str, jobs: int = 1) -> None:
    from ccreid.commands.experiments import run_presets
    from ccreid.config import load_config

    cfg = load_config(args.config, overrides)
    on_run: Callable[[str, int], None] = lambda p, s: err_console.print(f"[bold]training {p} (seed {s})[/bold]")
    summary = run_presets(cfg, presets, seeds, args.out, title, progress=_progress(args),
                          on_log=None if args.quiet else _log_line, on_run=None if args.quiet else on_run, jobs=jobs)
    print_results(summary["presets"], title)
    console.print(f"wrote {args.out}/results.json and {args.out}/results.md "
                  f"({summary['timings']['total_s']:.0f} s)")
    _write_report(args, args.out)


def cmd_demo(args: argparse.Namespace) -> None:
    from ccreid.runs.outputs import refuse_results

    if args.video:
        args.config = "synthetic_video" if args.config == "synthetic" else args.config
        args.out = "outputs/demo-video" if args.out == DEMO_OUT else args.out
    refuse_results(args.out, args.overwrite)
    quick = QUICK_VIDEO_OVERRIDES if args.video else QUICK_OVERRIDES
    overrides = (quick if args.quick else []) + args.overrides
    from ccreid.methods import paper

    presets = paper.ABLATION if args.all else paper.DEMO
    kind = "video" if args.video else "image"
    _run_experiment(args, presets, [0], overrides, f"ccreid demo: synthetic clothes-changing {kind} benchmark")


def cmd_ablation(args: argparse.Namespace) -> None:
    from ccreid.runs.outputs import refuse_results

    refuse_results(args.out, args.overwrite)
    seeds = list(range(args.seeds))
    from ccreid.methods import paper

    presets = [name for item in args.presets or paper.ABLATION for name in item.split(",") if name]
    _run_experiment(args, presets, seeds, args.overrides,
                    f"ablation on {args.config} ({args.seeds} seeds, mean ± std)", args.jobs)


def cmd_parse(args: argparse.Namespace) -> None:
    from ccreid.runtime.distributed import setup

    if (args.dataset is None) != (args.root is None):
        raise CCReIDError("options --dataset and --root go together: --dataset NAME --root DATASET_FOLDER")
    info = setup(args.device, option="--device")  # under torchrun: this process's device and share of the images
    try:
        _parse_on(args, info)
    finally:
        info.close()


def _parse_on(args: argparse.Namespace, info) -> None:
    from ccreid.parsing import dataset_items, folder_items, inspect_checkpoint, parse_with
    from ccreid.parsing.parser import resolve_parse_amp

    amp = resolve_parse_amp(info.device, args.amp)
    items = (folder_items(args.images, args.out) if args.images is not None
             else dataset_items(args.dataset, args.root, args.out))
    checkpoint = inspect_checkpoint(args.weights, args.labels)
    variant = checkpoint.variant
    shared = f" ({info.world_size} processes)" if info.enabled else ""
    if not args.quiet and info.is_main:
        err_console.print(f"{len(items)} images, {variant.name} labels ({variant.num_classes} classes) at "
                          f"{variant.input_size[0]}x{variant.input_size[1]} on {info.device}{shared}, precision "
                          f"{amp}", highlight=False)
    summary = parse_with(checkpoint, items, args.out, str(info.device), args.amp, args.logits, args.batch,
                         args.overwrite, _progress(args), args.workers)
    rate = summary.parsed / summary.seconds if summary.seconds > 0 else 0.0
    stale = f", removed {summary.stale_removed} stale temporary file(s)" if summary.stale_removed else ""
    if info.is_main:
        console.print(f"parsed {summary.parsed}, skipped {summary.skipped} (already complete), failed "
                      f"{summary.failed} in {summary.seconds:.1f} s ({rate:.2f} images/s){stale}; maps in {args.out}",
                      highlight=False)
    if summary.failed:
        raise CCReIDError(f"{summary.failed} image(s) could not be parsed; see {summary.errors_file}")


def print_metrics(metrics: dict, title: str) -> None:
    """One row of ranking metrics (percent) with the query counts; single-gallery-shot rank-k
    columns say so (mAP and mINP stay those of the whole gallery)."""
    table = Table(title=title)
    shot = "single-shot " if metrics.get("single_gallery_shot") else ""
    for col in (f"{shot}top-1", f"{shot}top-5", f"{shot}top-10", "mAP", "mINP", "queries", "without match"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{metrics[k]:.2f}" for k in ("rank1", "rank5", "rank10", "mAP", "mINP")),
                  str(metrics["queries"]), str(metrics["queries_without_match"]))
    console.print(table)


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from ccreid.commands.feature_eval import evaluate_feature_file

    if args.rerank_impl != "auto" and not args.rerank:
        raise CCReIDError(f"option --rerank-impl {args.rerank_impl} needs --rerank")
    metrics = evaluate_feature_file(args.features, args.protocol, args.metric, args.ap_mode, args.rerank, args.chunk,
                                    aqe=args.aqe, rerank_params=(args.k1, args.k2, args.lambda_value),
                                    rerank_impl=args.rerank_impl, roc=args.roc,
                                    single_shot=args.single_gallery_shot, seed=args.seed)
    if args.json:
        print(json.dumps(metrics))
        return
    rerank = (", alpha-QE" if args.aqe else "") + (", re-ranked" if args.rerank else "")
    shot = f", single-gallery-shot x{args.single_gallery_shot} (seed {args.seed})" if args.single_gallery_shot else ""
    print_metrics(metrics, f"{args.features}: {metrics['protocol']} protocol, {args.metric}, AP {args.ap_mode}"
                           f"{rerank}{shot}")
    if args.roc:
        table = Table(title="verification: TPR (%) at FPR over query-gallery pairs")
        rates = [key for key in metrics if key.startswith("tpr@fpr=")]
        for col in (*("TPR@FPR=" + key.removeprefix("tpr@fpr=") for key in rates), "positive pairs", "negative pairs"):
            table.add_column(col, justify="right")
        table.add_row(*(f"{metrics[key]:.2f}" for key in rates), str(metrics["positive_pairs"]),
                      str(metrics["negative_pairs"]))
        console.print(table)


def cmd_extract(args: argparse.Namespace) -> None:
    from ccreid.commands.extraction import extract_to_file

    from ccreid.runs.outputs import refuse_file

    refuse_file(args.out, args.overwrite, "a features file")
    counts = extract_to_file(args.weights, args.out, args.images, args.protocol, args.overrides,
                             flip=False if args.no_flip else None, batch_size=args.batch_size, workers=args.workers,
                             device=args.device, progress=_progress(args), backend=args.backend,
                             precision=args.precision)
    console.print(f"wrote {args.out}: {counts['query']} query and {counts['gallery']} gallery features")


def cmd_index(args: argparse.Namespace) -> None:
    from ccreid.commands.retrieval import index_features

    from ccreid.runs.outputs import refuse_file

    for path in (args.out, f"{args.out}.json"):
        refuse_file(path, args.overwrite, "a search index")
    index = index_features(args.features, args.out, args.kind, args.nlist, args.m, args.nprobe)
    if index.is_fallback:
        err_console.print(f"[yellow]note:[/yellow] {index.note}")
    console.print(f"wrote {args.out} and {args.out}.json: {index.kind} index of {index.ntotal} x {index.dim} features")


def cmd_search(args: argparse.Namespace) -> None:
    import json

    from ccreid.commands.retrieval import query_features, search_index

    queries, names = query_features(args.features, args.images, args.weights, args.device)
    found = search_index(args.index, queries, names, args.k)
    if found["note"]:
        err_console.print(f"[yellow]note:[/yellow] {found['note']}")
    print(json.dumps(found, indent=None if args.compact else 2))


def _device(args: argparse.Namespace):
    from ccreid.runtime.device import resolve_device

    return resolve_device(args.device)


def _print_written(paths: Sequence[Path]) -> None:
    for path in paths:
        console.print(f"wrote {path}")


def _refuse_pictures(args: argparse.Namespace, pattern: str) -> None:
    """An earlier picture of this command in ``--out`` is kept unless ``--overwrite``."""
    from ccreid.runs.outputs import refuse_file

    for path in sorted(Path(args.out).glob(pattern)):
        refuse_file(path, args.overwrite, "a picture")


def cmd_viz_actmap(args: argparse.Namespace) -> None:
    from ccreid.viz.heatmaps import viz_actmap

    _refuse_pictures(args, "actmap.png")
    _print_written(viz_actmap(args.weights, args.out, args.images, args.labels, args.num_images, args.seed,
                              _device(args)))


def cmd_viz_attention(args: argparse.Namespace) -> None:
    from ccreid.viz.heatmaps import viz_attention

    _refuse_pictures(args, "attention.png")
    _print_written(viz_attention(args.weights, args.out, args.images, args.parsing, args.num_images, args.seed,
                                 _device(args)))


def cmd_viz_ranks(args: argparse.Namespace) -> None:
    from ccreid.viz.ranks import viz_ranks

    _refuse_pictures(args, "ranks_*.png")
    _print_written(viz_ranks(args.weights, args.out, args.protocol, args.num_queries, args.k, args.seed,
                             _device(args), args.queries, _progress(args), args.backend, args.precision))


def cmd_viz_cmc(args: argparse.Namespace) -> None:
    from ccreid.viz.ranks import viz_cmc

    _refuse_pictures(args, "cmc.png")
    _print_written(viz_cmc(args.weights, args.out, args.labels, _device(args), _progress(args), args.backend,
                           args.precision))


def cmd_viz_curves(args: argparse.Namespace) -> None:
    from ccreid.viz.plots import plot_training

    _refuse_pictures(args, "training.png")
    labels = args.labels or [Path(run).name for run in args.runs]
    if len(labels) != len(args.runs):
        raise CCReIDError(f"option --labels: {len(labels)} labels for {len(args.runs)} runs")
    logs = {label: Path(run) / "metrics.jsonl" for label, run in zip(labels, args.runs)}
    _print_written([plot_training(logs, Path(args.out) / "training.png")])


def cmd_export_onnx(args: argparse.Namespace) -> None:
    from ccreid.deploy import export_onnx

    from ccreid.runs.outputs import refuse_file

    refuse_file(args.out, args.overwrite, "an ONNX model")
    _print_written(export_onnx(args.weights, args.out, args.opset, normalize=not args.no_normalize,
                               plugins=args.plugins))


def cmd_report(args: argparse.Namespace) -> None:
    from ccreid.viz.report import write_report

    written = write_report(args.run, samples=not args.no_samples, device=args.device, progress=_progress(args))
    console.print(f"wrote {written[0]} ({len(written) - 1} pictures)")


def one_line(err: CCReIDError) -> str:
    """The user message; errors re-raised from a DataLoader worker carry it on their last line."""
    lines = str(err).strip().splitlines()
    return lines[-1].removeprefix("ccreid.errors.CCReIDError: ") if len(lines) > 1 else str(err)


def _data_check_run(args: argparse.Namespace):
    """The data of the run ``ccreid data check`` judges (``-c CONFIG`` and overrides, then --dataset,
    --root, --parsing, --labels, --weights) and whether that run reads parsing maps: its preset's
    method decides; without a config, giving --parsing says so."""
    from ccreid.config import load_config
    from ccreid.methods import resolve_preset

    described = args.config is not None or bool(args.overrides)
    if not described and not (args.dataset and args.root):
        raise CCReIDError("ccreid data check needs --dataset NAME and --root DIR, or -c CONFIG (the run to check)")
    cfg = load_config(args.config, args.overrides)
    data, parsing = cfg.data, cfg.data.parsing
    data.name, data.root = args.dataset or data.name, args.root or data.root
    parsing.root, parsing.labels = args.parsing or parsing.root, args.labels or parsing.labels
    parsing.weights = args.weights or parsing.weights
    if not described:
        return data, args.parsing is not None
    preset = resolve_preset(cfg)
    return data, preset.method.needs_parsing(preset)


def _fill_or_plan(args: argparse.Namespace, data, need_parsing: bool) -> bool:
    """--weights: parse the missing maps now; data.parsing.weights of the run: check the checkpoint and
    say what ``ccreid train`` will parse first. Whether the run fills its own missing maps."""
    from ccreid.engine.parsing_maps import fill_parsing_maps, plan_parsing

    if args.weights is not None:
        if data.parsing.root is None:
            raise CCReIDError("option --weights needs --parsing: the folder the maps are written to")
        fill_parsing_maps(data, args.device, _progress(args), label="--weights")
        return False
    if not (need_parsing and data.parsing.weights):
        return False
    plan = plan_parsing(data)
    if plan.todo:
        err_console.print(f"{len(plan.todo)} image(s) have no map yet: `ccreid train` parses them into "
                          f"{plan.root} first (data.parsing.weights)", highlight=False)
    return True


def cmd_data_check(args: argparse.Namespace) -> None:
    import json

    from ccreid.data.check import DatasetUnusable, check_dataset

    data, need_parsing = _data_check_run(args)
    if _fill_or_plan(args, data, need_parsing):  # the run makes its missing maps, their folder included
        need_parsing = False
        data.parsing.root = data.parsing.root if Path(data.parsing.root).expanduser().is_dir() else None
    try:
        report = check_dataset(data.name, data.root, data.parsing.root, data.parsing.labels, args.deep,
                               _progress(args), need_parsing=need_parsing, missing=data.parsing.missing)
    except DatasetUnusable as err:
        if args.json:
            console.print_json(json.dumps({"dataset": data.name, "unusable": one_line(err)}))
        raise
    unreadable = CCReIDError(f"{report['unreadable']} file(s) cannot be read (listed above); training and "
                             "evaluation would stop on them: replace or remove them")
    if args.json:
        print(json.dumps(report))
    else:
        _print_check(report, data)
    if report["refused"]:
        raise CCReIDError(report["refused"])
    if report["unreadable"]:
        raise unreadable


def _print_check(report: dict, data) -> None:
    """``ccreid data check``'s table, parsing counts and problems."""
    table = Table(title=f"{data.name} at {data.root}")
    columns = [k for k in ("tracklets", "images", "ids", "cameras", "clothes", "dropped") if k in report["train"]]
    for col in ("split", *columns):
        table.add_column(col, justify="left" if col == "split" else "right")
    rows = [("train", report["train"])] + [
        (f"{name} {part}", stats[part]) for name, stats in report["protocols"].items() for part in ("query", "gallery")
    ]
    for label, stats in rows:
        table.add_row(label, *(str(stats.get(k, "")) for k in columns))
    console.print(table)
    parsing = report["parsing"]
    if data.parsing.root is None:
        console.print("parsing maps: not checked (no --parsing or data.parsing.root)" + ("" if report["refused"] else
                      "; CRE, BSGA and PS read them: pass --parsing DIR, or -c CONFIG to check what its run reads"))
    else:
        console.print(f"parsing maps: {parsing['found']} found, {parsing['missing']} missing, "
                      f"{parsing['resized']} resized")
    for problem in report["problems"]:
        console.print(f"[yellow]problem:[/yellow] {escape(problem)}", highlight=False)
    if not report["problems"] and not report["refused"] and data.parsing.root is not None:
        console.print("[green]no problems found[/green]")


def build_parser() -> argparse.ArgumentParser:
    from ccreid.data.records import RULES
    from ccreid.evaluation.distance import METRICS as DISTANCES
    from ccreid.choices import AP_MODES
    from ccreid.evaluation.rerank import DENSE_LIMIT as RERANK_DENSE_LIMIT, IMPLS as RERANK_IMPLS
    from ccreid.inference.backends import BACKENDS, PRECISIONS

    parser = argparse.ArgumentParser(prog="ccreid", description="Clothes-changing person re-identification toolkit.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_to(parent, name: str, help_text: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--quiet", action="store_true", help="no progress bars or per-iteration logs")
        p.set_defaults(func=func, prog=p.prog)
        return p

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        return add_to(sub, name, help_text, func)

    def add_extraction_options(p: argparse.ArgumentParser) -> None:
        """``--backend`` / ``--precision`` of feature extraction (``extract``, ``test``, ``viz ranks``, ``viz cmc``)."""
        p.add_argument("--backend", choices=BACKENDS, default="auto",
                       help="auto (default: onnxruntime on the CPU in fp32 when installed, else torch), torch "
                            "(folded BatchNorm, channels_last) or onnxruntime (CPU; needs the export extra)")
        p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="bf16: torch autocast, faster on CPUs with AVX512-BF16/AMX, features not bit-equal")

    def group(name: str, help_text: str, metavar: str = "COMMAND"):
        """A command with sub-commands (``ccreid viz actmap``)."""
        return sub.add_parser(name, help=help_text, description=help_text).add_subparsers(
            dest=f"{name}_command", required=True, metavar=metavar)

    p = add("synth", "generate the synthetic clothes-changing dataset (cached)", cmd_synth)
    p.add_argument("--out", required=True, help="output folder")
    add_number(p, "--seed", int, 0, MAX_SEED, 0)
    add_number(p, "--ids", int, 6, 100_000, 120, "number of identities (train 50%%, val 10%%, test 40%%)")
    add_number(p, "--extra-test-ids", int, 0, 100_000, 96,
               "identities added to the test split only (default: as configs/synthetic.yaml)")
    add_number(p, "--outfits", int, 2, 100, 3, "outfits per identity")
    add_number(p, "--images-per-outfit", int, 1, 1000, 6)
    p.add_argument("--size", default="128x64", help="image size HxW (32..2048 x 16..2048)")

    train_p = p = add("train", "train a model and evaluate it on the dataset's protocols", cmd_train)
    p.add_argument("-c", "--config", required=True, help="YAML config file or packaged config name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="train again over an earlier run or results in --out")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=3")

    test_p = p = add("test", "evaluate a trained checkpoint", cmd_test)
    p.add_argument("--weights", required=True, help="model.safetensors of a training run (or its folder)")
    p.add_argument("-c", "--config", default=None, help="config file (default: the one saved in the weights)")
    p.add_argument("--out", required=True, help="output folder (never a training run's folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier test's results in --out")
    add_extraction_options(p)
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/data/prcc")

    demo_p = p = add("demo", "the main job: train baseline and ours on the synthetic benchmark", cmd_demo)
    p.add_argument("--quick", action="store_true", help="sub-minute smoke run")
    p.add_argument("--all", action="store_true", help="all six ablation presets")
    p.add_argument("--video", action="store_true", help="the synthetic video benchmark (tracklets; configs/"
                   "synthetic_video.yaml; default --out outputs/demo-video)")
    p.add_argument("--out", default=DEMO_OUT, help=f"output folder (default: {DEMO_OUT})")
    p.add_argument("--overwrite", action="store_true", help="train again over an earlier demo in --out")
    p.add_argument("-c", "--config", default="synthetic", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="dotted config overrides")

    ablation_p = p = add("ablation", "train the ablation presets over several seeds; paper-style table", cmd_ablation)
    p.add_argument("-c", "--config", default="synthetic", help="YAML config file or packaged config name")
    p.add_argument("--presets", nargs="+", default=None, metavar="PRESET",
                   help="presets to train, space- or comma-separated (default: the paper's six)")
    add_number(p, "--seeds", int, 1, 100, 3, "number of seeds (0..N-1)")
    p.add_argument("--out", default="outputs/ablation", help="output folder")
    add_number(p, "--jobs", int, 1, 64, 1, "runs trained at once (CPU threads shared out)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier ablation in --out")
    p.add_argument("overrides", nargs="*", help="dotted config overrides")

    test_p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (same as test.rerank=true)")
    for p in (train_p, test_p, demo_p, ablation_p):
        p.add_argument("--no-report", action="store_true", help="do not write report.html")

    p = add("eval", "metrics of stored features (.npz from ccreid extract)", cmd_eval)
    p.add_argument("--features", required=True, help=".npz with qf, gf, q_pids, g_pids, q_camids, g_camids "
                   "(+ q_clothes, g_clothes for sc/cc)")
    p.add_argument("--protocol", choices=RULES, default=None,
                   help="the rule (default: the protocol the file was extracted for, else general)")
    p.add_argument("--metric", choices=DISTANCES, default="cosine")
    p.add_argument("--ap-mode", choices=AP_MODES, default="noninterp",
                   help="noninterp: papers/Simple-CCReID/torchreid; market1501: official trapezoidal script")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    add_number(p, "--k1", int, 1, 1000, 20, "re-ranking k1 (default 20)")
    add_number(p, "--k2", int, 1, 1000, 6, "re-ranking k2 (default 6)")
    add_number(p, "--lambda", float, 0, 1, 0.3, "re-ranking lambda (default 0.3)", dest="lambda_value")
    p.add_argument("--rerank-impl", choices=RERANK_IMPLS, default="auto",
                   help="dense: (Q+G)^2 matrices; sparse: FAISS k-NN, same result; auto (default): dense up to "
                   f"{RERANK_DENSE_LIMIT:,} images")
    p.add_argument("--aqe", action="store_true", help="alpha query expansion first (one round, k 5, alpha 3)")
    p.add_argument("--roc", action="store_true", help="add TPR at FPR 1e-4, 1e-3, 1e-2 over query-gallery pairs "
                   "(fast-reid's verification figures)")
    add_number(p, "--single-gallery-shot", int, 0, 1000, 0, "CUHK03 protocol: rank-k/CMC over N draws of one "
               "gallery image per identity (torchreid: 10)", metavar="N")
    add_number(p, "--seed", int, 0, MAX_SEED, 0, "seed of the single-gallery-shot draws (default 0)")
    add_number(p, "--chunk", float, 0.001, 1_048_576, 512, "working-memory budget of the streaming evaluation in "
               "MiB (default 512)", metavar="MB")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = add("extract", "extract L2-normalised features of images with a checkpoint into an .npz", cmd_extract)
    p.add_argument("--weights", required=True, help="model.safetensors of a training run")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images, or CSV with path[,pid,camid,clothes_id,split]")
    source.add_argument("--protocol", help="a test protocol (general, sc, cc) of the checkpoint's dataset")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-flip", action="store_true", help="no flip averaging")
    add_number(p, "--batch-size", int, 1, 4096, None, "images per forward pass (default: test.batch_size)")
    add_number(p, "--workers", int, 0, 64, 0, "decoding worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_extraction_options(p)
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/data/prcc")

    p = add("index", "build a search index of the gallery features of an .npz", cmd_index)
    p.add_argument("--features", required=True, help=".npz from ccreid extract (its gf rows are indexed)")
    p.add_argument("--out", required=True, help="index file (metadata goes to OUT.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
    p.add_argument("--kind", choices=("exact", "ivf", "ivfpq"), default="exact",
                   help="exact inner product, or FAISS IVF / IVF-PQ for large galleries")
    add_number(p, "--nlist", int, 1, 1_000_000, None, "IVF cells (default sqrt(gallery))")
    add_number(p, "--m", int, 1, 4096, None, "PQ sub-quantisers (default dim/8)")
    add_number(p, "--nprobe", int, 1, 1_000_000, None, "IVF cells visited per query (default 32)")

    p = add("search", "top-k gallery matches of query images or features, as JSON", cmd_search)
    p.add_argument("--index", required=True, help="index file from ccreid index")
    queries = p.add_mutually_exclusive_group(required=True)
    queries.add_argument("--features", help=".npz whose qf (else gf) rows are the queries")
    queries.add_argument("--images", nargs="+", default=(), help="query image files (needs --weights)")
    p.add_argument("--weights", help="checkpoint that embeds --images")
    add_number(p, "-k", int, 1, 10_000, 10, "matches per query")
    p.add_argument("--device", default="auto")
    p.add_argument("--compact", action="store_true", help="JSON on one line")

    viz_sub = group("viz", "pictures: activation / attention maps, ranked lists, CMC and training curves")

    def add_viz(name: str, help_text: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        p = add_to(viz_sub, name, help_text, func)
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--overwrite", action="store_true", help="replace this command's earlier pictures in --out")
        return p

    def add_samples(p: argparse.ArgumentParser) -> None:
        p.add_argument("--images", nargs="+", default=None, help="image files (default: random test queries)")
        add_number(p, "--num-images", int, 1, 64, 6)
        add_number(p, "--seed", int, 0, MAX_SEED, 0)
        p.add_argument("--device", default="auto")

    p = add_viz("actmap", "activation maps, one column per checkpoint (the poster's motivation figure)",
                cmd_viz_actmap)
    p.add_argument("--weights", nargs="+", required=True, help="one or more model.safetensors")
    p.add_argument("--labels", nargs="+", default=None, help="column titles (default: each preset)")
    add_samples(p)
    p = add_viz("attention", "BSGA attention maps next to the body-shape mask", cmd_viz_attention)
    p.add_argument("--weights", required=True, help="model.safetensors of a BSGA model")
    p.add_argument("--parsing", nargs="+", default=None, help="parsing maps of --images (same order)")
    add_samples(p)
    p = add_viz("ranks", "queries and their top-k gallery images (green/red = right/wrong identity)",
                cmd_viz_ranks)
    p.add_argument("--weights", required=True, help="model.safetensors")
    p.add_argument("--protocol", default=None, help="general, sc or cc (default: every test protocol)")
    add_number(p, "--num-queries", int, 1, 100, 8)
    p.add_argument("--queries", nargs="+", default=None, help="query image paths (default: random)")
    add_number(p, "-k", int, 1, 100, 10)
    add_number(p, "--seed", int, 0, MAX_SEED, 0)
    p.add_argument("--device", default="auto")
    add_extraction_options(p)
    p = add_viz("cmc", "CMC curves per test protocol, one curve per checkpoint", cmd_viz_cmc)
    p.add_argument("--weights", nargs="+", required=True, help="one or more model.safetensors")
    p.add_argument("--labels", nargs="+", default=None, help="legend labels (default: each preset)")
    p.add_argument("--device", default="auto")
    add_extraction_options(p)
    p = add_viz("curves", "training curves (losses, lr, validation top-1) of one or more runs", cmd_viz_curves)
    p.add_argument("--runs", nargs="+", required=True, help="training output folders (with metrics.jsonl)")
    p.add_argument("--labels", nargs="+", default=None, help="legend labels (default: folder names)")

    export_sub = group("export", "export a checkpoint for deployment", "FORMAT")
    p = add_to(export_sub, "onnx", "ONNX model: images [batch,3,H,W] -> features [batch,D] (dynamic batch)",
               cmd_export_onnx)
    p.add_argument("--weights", required=True, help="model.safetensors")
    p.add_argument("--out", required=True, help="output .onnx")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; 13-17 use the legacy exporter)")
    p.add_argument("--no-normalize", action="store_true", help="leave out the final L2 normalisation")
    p.add_argument("--plugins", nargs="+", default=(), metavar="PLUGIN",
                   help="plug-in files or modules replacing those the checkpoint records (moved since training)")

    from ccreid.choices import AMP_MODES
    from ccreid.parsing.variants import VARIANTS

    p = add("parse", "human-parsing maps with an SCHP checkpoint (LIP, ATR, Pascal) for CRE and BSGA", cmd_parse)
    p.add_argument("--weights", required=True, help="official SCHP .pth, e.g. " + VARIANTS["lip"].checkpoint)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images (.jpg/.jpeg/.png/.bmp, nested); the maps mirror it")
    source.add_argument("--dataset", help="registered dataset name (all splits; needs --root)")
    p.add_argument("--root", help="dataset folder (with --dataset); then data.parsing.root=OUT finds every map")
    p.add_argument("--out", required=True, help="output folder of <relative path>/<stem>.png maps")
    p.add_argument("--labels", choices=tuple(VARIANTS), default=None,
                   help="label set (default: from the checkpoint's classifier width)")
    p.add_argument("--logits", action="store_true", help="also write <stem>.npy: HxWxC float32 logits")
    add_number(p, "--batch", int, 1, 1024, None,
               "images per forward pass (default: 1 on CPU, where it is fastest; 32 on CUDA; 8 on MPS)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", choices=AMP_MODES, default="auto",
                   help="precision; auto = fp32 unless a faster one was measured to agree >= 99.5%%")
    add_number(p, "--workers", int, 0, 64, None,
               "processes decoding and warping images beside the network (default: cores, at most 4; 0: none)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every map, replacing any file at a map's path and another checkpoint's maps")

    p = add("report", "(re)write report.html of a train/test/demo/ablation output folder", cmd_report)
    p.add_argument("run", help="output folder holding results.json")
    p.add_argument("--no-samples", action="store_true", help="tables and curves only (no model needed)")
    p.add_argument("--device", default="auto")

    data_sub = group("data", "dataset tools")
    p = add_to(data_sub, "check", "validate a dataset folder in seconds (no model); exit 2 if the run would refuse it",
               cmd_data_check)
    p.add_argument("-c", "--config", default=None, help="the training config to check the data for (its preset "
                   "decides whether parsing maps are needed)")
    p.add_argument("--dataset", default=None, help="registered dataset name (prcc, vcclothes, ltcc, ...; default: "
                   "the config's data.name)")
    p.add_argument("--root", default=None, help="dataset folder (default: the config's data.root)")
    p.add_argument("--parsing", default=None, help="parsing-map tree mirroring the image tree (default: the "
                   "config's data.parsing.root)")
    p.add_argument("--labels", default=None, help="parsing label set: lip, atr, pascal or a table file (default: "
                   "the config's, else lip)")
    p.add_argument("--weights", default=None, help="SCHP checkpoint: parse the missing maps into --parsing first")
    p.add_argument("--device", default="auto", help="device for --weights: auto, cpu, cuda or mps")
    p.add_argument("--deep", action="store_true", help="decode every image and map")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. model.preset=ours")
    return parser


def _setup_logging(quiet: bool) -> None:
    """Engine notes (``logging.getLogger("ccreid...")``) go to stderr unless ``--quiet``."""
    from rich.logging import RichHandler

    logger = logging.getLogger("ccreid")
    logger.handlers = [RichHandler(console=err_console, show_time=False, show_path=False, markup=False)]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Options and ``key=value`` overrides in any order: argparse gives the positional overrides their
    first run of tokens and returns the later ones unrecognised; they join in command-line order (later
    keys win). Whatever else is left is a one-line error naming the command."""
    args, rest = build_parser().parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    if takes_overrides:  # `--presets a b x=1`: an option taking several values swallowed an override
        for name, value in vars(args).items():
            if isinstance(value, list) and name != "overrides" and any(OVERRIDE.match(v) for v in value):
                setattr(args, name, [v for v in value if not OVERRIDE.match(v)])
                rest = [v for v in value if OVERRIDE.match(v)] + rest
    stray = [token for token in rest if not (takes_overrides and OVERRIDE.match(token))]
    if stray:
        hint = "" if takes_overrides or not OVERRIDE.match(stray[0]) else " (it takes no key=value overrides)"
        raise CCReIDError(f"{args.prog}: unrecognized argument {stray[0]!r}{hint}; see {args.prog} --help")
    if takes_overrides:
        args.overrides = args.overrides + rest
    return args


def _check_device(args: argparse.Namespace) -> None:
    """``--device`` is checked before any work, and its errors name ``--device``."""
    if getattr(args, "device", None) is not None:
        from ccreid.runtime.device import resolve_device

        resolve_device(args.device, option="--device")


def interrupted(args: Optional[argparse.Namespace], argv: Sequence[str]) -> str:
    """What Ctrl-C leaves: a training run says how to continue it."""
    if args is None or args.func is not cmd_train:
        return "interrupted"
    from ccreid.runs.resume import latest_checkpoint

    again = [token for token in argv if token not in ("--overwrite", "--resume")]
    if latest_checkpoint(Path(args.out)) is None:
        return (f"interrupted before the first checkpoint of {args.out}; start again with "
                f"`ccreid {shlex.join(again + ['--overwrite'])}`")
    return f"interrupted; continue {args.out} from its last checkpoint with `ccreid {shlex.join(again + ['--resume'])}`"


def out_of_memory(err: BaseException) -> bool:
    """torch's ``OutOfMemoryError`` (CUDA), its CPU allocator's RuntimeError, or Python's MemoryError."""
    text = str(err)
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        args = parse_args(argv)
        _setup_logging(args.quiet)
        _check_device(args)
        args.func(args)
    except CCReIDError as err:
        return _fail(one_line(err))
    except BrokenPipeError:  # e.g. `ccreid search ... | head`: the reader left; stay quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # a file operation outside the atomic writers: still one line
        from ccreid.runtime.io import WRITE_ERRORS, write_failure

        if err.errno in WRITE_ERRORS:
            return _fail(str(write_failure(err.filename or "a file", err)))
        return _fail(f"cannot access {err.filename or 'a file'}: {err.strerror or err}; check the path and its "
                     "permissions")
    except KeyboardInterrupt:
        err_console.print(escape(interrupted(args, argv)), highlight=False, soft_wrap=True)
        return 130
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        hint = MEMORY_HINTS.get(getattr(args, "prog", ""), MEMORY_HINT)
        return _fail(f"out of memory ({type(err).__name__}): {hint}")
    return 0


def _fail(message: str) -> int:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
