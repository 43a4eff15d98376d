"""``ccreid train``: every check before work, parsing, seeding, then :class:`Trainer`, the loop of every
method (``model.preset``, see :mod:`ccreid.methods`): epochs of the method's step, everything else a hook
(:mod:`ccreid.training.hooks`; checkpoints and exact resume, validation and model selection, LR schedules,
logging: :mod:`ccreid.engine.default_hooks`); then the final evaluation.

Under ``torchrun`` (see :mod:`ccreid.runtime.distributed`) the model is wrapped in
DistributedDataParallel: each process trains on its own P x K batch (global batch
``world_size x P x K``; triplet and BCTri mining stay within a process's batch), rank 0
alone writes logs, checkpoints and weights, and evaluation features are gathered
from all ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ccreid.config import Config, to_yaml
from ccreid.data.manager import DataManager
from ccreid.data.records import EvalSplit
from ccreid.engine.default_hooks import default_hooks
from ccreid.engine.loop import Trainer
from ccreid.engine.parsing_maps import (ParsePlan, check_recorded_labels, parse_planned,
                                        plan_parsing)
from ccreid.engine.training import build_training, check_model
from ccreid.errors import CCReIDError
from ccreid.inference.evaluator import evaluate_splits
from ccreid.methods import DataInfo, Method, Preset, complete_video, resolve_preset
from ccreid.methods.restore import trained_model
from ccreid.models import summarize
from ccreid.plugins import plugin_hashes
from ccreid.runs.checkpoint import STATE_NAME, WEIGHTS_NAME, load_state, load_weights
from ccreid.runs.features_io import TEST_FEATURES_NAME
from ccreid.runs.outputs import refuse_results, run_lock, training_run_in
from ccreid.runs.resume import same_config
from ccreid.runs.runlog import RunLog, summary_writer_class
from ccreid.runtime.amp import autocast, resolve_amp
from ccreid.runtime.device import seed_everything
from ccreid.runtime.distributed import DistInfo, setup
from ccreid.runtime.io import write_json, write_text

logger = logging.getLogger(__name__)
#: the hashes of a run's plug-in files (``--resume`` says which changed)
PLUGINS_NAME = "plugins.json"


@dataclass
class TrainResult:
    """What one training run produced."""

    preset: str
    results: Dict[str, dict]
    val_results: Dict[str, dict]
    seconds: float
    images_per_second: float
    out_dir: Path
    rank: int = 0  # the process's rank under torchrun; only rank 0 should write results



def train(
    cfg: Config,
    out_dir: str | Path,
    progress: bool = False,
    on_log: Optional[Callable[[dict], None]] = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg`` and evaluate on the dataset's protocols; outputs go to ``out_dir``.

    With ``resume``, training continues from the newest checkpoint in
    ``out_dir/checkpoints`` (an error if there is none) and ends exactly as an
    uninterrupted run with the same config (and number of processes) would. An
    existing run in ``out_dir`` is never replaced unless ``overwrite``. Launched by
    ``torchrun``, every process calls this; all of them return the same results.
    """
    out = Path(out_dir)
    if not (resume or overwrite):
        if training_run_in(out):
            raise CCReIDError(f"{out} already holds a training run; use --resume to continue it, --overwrite to "
                              "train it again, or choose another --out")
        refuse_results(out, overwrite)
    info = setup(cfg.train.device, cfg.train.sync_bn)
    try:
        autocast(info.device, resolve_amp(info.device, cfg.train.amp))  # an amp the device lacks: before any output
        with run_lock(out) if info.is_main else contextlib.nullcontext():
            return _train(cfg, out, info, progress, on_log, resume)
    finally:
        info.close()


def _train(cfg: Config, out: Path, info: DistInfo, progress: bool,
           on_log: Optional[Callable[[dict], None]], resume: bool) -> TrainResult:
    """:func:`train` in one process of the job ``info`` (process group already joined)."""
    writer_class = summary_writer_class() if cfg.train.tensorboard else None
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    finished = resume and (out / WEIGHTS_NAME).is_file() and (out / STATE_NAME).is_file()
    manager, config_yaml, val_splits = _prepare_data(cfg, info, progress, checks_model=not finished)
    if finished:
        return _evaluate_finished(cfg, out, config_yaml, manager, info.device, progress, info.rank)
    training = build_training(cfg, DataInfo.of(manager.dataset.train, manager.label_set), info.device, info)
    if info.is_main:
        _report_pretrained(training.model, out)
        for note in _unreached_gates(training.method, cfg.train.epochs):
            logger.warning(note)
    if info.is_main:
        _record_plugins(cfg, out, resume)
    trainer = Trainer(cfg, out, info, training, manager, config_yaml, progress)
    trainer.register_hooks(training.method.hooks() + default_hooks(val_splits))
    if resume:
        trainer.resume()
    if info.is_main:
        write_text(out / "config.yaml", config_yaml)
    trainer.train(RunLog(out, trainer.state.epoch, trainer.state.iteration, on_log, cfg.train.log_every, info.is_main,
                         writer_class))
    return _final_evaluation(cfg, out, training.model, manager, info.device, progress, info.rank,
                             trainer.state.val_results, trainer.state.seconds, trainer.state.processed)


def _record_plugins(cfg: Config, out: Path, resume: bool) -> None:
    """A run with plug-ins records their files' hashes (``plugins.json``); ``--resume`` says which
    changed since the run started (its result may then differ from an uninterrupted run's)."""
    path = out / PLUGINS_NAME
    hashes = plugin_hashes(cfg.plugins)
    if resume and path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except ValueError:  # a damaged record must not stop the resume: it only warns
            logger.warning("--resume: %s is damaged; cannot tell whether the plug-ins changed", path)
            return
        for name in sorted(set(recorded) | set(hashes)):
            if recorded.get(name) != hashes.get(name):
                logger.warning("--resume: plug-in %s changed since the run started (sha256 %s, now %s); the "
                               "resumed run may differ from an uninterrupted one", name,
                               str(recorded.get(name))[:12], str(hashes.get(name))[:12])
    elif hashes:
        write_json(path, hashes)


def _prepare_data(cfg: Config, info: DistInfo, progress: bool,
                  checks_model: bool) -> Tuple[DataManager, str, Dict[str, EvalSplit]]:
    """Every check before work, the missing parsing maps, seeding, then the data: its manager, the run's
    config completed from it (as YAML) and the validation splits of ``train.select_on=val``."""
    preset = resolve_preset(cfg)
    complete_video(cfg, preset)  # model.video from the dataset's kind, before anything is checked or built
    needs_parsing = preset.method.needs_parsing(preset)
    plan = _check_before_work(cfg, preset, needs_parsing, checks_model)
    if plan is not None:
        if info.is_main:
            parse_planned(plan, cfg.train.device, progress)
        info.barrier()
    seed_everything(cfg.seed + info.rank)  # after parsing: the run draws the same numbers with the maps there
    manager = DataManager(cfg, need_parsing=needs_parsing)
    preset.method.complete_config(cfg, manager.dataset)
    config_yaml = to_yaml(cfg)  # after the data: a synthetic folder records the options it was made with
    val_splits = manager.eval_splits("val") if cfg.train.select_on == "val" else {}
    if cfg.train.select_on == "val" and not val_splits:
        raise CCReIDError(f"config key 'train.select_on': dataset {cfg.data.name!r} has no validation split (use last)")
    return manager, config_yaml, val_splits


def _check_before_work(cfg: Config, preset: Preset, needs_parsing: bool, checks_model: bool) -> Optional[ParsePlan]:
    """Everything that can fail before hours of parsing or training, in this order: the model and its
    ``model.pretrained`` weights (``checks_model``), the parsing checkpoint and label set, the dataset
    layout. Returns what ``data.parsing.weights`` will parse (None: nothing to parse)."""
    if checks_model and (cfg.model.pretrained != "none" or needs_parsing and cfg.data.parsing.weights):
        check_model(cfg, preset)
    preset.method.check_before_work(cfg, preset)
    if needs_parsing:
        check_recorded_labels(cfg.data)
    if not (needs_parsing and cfg.data.parsing.weights):
        return None
    return plan_parsing(cfg.data)


def _final_evaluation(cfg: Config, out: Path, model: torch.nn.Module, manager: DataManager, device: torch.device,
                      progress: bool, rank: int, val_results: dict, seconds: float, processed: int) -> TrainResult:
    """The test protocols on the final weights; a failure says how to finish without retraining."""
    try:
        results = evaluate_splits(model, manager.eval_splits("test"), manager.loader, device, cfg.test,
                                  cfg.test.protocols, progress, features_out=out / TEST_FEATURES_NAME)
    except CCReIDError as err:
        raise CCReIDError(f"{str(err).strip().splitlines()[-1]}; training finished and saved {out / WEIGHTS_NAME}: "
                          "once that is fixed, `ccreid train --resume` with the same --out and config evaluates "
                          "it without retraining") from None
    return TrainResult(cfg.model.preset, results, val_results, seconds, processed / max(seconds, 1e-9), out, rank)


def _evaluate_finished(cfg: Config, out: Path, config_yaml: str, manager: DataManager, device: torch.device,
                       progress: bool, rank: int) -> TrainResult:
    """``--resume`` of a run whose training finished (final weights saved) but whose evaluation did not."""
    same_config(out, config_yaml)
    state = load_state(out / STATE_NAME)
    loaded = load_weights(out / WEIGHTS_NAME)
    model = trained_model(cfg, loaded, out / WEIGHTS_NAME).to(device)
    logger.info("%s: training had finished; evaluating its final weights", out)
    return _final_evaluation(cfg, out, model, manager, device, progress, rank, state.get("val_results", {}),
                             float(state.get("seconds", 0.0)), int(state.get("processed", 0)))


def _unreached_gates(method: Method, epochs: int) -> List[str]:
    """A warning per epoch gate of ``method`` that a run of ``epochs`` epochs never reaches."""
    return [f"train.epochs={epochs} ends before {what} at epoch {first + 1} ({key}); raise train.epochs or "
            f"lower {key}" for key, (first, what) in method.epoch_gates().items() if epochs <= first]


def _report_pretrained(model: torch.nn.Module, out: Path) -> None:
    """Log what ``model.pretrained`` loaded and keep the full report as ``pretrained_report.json``."""
    report = getattr(getattr(model, "backbone", None), "pretrained_report", None)  # ccreid backbones report
    if report is not None:
        logger.info("model.pretrained: %s", summarize(report))
        write_json(out / "pretrained_report.json", report)
