"""The training loop: CRE on the batch, forward, the METHOD.md objective, Adam + warm-up."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from tqdm import tqdm

from ccreid.config import Config, to_yaml
from ccreid.data.manager import DataManager
from ccreid.engine.checkpoint import STATE_NAME, WEIGHTS_NAME, save_state, save_weights
from ccreid.engine.evaluator import evaluate_splits
from ccreid.engine.results import strip_curves
from ccreid.engine.resume import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ccreid.engine.runtime import autocast, resolve_device, seed_everything, write_text
from ccreid.errors import CCReIDError
from ccreid.losses import ReIDObjective
from ccreid.models import build_cre_from_config, build_model_from_config
from ccreid.models.presets import Components, resolve_components


@dataclass
class TrainResult:
    """What one training run produced."""

    preset: str
    results: Dict[str, dict]
    val_results: Dict[str, dict]
    seconds: float
    images_per_second: float
    out_dir: Path


def components_of(cfg: Config) -> Components:
    """CRE/BSGA/BCTri switches: the preset, overridden by explicit ``enabled`` keys."""
    return resolve_components(
        cfg.model.preset, cfg.model.cre.enabled, cfg.model.bsga.enabled, cfg.loss.bctri.enabled
    )


def lr_factor(epoch: int, cfg: Config) -> float:
    """Linear warm-up to the base lr, then x gamma at each milestone (per epoch)."""
    t = cfg.train
    warm = min(1.0, (epoch + 1) / t.warmup_epochs) if t.warmup_epochs > 0 else 1.0
    return warm * t.gamma ** sum(epoch >= m for m in t.milestones)


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
    uninterrupted run with the same config would. An existing run in ``out_dir`` is
    never replaced unless ``overwrite``.
    """
    out = Path(out_dir)
    if not (resume or overwrite) and ((out / WEIGHTS_NAME).exists() or latest_checkpoint(out) is not None):
        raise CCReIDError(f"{out} already holds a training run; use --resume to continue it or choose another --out")
    device = resolve_device(cfg.train.device)
    autocast(device, cfg.train.amp)  # an amp mode the device lacks fails here, before any output
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    comps = components_of(cfg)
    manager = DataManager(cfg, need_parsing=comps.cre or comps.bsga)
    model = build_model_from_config(cfg.model, manager.num_train_pids).to(device)
    cre = build_cre_from_config(cfg.model, sorted(manager.label_set.clothes)) if comps.cre else None
    objective = ReIDObjective.from_config(cfg, comps, manager.num_train_pids).to(device)
    params = list(model.parameters()) + list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
    config_yaml = to_yaml(cfg)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    val_splits = manager.eval_splits("val") if cfg.train.select_on == "val" else {}
    if cfg.train.select_on == "val" and not val_splits:
        raise CCReIDError(f"config key 'train.select_on': dataset {cfg.data.name!r} has no validation split (use last)")

    run = {"epoch": 0, "iteration": 0, "processed": 0, "seconds": 0.0, "best_score": float("-inf"),
           "best_state": None, "val_results": {}}
    if resume:
        run = _restore(out, config_yaml, model, optimizer, scheduler, scaler, generator)
    write_text(out / "config.yaml", config_yaml)
    log_path = out / "metrics.jsonl"
    _truncate_log(log_path, run["epoch"])
    start = time.perf_counter() - run["seconds"]
    with open(log_path, "a") as log_file:
        for epoch in range(run["epoch"], cfg.train.epochs):
            model.train()
            manager.set_epoch(epoch)
            bar = tqdm(manager.train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                       disable=not progress, leave=False, unit="batch")
            for batch in bar:
                terms = _train_step(batch, model, cre, objective, optimizer, scaler, manager, device, cfg, generator)
                run["iteration"] += 1
                run["processed"] += terms.pop("images")
                rate = run["processed"] / (time.perf_counter() - start)
                record = {"epoch": epoch + 1, "iter": run["iteration"], "lr": optimizer.param_groups[0]["lr"],
                          "images_per_s": round(rate, 2)} | terms
                log_file.write(json.dumps(record) + "\n")
                if on_log and run["iteration"] % cfg.train.log_every == 0:
                    on_log(record)
                bar.set_postfix(loss=f"{terms['loss']:.3f}", img_s=f"{rate:.0f}")
            scheduler.step()
            run["epoch"] = epoch + 1
            last_epoch = run["epoch"] == cfg.train.epochs
            due = cfg.train.eval_every > 0 and run["epoch"] % cfg.train.eval_every == 0
            if val_splits and (due or last_epoch):
                res = evaluate_splits(model, val_splits, manager.loader, device, cfg.test.flip,
                                      cfg.test.ap_mode, progress=progress)
                score = _selection_score(res)
                log_file.write(json.dumps({"epoch": run["epoch"], "val": strip_curves(res)}) + "\n")
                if score > run["best_score"]:
                    run["best_score"], run["val_results"] = score, res | {"epoch": run["epoch"]}
                    run["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log_file.flush()
            every = cfg.train.checkpoint_every
            if every > 0 and (run["epoch"] % every == 0) and not last_epoch:
                run["seconds"] = time.perf_counter() - start
                state = run | {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "scaler": scaler.state_dict(), "rng": rng_state(generator)}
                save_checkpoint(out, run["epoch"], model, config_yaml, manager.num_train_pids, state,
                                cfg.train.keep_last)
    seconds = time.perf_counter() - start
    if run["best_state"] is not None:
        model.load_state_dict(run["best_state"])
    save_weights(out / WEIGHTS_NAME, model, config_yaml, manager.num_train_pids, preset=cfg.model.preset)
    save_state(out / STATE_NAME, {"epoch": run["epoch"], "iteration": run["iteration"],
                                  "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    results = evaluate_splits(model, manager.eval_splits("test"), manager.loader, device, cfg.test.flip,
                              cfg.test.ap_mode, cfg.test.protocols, progress)
    return TrainResult(cfg.model.preset, results, run["val_results"], seconds,
                       run["processed"] / max(seconds, 1e-9), out)


def _restore(out: Path, config_yaml: str, model, optimizer, scheduler, scaler, generator) -> dict:
    """Load the newest checkpoint of ``out`` into the training objects; return the run counters."""
    folder = latest_checkpoint(out)
    if folder is None:
        raise CCReIDError(f"--resume: no checkpoint in {out / 'checkpoints'} (train without --resume to start)")
    saved_cfg = out / "config.yaml"
    if saved_cfg.is_file() and saved_cfg.read_text() != config_yaml:
        raise CCReIDError(f"--resume: the config differs from {saved_cfg}; resume with the same config and overrides")
    weights, state = load_checkpoint(folder)
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], generator)
    return {k: state[k] for k in ("epoch", "iteration", "processed", "seconds", "best_score", "best_state",
                                  "val_results")}


def _truncate_log(path: Path, epoch: int) -> None:
    """Keep only the log records of epochs up to ``epoch`` (all of them when starting anew)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if epoch and json.loads(line)["epoch"] <= epoch]
    write_text(path, "".join(line + "\n" for line in kept))


def _train_step(batch, model, cre, objective, optimizer, scaler, manager, device, cfg, generator) -> dict:
    """One optimisation step; returns the loss terms as floats and the images processed."""
    images = batch["image"].to(device, non_blocking=True)
    parsing = batch["parsing"].to(device, non_blocking=True)
    has_parsing = batch["has_parsing"].to(device)
    pids = batch["pid"].to(device)
    clothes = batch["clothes"].to(device)
    is_erased = torch.zeros(len(pids), dtype=torch.bool, device=device)
    counts = {}
    if cre is not None:
        erased = cre(images, parsing, has_parsing, pids, clothes, manager.num_train_clothes, generator=generator)
        images, pids, clothes, parsing, is_erased = (erased.images, erased.pids, erased.clothes,
                                                     erased.parsing, erased.is_erased)
        counts = {"num_erased": int(erased.num_erased), "num_without_map": int(erased.num_without_map)}
    has_mask = (parsing >= 0).flatten(1).any(1)
    with autocast(device, cfg.train.amp):
        outputs = model(images)
    outputs = {k: (v.float() if torch.is_tensor(v) else [a.float() for a in v]) for k, v in outputs.items()}
    loss, terms = objective(outputs, pids, clothes, is_erased, parsing > 0, has_mask)
    if not torch.isfinite(loss):
        bad = [k for k, v in terms.items() if torch.is_tensor(v) and not torch.isfinite(v).all()]
        raise CCReIDError(f"loss became {loss.item()} (terms: {', '.join(bad) or 'total'}); lower train.lr or use train.amp=off")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    floats = {k: (float(v.detach()) if torch.is_tensor(v) else v) for k, v in terms.items()}
    return {"loss": float(loss.detach())} | floats | counts | {"images": len(pids)}
