"""Helpers for the viz/report/export tests: a tiny custom dataset, tiny checkpoints, run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccreid.commands import tester
from ccreid.config import load_config, to_yaml
from ccreid.methods import build_model_from_config
from ccreid.runs.checkpoint import WEIGHTS_NAME, save_weights
from ccreid.runs.results import write_results

HEIGHT, WIDTH = 64, 32
TRAIN_IDS, TEST_IDS = (0, 1, 2), (3, 4, 5, 6)


def person(pid: int, outfit: int, cam: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its LIP parsing map: face, upper clothes and pants on a background."""
    rng = np.random.default_rng([pid, outfit, cam])
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    left = 8 + cam
    labels[4:14, left + 4:left + 12] = 13  # face
    labels[14:36, left:left + 16] = 5  # upper clothes
    labels[36:60, left + 2:left + 14] = 9  # pants
    palette = {0: [40 + 30 * cam, 60, 80], 13: [200 - 20 * (pid % 3), 160, 130]}
    palette[5] = list(np.random.default_rng([pid, outfit, 1]).integers(30, 230, 3))
    palette[9] = list(np.random.default_rng([pid, outfit, 2]).integers(30, 230, 3))
    image = np.zeros((HEIGHT, WIDTH, 3), np.int32)
    for label, colour in palette.items():
        image[labels == label] = colour
    image += rng.integers(-12, 13, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_dataset(root: Path) -> Path:
    """Custom-manifest dataset: train ids see 2 outfits; test galleries outfit 0 (cams 0, 1),
    queries outfit 0 (cam 2, same clothes) and outfit 1 (cam 3, changed clothes)."""
    rows = ["path,pid,camid,clothes_id,split,parsing_path"]
    plan = [(p, o, c, "train") for p in TRAIN_IDS for o in (0, 1) for c in (0, 1)]
    plan += [(p, 0, c, "gallery") for p in TEST_IDS for c in (0, 1)]
    plan += [(p, o, c, "query") for p in TEST_IDS for o, c in ((0, 2), (1, 3))]
    for pid, outfit, cam, split in plan:
        image, labels = person(pid, outfit, cam)
        name = f"{pid}_{outfit}_c{cam}"
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "parsing").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(labels, mode="L").save(root / "parsing" / f"{name}.png")
        rows.append(f"images/{name}.png,{pid},{cam},{outfit},{split},parsing/{name}.png")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def tiny_config(manifest: Path, preset: str = "baseline", *extra: str):
    return load_config(None, [
        "data.name=custom", f"data.root={manifest}", f"data.height={HEIGHT}", f"data.width={WIDTH}",
        "data.workers=0", "data.ids_per_batch=2", "data.images_per_id=2", "model.backbone=resnet18",
        "model.width_mult=0.25", "model.pretrained=none",
        f"model.preset={preset}", "train.device=cpu", "test.batch_size=16", *extra,
    ])


def make_checkpoint(path: Path, manifest: Path, preset: str = "baseline", seed: int = 0) -> Path:
    """A randomly initialised tiny model saved as a ccreid checkpoint (BN stats perturbed)."""
    cfg = tiny_config(manifest, preset)
    torch.manual_seed(seed)
    model = build_model_from_config(cfg, len(TRAIN_IDS))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    save_weights(path, model, to_yaml(cfg), len(TRAIN_IDS), preset=preset)
    return path


def write_metrics(path: Path, epochs: int = 3, iters: int = 4, val: bool = True) -> Path:
    """A plausible training log (decreasing losses, warm-up lr, validation lines)."""
    lines = []
    for epoch in range(1, epochs + 1):
        for i in range(iters):
            step = (epoch - 1) * iters + i + 1
            lines.append({"epoch": epoch, "iter": step, "lr": 3.5e-4 * min(1.0, epoch / 2), "images_per_s": 100.0,
                          "loss": 8.0 / step, "ce_orig": 5.0 / step, "tri": 2.0 / step, "bctri": 1.0 / step,
                          "num_erased": 16})
        if val:
            lines.append({"epoch": epoch, "val": {"cc": {"rank1": 10.0 * epoch, "mAP": 5.0 * epoch}}})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def make_train_run(folder: Path, manifest: Path, preset: str = "baseline", seed: int = 0) -> Path:
    """What ``ccreid train`` leaves: weights, metrics.jsonl, config.yaml, results.json/.md."""
    weights = make_checkpoint(folder / WEIGHTS_NAME, manifest, preset, seed)
    write_metrics(folder / "metrics.jsonl")
    tester.test_checkpoint(weights, folder / "final_eval")  # ccreid test never writes into a run's folder
    for name in ("results.json", "results.md", "config.yaml"):
        (folder / "final_eval" / name).rename(folder / name)
    (folder / "final_eval").rmdir()
    return folder


def make_demo_run(folder: Path, manifest: Path, presets=("baseline", "ours")) -> Path:
    """What ``ccreid demo`` leaves: results.json at the top, runs in <preset>/seed0/."""
    table = {}
    for i, preset in enumerate(presets):
        run = make_train_run(folder / preset / "seed0", manifest, preset, seed=i)
        table[preset] = json.loads((run / "results.json").read_text())["presets"][preset]
    write_results(folder, table, "ccreid demo: tiny", seeds=[0], timings={"total_s": 1.0},
                  machine={"device": "cpu"}, config=to_yaml(tiny_config(manifest)))
    return folder
