"""Picture building blocks with PIL: display tiles, heat colours, borders, captions, grids."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torchvision.transforms.v2.functional import resize

from ccreid.data.dataset import read_image, read_parsing, resize_nearest
from ccreid.runtime.io import atomic_path

#: Tiles are at most this many pixels high (real data uses 384x192 inputs).
MAX_TILE_HEIGHT = 192
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
GREEN, RED, BLUE = (22, 163, 74), (220, 38, 38), (37, 99, 235)


@functools.lru_cache(maxsize=None)
def font(size: int = 11) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def tile_size(height: int, width: int) -> Tuple[int, int]:
    """Display size for model inputs of ``height x width`` (aspect kept, capped height)."""
    scale = min(1.0, MAX_TILE_HEIGHT / height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def load_tile(path: str, size: Tuple[int, int]) -> np.ndarray:
    """An image file as ``uint8 [h,w,3]`` at display ``size``."""
    return resize(read_image(path), list(size), antialias=True).permute(1, 2, 0).numpy()


def body_mask_tile(parsing_path: str, size: Tuple[int, int]) -> np.ndarray:
    """The body-shape mask (parsing label > 0) of a map file as a white-on-black tile."""
    mask = resize_nearest(read_parsing(parsing_path), size) > 0
    return np.repeat((mask.numpy() * 255).astype(np.uint8)[..., None], 3, axis=2)


def blank_tile(size: Tuple[int, int], text: str) -> np.ndarray:
    img = Image.new("RGB", (size[1], size[0]), (200, 200, 200))
    ImageDraw.Draw(img).text((3, size[0] // 2 - 6), text, fill=TEXT, font=font(10))
    return np.asarray(img)


def jet(heat: np.ndarray) -> np.ndarray:
    """``[h,w]`` values in ``[0,1]`` -> ``uint8 [h,w,3]`` jet colours (blue low, red high)."""
    x = np.clip(heat, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4 * x - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blend a heat map (any size, values in ``[0,1]``) over ``image`` ``uint8 [h,w,3]``."""
    heat = torch.nn.functional.interpolate(heat[None, None].float(), size=image.shape[:2], mode="bilinear",
                                           align_corners=False)[0, 0]
    blended = (1 - alpha) * image.astype(np.float32) + alpha * jet(heat.numpy()).astype(np.float32)
    return blended.round().astype(np.uint8)


def framed(tile: np.ndarray, color: Tuple[int, int, int], width: int = 3) -> Image.Image:
    return ImageOps.expand(Image.fromarray(tile), border=width, fill=color)


def captioned(img: Image.Image, text: str, height: int = 14) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + height), BACKGROUND)
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((2, img.height + 1), text, fill=TEXT, font=font(10))
    return out


def grid(rows: Sequence[Sequence[Image.Image]], col_titles: Optional[Sequence[str]] = None,
         title: Optional[str] = None, gap: int = 4) -> Image.Image:
    """Rows of cells, each centred in its column, on a white canvas with optional headers."""
    cols = max(len(r) for r in rows)
    titles = list(col_titles or [])
    widths = [max([r[c].width for r in rows if c < len(r)]
                  + ([round(font(10).getlength(titles[c])) + 4] if c < len(titles) else [])) for c in range(cols)]
    heights = [max(cell.height for cell in r) for r in rows]
    head = (16 if title else 0) + (16 if titles else 0)
    total_w = max(sum(widths) + gap * (cols + 1), round(font(11).getlength(title or "")) + 2 * gap)
    canvas = Image.new("RGB", (total_w, head + sum(heights) + gap * (len(rows) + 1)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 2), title, fill=TEXT, font=font(11))
    xs = [gap + sum(widths[:c]) + gap * c for c in range(cols)]
    for x, width, text in zip(xs, widths, titles):
        draw.text((x + (width - font(10).getlength(text)) / 2, head - 14), text, fill=TEXT, font=font(10))
    y = head + gap
    for r, row in enumerate(rows):
        for x, width, cell in zip(xs, widths, row):
            canvas.paste(cell, (x + (width - cell.width) // 2, y))
        y += heights[r] + gap
    return canvas


def save_png(img: Image.Image, path: str | Path) -> Path:
    """Write ``img`` as PNG atomically."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return Path(path)
