"""Activation maps (side by side for several checkpoints) and BSGA attention maps.

An activation map is the final feature map (after BSGA, if any) summed over channels
and min-max normalised per image; it is drawn as a jet heat map over the image, as in
the poster's Motivation figure. A video model's maps are drawn per frame of a tracklet's
first test clip, a strip of frames per row. Attention maps are the BSGA branch outputs (sigmoid,
drawn on their own ``[0,1]`` scale, not renormalised), next to the body-shape mask
they were trained to follow when a parsing map exists.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ccreid.config import Config
from ccreid.data.records import Record, frame_records, is_video
from ccreid.data.registry import DATASETS
from ccreid.data.transforms import build_test_transform
from ccreid.data.video import test_clips, time_axis
from ccreid.deploy import as_uint8_images, load_model
from ccreid.errors import CCReIDError
from ccreid.models import ReIDModel
from ccreid.viz.canvas import blank_tile, body_mask_tile, grid, load_tile, overlay, save_png, tile_size


@torch.no_grad()
def activation_maps(model: ReIDModel, images: torch.Tensor) -> torch.Tensor:
    """``[B,h,w]`` channel sums of the last feature map, min-max normalised to ``[0,1]`` (clips: ``[B*T,h,w]``)."""
    model.eval()
    fmap, _ = model.feature_map(images)
    heat = fmap.float().flatten(0, fmap.dim() - 4).sum(1)  # clips [B, T, C, h, w]: one map per frame
    low = heat.flatten(1).min(1).values[:, None, None]
    high = heat.flatten(1).max(1).values[:, None, None]
    return (heat - low) / (high - low).clamp(min=1e-12)


@torch.no_grad()
def attention_maps(model: ReIDModel, images: torch.Tensor) -> List[torch.Tensor]:
    """BSGA maps ``[B,h,w]`` in stage order (empty without BSGA; clips: ``[B*T,h,w]``)."""
    model.eval()
    return [a.float()[:, 0] for a in model(images, return_attention=True)["attention"]]


def sample_records(cfg: Config, num: int, seed: int = 0) -> List[Record]:
    """``num`` random test queries (images or tracklets) of the config's dataset (CC queries when defined)."""
    protocols = DATASETS.get(cfg.data.name)(cfg.data).protocols
    if not protocols:
        raise CCReIDError(f"dataset {cfg.data.name!r} at {cfg.data.root} has no test protocols to sample images from")
    split = protocols.get("cc") or next(iter(protocols.values()))
    records = sorted({r.path: r for r in split.query}.values(), key=lambda r: r.path)
    return sorted(random.Random(seed).sample(records, min(num, len(records))), key=lambda r: r.path)


def clip_frames(cfg: Config) -> int:
    """Frames a row shows: a video model's clip length (``data.video.seq_len``), else 1."""
    return math.prod(time_axis(cfg))


def model_input(paths: Sequence[str], cfg: Config, device: torch.device | str, frames: int = 1) -> torch.Tensor:
    """The test-transformed images of ``paths``; for a video model, clips of ``frames`` of them."""
    transform = build_test_transform(cfg.data.height, cfg.data.width)
    images = torch.stack([transform(t, None)[0] for t in as_uint8_images(list(paths))]).to(device)
    return images if cfg.model.video is None else images.unflatten(0, (-1, frames))


def strips(tiles: Sequence[np.ndarray], frames: int) -> List[np.ndarray]:
    """Consecutive runs of ``frames`` tiles side by side (one per image when ``frames`` is 1)."""
    return [np.concatenate(tiles[i:i + frames], axis=1) for i in range(0, len(tiles), frames)]


def _images_and_maps(cfg: Config, images: Optional[Sequence[str]], parsing: Optional[Sequence[Optional[str]]],
                     num_images: int, seed: int) -> Tuple[List[str], List[Optional[str]]]:
    """Image paths and their maps: ``images``, or sampled test queries (a tracklet: the frames of its
    first test clip, :func:`clip_frames` of them)."""
    if images:
        if cfg.model.video is not None:
            raise CCReIDError("option --images: a video model is drawn on tracklets of its dataset; leave --images out")
        maps = list(parsing) if parsing is not None else [None] * len(images)
        if len(maps) != len(images):
            raise CCReIDError(f"option --parsing: {len(maps)} maps given for {len(images)} images")
        return [str(p) for p in images], maps
    records = sample_records(cfg, num_images, seed)
    if is_video(records):
        clip = (cfg.data.video.seq_len, cfg.data.video.stride)
        records = [frame_records([r])[i] for r in records for i in test_clips(r.num_frames, *clip)[0]]
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
    tiles, frames = [load_tile(p, size) for p in paths], clip_frames(first_cfg)
    columns: List[List[np.ndarray]] = [strips(tiles, frames)]
    for model, cfg in models:
        heat = activation_maps(model, model_input(paths, cfg, device, frames)).cpu()
        columns.append(strips([overlay(tile, h) for tile, h in zip(tiles, heat)], frames))
    rows = [[Image.fromarray(col[i]) for col in columns] for i in range(len(columns[0]))]
    titles = ["image" if frames == 1 else "clip", *(labels or [cfg.model.preset for _, cfg in models])]
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
    tiles, frames = [load_tile(p, size) for p in paths], clip_frames(cfg)
    attention = [a.cpu() for a in attention_maps(model, model_input(paths, cfg, device, frames))]
    show_masks = any(m is not None and Path(m).is_file() for m in maps)
    columns = [strips(tiles, frames)]
    if show_masks:
        columns.append(strips([body_mask_tile(m, size) if m and Path(m).is_file() else blank_tile(size, "no map")
                               for m in maps], frames))
    columns += [strips([overlay(tile, a[i]) for i, tile in enumerate(tiles)], frames) for a in attention]
    rows = [[Image.fromarray(col[i]) for col in columns] for i in range(len(columns[0]))]
    titles = ["image" if frames == 1 else "clip", *(["body shape"] if show_masks else []),
              *(f"BSGA {s}" for s in model.bsga)]
    title = f"attention maps of {cfg.model.preset}"
    return [save_png(grid(rows, titles, title), Path(out_dir) / name)]
