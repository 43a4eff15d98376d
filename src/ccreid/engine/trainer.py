"""The training loop of every method (``model.preset``, see :mod:`ccreid.methods`): epochs of the
method's step, checkpoints and exact resume, validation and model selection, the final evaluation.

Under ``torchrun`` (see :mod:`ccreid.engine.distributed`) the model is wrapped in
DistributedDataParallel: each process trains on its own P x K batch (global batch
``world_size x P x K``; triplet and BCTri mining stay within a process's batch), rank 0
alone writes logs, checkpoints and weights, and evaluation features are gathered
from all ranks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from tqdm import tqdm

from ccreid.config import Config, to_yaml
from ccreid.data.manager import DataManager
from ccreid.engine.checkpoint import (STATE_NAME, WEIGHTS_NAME, load_state, load_weights, restore_weights, save_state,
                                     save_weights)
from ccreid.engine.distributed import DistInfo, setup
from ccreid.engine.evaluator import evaluate_splits
from ccreid.engine.features_io import TEST_FEATURES_NAME
from ccreid.engine.results import strip_curves
from ccreid.engine.resume import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ccreid.engine.outputs import refuse_results, run_lock, training_run_in
from ccreid.engine.parsing_maps import (ParsePlan, check_cre_labels, check_recorded_labels, parse_planned,
                                        plan_parsing)
from ccreid.engine.runlog import RunLog, summary_writer_class
from ccreid.engine.runtime import autocast, resolve_amp, seed_everything, write_json, write_text
from ccreid.engine.step import check_finite
from ccreid.engine.tester import trained_model
from ccreid.engine.training import Training, build_training, check_model
from ccreid.errors import CCReIDError
from ccreid.methods import DataInfo, Method, Preset, resolve_preset
from ccreid.models import summarize

logger = logging.getLogger(__name__)


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


#: ``train.select_on``: the last epoch, or the best on the validation split (never the test split)
SELECT_ON = ("last", "val")


def _selection_score(results: Dict[str, dict]) -> float:
    """Validation score used by ``train.select_on=val``: CC top-1 + mAP where defined."""
    name = "cc" if "cc" in results else next(iter(results))
    return results[name]["rank1"] + results[name]["mAP"]


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
    device = info.device
    writer_class = summary_writer_class() if cfg.train.tensorboard else None
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    finished = resume and (out / WEIGHTS_NAME).is_file() and (out / STATE_NAME).is_file()
    preset = resolve_preset(cfg.model, cfg)
    needs_parsing = preset.method.needs_parsing(preset)
    plan = _check_before_work(cfg, preset, needs_parsing, checks_model=not finished)
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
    if finished:
        return _evaluate_finished(cfg, out, config_yaml, manager, device, progress, info.rank)
    training = build_training(cfg, DataInfo.of(manager.dataset.train, manager.label_set), device, info)
    model, method, generator = training.model, training.method, training.generator
    if info.is_main:
        _report_pretrained(model, out)
        for note in _unreached_gates(method, cfg.train.epochs):
            logger.warning(note)
    run = {"epoch": 0, "batch": 0, "iteration": 0, "processed": 0, "seconds": 0.0, "best_score": float("-inf"),
           "best_state": None, "val_results": {}}
    saved_rng = None
    if resume:
        run, saved_rng = _restore(out, config_yaml, info, training)
    step = training.start(info)
    if info.is_main:
        write_text(out / "config.yaml", config_yaml)
    start = time.perf_counter() - run["seconds"]

    def checkpoint() -> None:
        """A resumable checkpoint of the current state (all ranks take part, rank 0 writes)."""
        run["seconds"] = time.perf_counter() - start
        rngs = info.all_gather_object(rng_state(generator))
        if info.is_main:
            state = run | _training_state(training) | {"rng": rngs}
            save_checkpoint(out, run["epoch"], model, config_yaml, manager.num_train_pids, state,
                            cfg.train.keep_checkpoints)
        info.barrier()

    run_start_epoch = run["epoch"]
    with RunLog(out, run, on_log, cfg.train.log_every, info.is_main, writer_class) as log:
        for epoch in range(run["epoch"], cfg.train.epochs):
            step.net.train()
            manager.set_epoch(epoch)
            method.set_epoch(epoch)
            batches = iter(manager.train_loader)
            for _ in range(run["batch"]):  # resumed mid-epoch: replay the data already trained on
                next(batches)
            if saved_rng is not None:  # after the replay, which draws from the same generators
                set_rng_state(saved_rng[info.rank], generator)
                saved_rng = None
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", total=len(manager.train_loader),
                       initial=run["batch"], disable=not (progress and info.is_main), leave=False, unit="batch")
            for batch in bar:
                terms = info.reduce_terms(step(batch), summed=("images", "num_erased", "num_without_map"))
                run["iteration"] += 1
                run["batch"] += 1
                check_finite(terms, epoch + 1, run["iteration"], out)
                run["processed"] += terms.pop("images")
                rate = run["processed"] / (time.perf_counter() - start)
                lr = training.main_optimizer.param_groups[0]["lr"]
                record = {"epoch": epoch + 1, "iter": run["iteration"], "lr": lr,
                          "images_per_s": round(rate, 2)} | terms
                if device.type == "cuda":
                    record["gpu_mem_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                log.step(record)
                bar.set_postfix(loss=f"{terms['loss']:.3f}", img_s=f"{rate:.0f}")
                every_iters = cfg.train.checkpoint_every_iters
                if every_iters > 0 and run["iteration"] % every_iters == 0 and run["batch"] < len(bar):
                    log.flush()
                    checkpoint()
            run["batch"] = 0
            note = manager.foreign_labels_note() if epoch == run_start_epoch and info.is_main else None
            if note:
                logger.warning(note)
            training.schedulers_step()
            info.broadcast_buffers(model)  # rank 0's BatchNorm statistics for evaluation and checkpoints
            run["epoch"] = epoch + 1
            last_epoch = run["epoch"] == cfg.train.epochs
            due = cfg.train.eval_every > 0 and run["epoch"] % cfg.train.eval_every == 0
            if val_splits and (due or last_epoch):
                res = evaluate_splits(model, val_splits, manager.loader, device, cfg.test, progress=progress)
                score = _selection_score(res)
                log.validation(run["epoch"], run["iteration"], strip_curves(res))
                if score > run["best_score"]:
                    run["best_score"], run["val_results"] = score, res | {"epoch": run["epoch"]}
                    run["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log.flush()
            every = cfg.train.checkpoint_every
            if every > 0 and (run["epoch"] % every == 0) and not last_epoch:
                checkpoint()
    seconds = time.perf_counter() - start
    if run["best_state"] is not None:
        model.load_state_dict(run["best_state"])
    if info.is_main:
        save_weights(out / WEIGHTS_NAME, model, config_yaml, manager.num_train_pids, preset=cfg.model.preset)
        save_state(out / STATE_NAME, {k: run[k] for k in ("epoch", "iteration", "processed", "val_results")}
                   | {"seconds": seconds} | _training_state(training))
    info.barrier()
    return _final_evaluation(cfg, out, model, manager, device, progress, info.rank, run["val_results"], seconds,
                             run["processed"])


def _check_before_work(cfg: Config, preset: Preset, needs_parsing: bool, checks_model: bool) -> Optional[ParsePlan]:
    """Everything that can fail before hours of parsing or training, in this order: the model and its
    ``model.pretrained`` weights (``checks_model``), the parsing checkpoint and label set, the dataset
    layout. Returns what ``data.parsing.weights`` will parse (None: nothing to parse)."""
    if checks_model and (cfg.model.pretrained != "none" or needs_parsing and cfg.data.parsing.weights):
        check_model(cfg, preset)
    if preset.components.cre:
        check_cre_labels(cfg.data, cfg.model)
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
    _same_config(out, config_yaml)
    state = load_state(out / STATE_NAME)
    loaded = load_weights(out / WEIGHTS_NAME)
    model = trained_model(cfg, loaded, out / WEIGHTS_NAME).to(device)
    logger.info("%s: training had finished; evaluating its final weights", out)
    return _final_evaluation(cfg, out, model, manager, device, progress, rank, state.get("val_results", {}),
                             float(state.get("seconds", 0.0)), int(state.get("processed", 0)))


def _same_config(out: Path, config_yaml: str) -> None:
    saved_cfg = out / "config.yaml"
    if saved_cfg.is_file() and saved_cfg.read_text() != config_yaml:
        raise CCReIDError(f"--resume: the config differs from {saved_cfg}; resume with the same config and overrides")


def _training_state(training: Training) -> dict:
    """What a checkpoint holds beyond the weights: every optimizer, schedule, the scaler, the method's state."""
    return {"optimizers": {k: opt.state_dict() for k, (opt, _) in training.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, (_, s) in training.optimizers.items() if s is not None},
            "scaler": training.scaler.state_dict(), "method": training.method.state_dict()}


def _restore(out: Path, config_yaml: str, info: DistInfo, training: Training) -> tuple[dict, list]:
    """Load the newest checkpoint of ``out`` into the training objects; return the run
    counters and the RNG states of every rank (restored by the loop, after any replay)."""
    folder = latest_checkpoint(out)
    if folder is None:
        todo = ("train it again with --overwrite (without --resume)" if training_run_in(out)
                else "train without --resume to start")
        raise CCReIDError(f"--resume: no checkpoint in {out / 'checkpoints'}; {todo}")
    _same_config(out, config_yaml)
    counters = ("epoch", "iteration", "processed", "seconds", "best_score", "best_state", "val_results")
    required = ("optimizers", "schedulers", "scaler", "method", "rng", *counters)
    weights, state = load_checkpoint(folder, required=required)
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # one per rank (older: a dict)
    if len(rngs) != info.world_size:
        raise CCReIDError(f"--resume: {folder} was written by {len(rngs)} process(es), this run has "
                          f"{info.world_size}; resume with the same torchrun --nnodes x --nproc_per_node")
    restore_weights(training.model, weights, folder / WEIGHTS_NAME)
    for name, (optimizer, scheduler) in training.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
        if scheduler is not None:
            scheduler.load_state_dict(state["schedulers"][name])
    training.scaler.load_state_dict(state["scaler"])
    training.method.load_state_dict(state["method"])
    return {k: state[k] for k in counters} | {"batch": state.get("batch", 0)}, rngs


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
