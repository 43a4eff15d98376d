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
from ccreid.engine.runtime import autocast, machine_info, resolve_device, seed_everything, write_text
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
) -> TrainResult:
    """Train ``cfg`` and evaluate on the dataset's protocols; outputs go to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
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
    write_text(out / "config.yaml", config_yaml)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    val_splits = manager.eval_splits("val") if cfg.train.select_on == "val" else {}
    if cfg.train.select_on == "val" and not val_splits:
        raise CCReIDError(f"config key 'train.select_on': dataset {cfg.data.name!r} has no validation split (use last)")

    log_path = out / "metrics.jsonl"
    log_file = open(log_path, "w")
    best_score, best_state, val_results = float("-inf"), None, {}
    processed, start = 0, time.perf_counter()
    iteration = 0
    try:
        for epoch in range(cfg.train.epochs):
            model.train()
            manager.set_epoch(epoch)
            bar = tqdm(manager.train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                       disable=not progress, leave=False, unit="batch")
            for batch in bar:
                terms = _train_step(batch, model, cre, objective, optimizer, scaler, manager, device, cfg, generator)
                iteration += 1
                processed += terms.pop("images")
                rate = processed / (time.perf_counter() - start)
                record = {"epoch": epoch + 1, "iter": iteration, "lr": optimizer.param_groups[0]["lr"],
                          "images_per_s": round(rate, 2)} | terms
                log_file.write(json.dumps(record) + "\n")
                if on_log and iteration % cfg.train.log_every == 0:
                    on_log(record)
                bar.set_postfix(loss=f"{terms['loss']:.3f}", img_s=f"{rate:.0f}")
            scheduler.step()
            last_epoch = epoch + 1 == cfg.train.epochs
            due = cfg.train.eval_every > 0 and (epoch + 1) % cfg.train.eval_every == 0
            if val_splits and (due or last_epoch):
                res = evaluate_splits(model, val_splits, manager.loader, device, cfg.test.flip,
                                      cfg.test.ap_mode, progress=progress)
                score = _selection_score(res)
                log_file.write(json.dumps({"epoch": epoch + 1, "val": _strip(res)}) + "\n")
                if score > best_score:
                    best_score, val_results = score, res | {"epoch": epoch + 1}
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log_file.flush()
    finally:
        log_file.close()
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    save_weights(out / WEIGHTS_NAME, model, config_yaml, manager.num_train_pids, preset=cfg.model.preset)
    save_state(out / STATE_NAME, {"epoch": cfg.train.epochs, "iteration": iteration,
                                  "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    results = evaluate_splits(model, manager.eval_splits("test"), manager.loader, device, cfg.test.flip,
                              cfg.test.ap_mode, cfg.test.protocols, progress)
    return TrainResult(cfg.model.preset, results, val_results, seconds, processed / max(seconds, 1e-9), out)


def _strip(results: Dict[str, dict]) -> Dict[str, dict]:
    return {name: {k: v for k, v in m.items() if k != "cmc"} for name, m in results.items()}


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
