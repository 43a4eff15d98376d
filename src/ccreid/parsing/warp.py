"""SCHP's pre- and post-processing: person box, affine warps (OpenCV 4.x), normalisation.

The released checkpoints' users get OpenCV 4.x's fixed-point bilinear warp; a float warp
(``grid_sample``, OpenCV 5) changes labels visibly, so OpenCV 4.x is required
(``pip install 'ccreid[parse]'``). Images are decoded by OpenCV in BGR order, ignoring
EXIF orientation so that maps stay aligned with the pixels ccreid's loaders read.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Tuple

import numpy as np
import torch
from PIL import Image

from ccreid.data.dataset import unreadable
from ccreid.errors import CCReIDError
from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD

#: ImageNet statistics in BGR order (SCHP feeds BGR images)
BGR_MEAN = IMAGENET_MEAN[::-1]
BGR_STD = IMAGENET_STD[::-1]
OPENCV_HINT = "pip install 'ccreid[parse]' (opencv-python-headless>=4.5,<5)"


def opencv() -> ModuleType:
    """The ``cv2`` module, which must be OpenCV 4.x (its warp is the one SCHP's users get)."""
    try:
        import cv2
    except ImportError:
        raise CCReIDError(f"human parsing needs OpenCV 4.x, which is not installed: {OPENCV_HINT}")
    if not cv2.__version__.startswith("4."):
        raise CCReIDError(f"human parsing needs OpenCV 4.x, found {cv2.__version__} whose bilinear warp differs "
                          f"from SCHP's: {OPENCV_HINT}")
    return cv2


@dataclass(frozen=True)
class PersonBox:
    """The whole image as SCHP's box: centre and size (float32), padded to the input aspect."""

    center: np.ndarray
    scale: np.ndarray
    height: int
    width: int


def person_box(height: int, width: int, input_size: Tuple[int, int]) -> PersonBox:
    """Box ``[0, 0, w-1, h-1]``: centre ``((w-1)/2, (h-1)/2)``, size padded to ``W/H``."""
    aspect = input_size[1] / input_size[0]
    w, h = float(width - 1), float(height - 1)
    center = np.array([w * 0.5, h * 0.5], dtype=np.float32)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return PersonBox(center, np.array([w, h], dtype=np.float32), height, width)


def affine_matrix(box: PersonBox, input_size: Tuple[int, int], inverse: bool = False) -> np.ndarray:
    """The 2x3 map image -> network input (or back), from three point pairs as SCHP builds it."""
    out_h, out_w = input_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = box.center
    src[1] = box.center + np.array([0, box.scale[0] * -0.5], dtype=np.float32)
    dst[0] = [(out_w - 1) * 0.5, (out_h - 1) * 0.5]
    dst[1] = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5]) + np.array([0, (out_w - 1) * -0.5], np.float32)
    for points in (src, dst):
        direct = points[0] - points[1]
        points[2] = points[1] + np.array([-direct[1], direct[0]], dtype=np.float32)
    cv2 = opencv()
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def refuse_bombs(data: np.ndarray) -> None:
    """ValueError when the header of encoded ``data`` declares more pixels than Pillow's
    decompression-bomb limits allow (checked before OpenCV would allocate them)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.open(io.BytesIO(data.tobytes())).close()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(unreadable(err))
    except (OSError, ValueError):  # a header Pillow cannot read: OpenCV decides
        pass


def read_bgr(path: str | Path) -> np.ndarray:
    """``uint8 [H,W,3]`` BGR (grey replicated, alpha dropped); ValueError with the reason otherwise."""
    cv2 = opencv()
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ValueError(unreadable(err) or err.strerror or str(err))
    if not data.size:
        raise ValueError("empty file")
    refuse_bombs(data)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError("not a decodable image")
    return image


def preprocess(image: np.ndarray, input_size: Tuple[int, int]) -> Tuple[torch.Tensor, PersonBox]:
    """A BGR image warped to ``input_size`` (black border) and normalised: ``float32 [3,H,W]``."""
    cv2 = opencv()
    box = person_box(image.shape[0], image.shape[1], input_size)
    warped = cv2.warpAffine(image, affine_matrix(box, input_size), (input_size[1], input_size[0]),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    tensor = torch.from_numpy(warped).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(BGR_MEAN).view(3, 1, 1)
    std = torch.tensor(BGR_STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std), box


def warp_back(logits: np.ndarray, box: PersonBox, input_size: Tuple[int, int]) -> np.ndarray:
    """Input-size logits ``[H,W,C]`` (float32) warped channel by channel to the image: ``[h,w,C]``."""
    cv2 = opencv()
    matrix = affine_matrix(box, input_size, inverse=True)
    channels = [cv2.warpAffine(np.ascontiguousarray(logits[:, :, c]), matrix, (box.width, box.height),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                for c in range(logits.shape[2])]
    return np.stack(channels, axis=2)
