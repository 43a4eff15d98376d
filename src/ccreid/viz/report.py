"""``report.html``: a self-contained, offline page for a run folder.

Works for a ``ccreid train`` folder (``results.json``, ``metrics.jsonl``,
``model.safetensors``), a ``ccreid test`` folder (``results.json`` naming its weights)
and a demo/ablation folder (``results.json`` at the top, runs in ``<preset>/seed<k>/``;
pictures use each preset's first seed). Pictures go to ``report_files/`` and are linked
by relative paths. A part that cannot be made (no training log, no weights, dataset moved,
matplotlib missing) is replaced by a note saying why, also logged as a warning (one line per
part); the tables are always written.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ccreid import __version__
from ccreid.deploy import load_model
from ccreid.errors import CCReIDError, first_line
from ccreid.runs.checkpoint import WEIGHTS_NAME
from ccreid.runs.features_io import TEST_FEATURES_NAME, load_test_features
from ccreid.runtime.device import resolve_device
from ccreid.runtime.io import write_text
from ccreid.viz import page
from ccreid.viz.canvas import save_png, tile_size
from ccreid.viz.heatmaps import viz_actmap, viz_attention
from ccreid.viz.plots import plot_cmc, plot_training
from ccreid.viz.ranks import pick_queries, protocol_features, protocol_metrics, render_ranks

REPORT_NAME = "report.html"
FILES_DIR = "report_files"
METRICS_NAME = "metrics.jsonl"
PASS_RUN = "pass the output folder of ccreid train/test/demo/ablation"

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """One trained model in the folder: a label, its weights and training log (when present)."""

    label: str
    weights: Optional[Path]
    metrics: Optional[Path]


def _existing(path: Path) -> Optional[Path]:
    """``path`` if it is a file; a folder's ``model.safetensors`` if that exists; else ``None``."""
    if path.is_dir():
        path = path / WEIGHTS_NAME
    return path if path.is_file() else None


def find_runs(run_dir: Path, results: dict) -> List[Run]:
    """The folder's own run, or the first seed folder of each preset of ``results.json``."""
    presets = list(results.get("presets", {}))
    own_weights, own_metrics = _existing(run_dir / WEIGHTS_NAME), _existing(run_dir / METRICS_NAME)
    if own_weights or own_metrics or results.get("weights"):
        weights = own_weights or (_existing(Path(results["weights"])) if results.get("weights") else None)
        return [Run(presets[0] if presets else run_dir.name, weights, own_metrics)]
    runs = []
    for preset in presets:
        seeds = sorted((run_dir / preset).glob("seed*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        if seeds:
            runs.append(Run(preset, _existing(seeds[0] / WEIGHTS_NAME), _existing(seeds[0] / METRICS_NAME)))
    return runs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _relative(pictures: List[Tuple[Path, str]]) -> List[Tuple[str, str]]:
    return [(f"{FILES_DIR}/{path.name}", caption) for path, caption in pictures]


def _skipped(notes: List[str], part: str, why: str) -> None:
    """Say in the report, and as a warning, that ``part`` was left out and why."""
    notes.append(f"{part} skipped: {why}")
    logger.warning("report.html: %s skipped: %s", part, why)


def _config_text(run_dir: Path, results: dict, runs: List[Run]) -> str:
    for candidate in (run_dir / "config.yaml", *(r.metrics.parent / "config.yaml" for r in runs if r.metrics)):
        if candidate.is_file():
            return candidate.read_text()
    return results.get("config", "")


def model_pictures(runs: List[Run], files: Path, num_queries: int, k: int, num_images: int, seed: int,
                   device, progress: bool, notes: List[str]) -> List[Tuple[Path, str]]:
    """CMC curves, activation and attention maps, ranked lists of the runs with weights."""
    weighted = [r for r in runs if r.weights]
    for run in (r for r in runs if not r.weights):
        _skipped(notes, f"CMC curves, ranked lists and activation maps of {run.label}",
                 f"no {WEIGHTS_NAME} found (in its folder, or where results.json's weights points)")
    ranks: List[Tuple[Path, str]] = []
    curves: Dict[str, Dict[str, List[float]]] = {}
    with_bsga: List[Run] = []
    for run in weighted:
        model, cfg = load_model(run.weights, device)
        if len(model.bsga):
            with_bsga.append(run)
        size = tile_size(cfg.data.height, cfg.data.width)
        known = load_test_features(Path(run.weights).parent / TEST_FEATURES_NAME, run.weights, cfg.test.flip)
        for name, pf in protocol_features(model, cfg, device, cfg.test.protocols, progress, known).items():
            curves.setdefault(run.label, {})[name] = protocol_metrics(pf, cfg.test.ap_mode)["cmc"]
            image = render_ranks(pf, pick_queries(pf.split, num_queries, seed), k, size,
                                 f"{run.label}, {name.upper()} protocol")
            ranks.append((save_png(image, files / f"ranks_{_slug(run.label)}_{name}.png"),
                          f"{run.label}: top-{k} of random {name.upper()} queries"))
    steps: List[Tuple[str, Callable[[], List[Path]]]] = [
        ("CMC curves (test protocols)", lambda: [plot_cmc(curves, files / "cmc.png")]),
        ("activation maps: channel-summed last feature map, one column per run",
         lambda: viz_actmap([r.weights for r in weighted], files, None, [r.label for r in weighted], num_images,
                            seed, device)),
        *((f"BSGA attention of {r.label} next to the body-shape mask",
           lambda r=r: viz_attention(r.weights, files, None, None, num_images, seed, device,
                                     f"attention_{_slug(r.label)}.png")) for r in with_bsga),
    ]
    pictures: List[Tuple[Path, str]] = []
    for caption, make in steps if weighted else ():
        try:
            pictures += [(path, caption) for path in make()]
        except CCReIDError as err:
            _skipped(notes, caption.split(":")[0], str(err))
    return pictures + ranks


def _check_table(results: object) -> None:
    """ValueError unless ``results`` is ``{"presets": {name: {protocol: {metric: number}}}}``."""
    presets = results.get("presets") if isinstance(results, dict) else None
    if not isinstance(presets, dict):
        raise ValueError("no 'presets' table")
    for name, protocols in presets.items():
        if not isinstance(protocols, dict) or not all(
                isinstance(m, dict) and all(isinstance(v, (int, float, list)) or v is None for v in m.values())
                for m in protocols.values()):
            raise ValueError(f"preset {name!r} is not a table of protocols and metrics")


def _read_results(run_dir: Path) -> dict:
    """``run_dir/results.json``, checked; one-line errors when ``run_dir`` is not a results folder."""
    path = run_dir / "results.json"
    if run_dir.is_file():
        raise CCReIDError(f"{run_dir}: a file, not a folder; {PASS_RUN}")
    if not path.is_file():
        raise CCReIDError(f"no results file {path}{'' if run_dir.is_dir() else ' (no such folder)'}; {PASS_RUN}")
    try:
        results = json.loads(path.read_text())
        _check_table(results)
    except (OSError, ValueError) as err:
        raise CCReIDError(f"results file {path} is damaged ({type(err).__name__}: {first_line(err, 80)}); "
                          f"{PASS_RUN}")
    return results


def write_report(run_dir: str | Path, title: Optional[str] = None, samples: bool = True, num_queries: int = 4,
                 k: int = 8, num_images: int = 6, seed: int = 0, device: str = "auto",
                 progress: bool = False) -> List[Path]:
    """Write ``run_dir/report.html`` (+ ``report_files/*.png``); returns the paths written, report first.

    ``samples=False`` skips everything that needs the model and the dataset (CMC curves,
    ranked lists, activation/attention maps).
    """
    start = time.perf_counter()
    run_dir = Path(run_dir)
    results = _read_results(run_dir)
    runs = find_runs(run_dir, results)
    files = run_dir / FILES_DIR
    notes: List[str] = list(results.get("notes", []))
    training: List[Tuple[Path, str]] = []
    if not runs:
        _skipped(notes, "training curves and pictures", f"no run in {run_dir} ({WEIGHTS_NAME}, {METRICS_NAME} or "
                                                        "<preset>/seed*/ folders of the presets in results.json)")
    for run in (r for r in runs if not r.metrics):
        _skipped(notes, f"training curves of {run.label}", f"no training log ({METRICS_NAME}) in its folder")
    logs = {r.label: r.metrics for r in runs if r.metrics}
    if logs:
        try:
            training.append((plot_training(logs, files / "training.png"),
                             "training curves (losses, learning rate, validation top-1)"))
        except CCReIDError as err:
            _skipped(notes, "training curves", str(err))
    pictures: List[Tuple[Path, str]] = []
    if samples:
        try:
            pictures = model_pictures(runs, files, num_queries, k, num_images, seed, resolve_device(device),
                                      progress, notes)
        except CCReIDError as err:
            _skipped(notes, "sample pictures", str(err))
    md = run_dir / "results.md"
    heading = md.read_text().splitlines()[0].lstrip("# ").strip() if md.is_file() else ""
    title = title or heading or f"ccreid report: {run_dir.name}"
    timings = dict(results.get("timings", {})) | {"report_s": round(time.perf_counter() - start, 1)}
    validation = page.validation_rows(results.get("validation", {}), results.get("seeds", ()))
    sections = [
        ("Results (%)", page.results_table(results.get("presets", {}))),
        ("Validation (%)", page.results_table(validation) if validation else ""),
        ("Training", page.figures(_relative(training))),
        ("Retrieval and activation maps", page.figures(_relative(pictures))),
        ("Time taken (s)", page.key_value_table(timings)),
        ("Machine", page.key_value_table(results.get("machine", {}))),
        ("Config", f"<pre>{escape(_config_text(run_dir, results, runs))}</pre>"),
    ]
    footer = f"ccreid {__version__}, written {datetime.now().isoformat(timespec='seconds')} from {run_dir.resolve()}"
    report = run_dir / REPORT_NAME
    write_text(report, page.document(title, sections, notes, footer))
    return [report, *(path for path, _ in training + pictures)]
