"""Activation maps (side by side for several checkpoints) and BSGA attention maps.

An activation map is the final feature map (after BSGA, if any) summed over channels
and min-max normalised per image; it is drawn as a jet heat map over the image, as in
the poster's Motivation figure. Attention maps are the BSGA branch outputs (sigmoid,
drawn on their own ``[0,1]`` scale, not renormalised), next to the body-shape mask
they were trained to follow when a parsing map exists.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ccreid.config import Config
from ccreid.data.records import ImageRecord, is_video
from ccreid.data.registry import DATASETS
from ccreid.data.transforms import build_test_transform
from ccreid.deploy import as_uint8_images, load_model
from ccreid.errors import CCReIDError
from ccreid.models import ReIDModel
from ccreid.viz.canvas import blank_tile, body_mask_tile, grid, load_tile, overlay, save_png, tile_size


@torch.no_grad()
def activation_maps(model: ReIDModel, images: torch.Tensor) -> torch.Tensor:
    """``[B,h,w]`` channel sums of the last feature map, min-max normalised to ``[0,1]``."""
    model.eval()
    fmap, _ = model.feature_map(images)
    heat = fmap.float().sum(1)
    low = heat.flatten(1).min(1).values[:, None, None]
    high = heat.flatten(1).max(1).values[:, None, None]
    return (heat - low) / (high - low).clamp(min=1e-12)


@torch.no_grad()
def attention_maps(model: ReIDModel, images: torch.Tensor) -> List[torch.Tensor]:
    """BSGA maps ``[B,h,w]`` in stage order (empty without BSGA)."""
    model.eval()
    return [a.float()[:, 0] for a in model(images, return_attention=True)["attention"]]


def sample_records(cfg: Config, num: int, seed: int = 0) -> List[ImageRecord]:
    """``num`` random test query images of the config's dataset (CC queries when defined)."""
    protocols = DATASETS.get(cfg.data.name)(cfg.data).protocols
    if not protocols:
        raise CCReIDError(f"dataset {cfg.data.name!r} at {cfg.data.root} has no test protocols to sample images from")
    split = protocols.get("cc") or next(iter(protocols.values()))
    if is_video(split.query):
        raise CCReIDError(f"dataset {cfg.data.name!r} holds tracklets: activation and attention maps are drawn for "
                          "image models only (so far)")
    records = sorted({r.path: r for r in split.query}.values(), key=lambda r: r.path)
    return sorted(random.Random(seed).sample(records, min(num, len(records))), key=lambda r: r.path)


def model_input(paths: Sequence[str], cfg: Config, device: torch.device | str) -> torch.Tensor:
    transform = build_test_transform(cfg.data.height, cfg.data.width)
    return torch.stack([transform(t, None)[0] for t in as_uint8_images(list(paths))]).to(device)


def _images_and_maps(cfg: Config, images: Optional[Sequence[str]], parsing: Optional[Sequence[Optional[str]]],
                     num_images: int, seed: int) -> Tuple[List[str], List[Optional[str]]]:
    if images:
        maps = list(parsing) if parsing is not None else [None] * len(images)
        if len(maps) != len(images):
            raise CCReIDError(f"option --parsing: {len(maps)} maps given for {len(images)} images")
        return [str(p) for p in images], maps
    records = sample_records(cfg, num_images, seed)
    return [r.path for r in records], [r.parsing_path for r in records]


def viz_actmap(weights_list: Sequence[str | Path], out_dir: str | Path, images: Optional[Sequence[str]] = None,
               labels: Optional[Sequence[str]] = None, num_images: int = 6, seed: int = 0,
               device: str | torch.device = "cpu", name: str = "actmap.png") -> List[Path]:
    """One grid: a row per image, the image then one activation overlay per checkpoint.

    Without ``images``, ``num_images`` test queries of the first checkpoint's dataset.
    Column titles are ``labels`` or each checkpoint's preset.
    """
    if not weights_list:
        raise CCReIDError("option --weights: give at least one checkpoint")
    if labels is not None and len(labels) != len(weights_list):
        raise CCReIDError(f"option --labels: {len(labels)} labels for {len(weights_list)} checkpoints")
    models = [load_model(w, device) for w in weights_list]
    first_cfg = models[0][1]
    paths, _ = _images_and_maps(first_cfg, images, None, num_images, seed)
    size = tile_size(first_cfg.data.height, first_cfg.data.width)
    tiles = [load_tile(p, size) for p in paths]
    columns: List[List[np.ndarray]] = []
    for model, cfg in models:
        heat = activation_maps(model, model_input(paths, cfg, device)).cpu()
        columns.append([overlay(tile, h) for tile, h in zip(tiles, heat)])
    rows = [[Image.fromarray(t) for t in (tiles[i], *(col[i] for col in columns))] for i in range(len(paths))]
    titles = ["image", *(labels or [cfg.model.preset for _, cfg in models])]
    return [save_png(grid(rows, titles, "activation maps (channel-summed last feature map)"), Path(out_dir) / name)]


def viz_attention(weights: str | Path, out_dir: str | Path, images: Optional[Sequence[str]] = None,
                  parsing: Optional[Sequence[Optional[str]]] = None, num_images: int = 6, seed: int = 0,
                  device: str | torch.device = "cpu", name: str = "attention.png") -> List[Path]:
    """One grid: a row per image: the image, its body-shape mask (if a map exists), each BSGA map."""
    model, cfg = load_model(weights, device)
    if not len(model.bsga):
        raise CCReIDError(f"weights file {weights}: preset {cfg.model.preset!r} has no BSGA attention "
                          "(use a checkpoint trained with BSGA, e.g. preset ours or baseline+bsga)")
    paths, maps = _images_and_maps(cfg, images, parsing, num_images, seed)
    size = tile_size(cfg.data.height, cfg.data.width)
    tiles = [load_tile(p, size) for p in paths]
    attention = [a.cpu() for a in attention_maps(model, model_input(paths, cfg, device))]
    show_masks = any(m is not None and Path(m).is_file() for m in maps)
    rows = []
    for i, tile in enumerate(tiles):
        row = [tile]
        if show_masks:
            row.append(body_mask_tile(maps[i], size) if maps[i] and Path(maps[i]).is_file()
                       else blank_tile(size, "no map"))
        row += [overlay(tile, a[i]) for a in attention]
        rows.append([Image.fromarray(t) for t in row])
    titles = ["image", *(["body shape"] if show_masks else []), *(f"BSGA {s}" for s in model.bsga)]
    title = f"attention maps of {cfg.model.preset}"
    return [save_png(grid(rows, titles, title), Path(out_dir) / name)]
