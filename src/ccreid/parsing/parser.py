""":class:`HumanParser`: batched SCHP inference on any device, images in, label maps out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ccreid.choices import AMP_MODES
from ccreid.errors import CCReIDError
from ccreid.parsing.checkpoint import CheckpointInfo, inspect_checkpoint, load_schp
from ccreid.parsing.network import SCHPNetwork
from ccreid.parsing.variants import SCHPVariant
from ccreid.parsing.warp import PersonBox, preprocess, warp_back
from ccreid.runtime.amp import autocast
from ccreid.runtime.device import cpu_has_native_bf16, resolve_device

#: share of pixels whose label matches fp32, measured by benchmarks/bench_parse.py at 473x473
#: (benchmarks/results/parse_speed.md); ``--amp auto`` picks only a precision listed here at >= 0.995
#: (CUDA bf16/fp16: not measured yet, so never picked)
MEASURED_AGREEMENT = {("cpu", "bf16"): 0.747}
MIN_AGREEMENT = 0.995
#: images per forward pass by device type: on a CPU one at a time is fastest (the 473x473 activations
#: of larger batches fall out of cache: 1.15 vs 0.98 images/s at 4 on 2 cores), a GPU wants many
DEFAULT_BATCH = {"cpu": 1, "cuda": 32, "mps": 8}


def resolve_parse_amp(device: torch.device, amp: str) -> str:
    """``--amp``: ``auto`` is the fastest precision the device runs natively whose measured
    label agreement with fp32 is at least :data:`MIN_AGREEMENT`, else ``off``."""
    if amp not in AMP_MODES:
        raise CCReIDError(f"option --amp: {amp!r} is not one of {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type == "cpu":
        raise CCReIDError("option --amp: fp16 needs a GPU (use bf16 or off on CPU)")
    if amp != "auto":
        return amp
    native = {"cuda": ("fp16", "bf16") if device.type == "cuda" and torch.cuda.is_bf16_supported() else ("fp16",),
              "cpu": ("bf16",) if cpu_has_native_bf16() else ()}.get(device.type, ())
    good = [p for p in native if MEASURED_AGREEMENT.get((device.type, p), 0.0) >= MIN_AGREEMENT]
    return good[0] if good else "off"


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """No TF32 on CUDA while parsing in fp32 (it changes labels); restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class HumanParser:
    """An SCHP network ready for inference: ``parser.logits(bgr_images)`` gives each image's
    fusion logits at its own size (``[h,w,C]`` float32, pre-softmax), ``parser.labels`` the
    argmax maps (``uint8 [h,w]``), exactly as SCHP's extractor computes them."""

    def __init__(self, model: SCHPNetwork, variant: SCHPVariant, device: str = "auto", amp: str = "auto",
                 fuse: bool = True, channels_last: Optional[bool] = None,
                 checkpoint: Optional[CheckpointInfo] = None) -> None:
        self.device = resolve_device(device)
        self.amp = resolve_parse_amp(self.device, amp)
        self.variant = variant
        self.checkpoint = checkpoint  # what a map folder records of the weights (run_parse needs it)
        self.channels_last = self.device.type != "mps" if channels_last is None else channels_last
        model = model.eval()
        if fuse:
            model = model.fuse()
        model = model.to(self.device)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model

    @classmethod
    def from_checkpoint(cls, path: str | Path, labels: Optional[str] = None, device: str = "auto",
                        amp: str = "auto", label: str = "--weights") -> "HumanParser":
        """Load an official SCHP ``.pth`` (LIP, ATR or Pascal-Person-Part)."""
        return cls.load(inspect_checkpoint(path, labels, label), device, amp, label)

    @classmethod
    def load(cls, checkpoint: CheckpointInfo, device: str = "auto", amp: str = "auto",
             label: str = "--weights") -> "HumanParser":
        """The network of an already inspected checkpoint."""
        model, variant = load_schp(checkpoint.path, checkpoint.variant.name, label)
        return cls(model, variant, device, amp, checkpoint=checkpoint)

    @property
    def default_batch(self) -> int:
        return DEFAULT_BATCH.get(self.device.type, 1)

    @property
    def input_size(self) -> Tuple[int, int]:
        return self.variant.input_size

    @torch.inference_mode()
    def input_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Fusion logits of preprocessed inputs, upsampled to the input size: ``float32 [B,H,W,C]`` on CPU."""
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with exact_float32(self.device), autocast(self.device, self.amp):
            fusion = self.model(batch)
        full = F.interpolate(fusion.float(), size=self.input_size, mode="bilinear", align_corners=True)
        return full.permute(0, 2, 3, 1).cpu()

    def logits(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Logits ``[h,w,C]`` at each BGR image's own size (one batch)."""
        inputs, boxes = zip(*(preprocess(image, self.input_size) for image in images))
        return self.image_logits(torch.stack(inputs), boxes)

    def image_logits(self, inputs: torch.Tensor, boxes: Sequence[PersonBox]) -> List[np.ndarray]:
        """Logits ``[h,w,C]`` of preprocessed ``inputs`` warped back to their images' boxes."""
        full = self.input_logits(inputs).numpy()
        return [warp_back(full[i], box, self.input_size) for i, box in enumerate(boxes)]

    def labels(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Label maps ``uint8 [h,w]`` (first maximum on ties)."""
        return [to_labels(logits) for logits in self.logits(images)]


def to_labels(logits: np.ndarray) -> np.ndarray:
    """Argmax over the class axis of ``[h,w,C]`` logits, as ``uint8``."""
    return np.asarray(logits.argmax(axis=2), dtype=np.uint8)
