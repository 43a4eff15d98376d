"""Deployment: embed images with a trained checkpoint, export it to ONNX.

::

    import ccreid
    embedder = ccreid.load("outputs/run/model.safetensors")
    features = embedder.embed(["a.jpg", "b.jpg"])  # [2, D], L2-normalised, CPU float32

Images may be file paths, PIL images or ``uint8`` tensors (``[3,H,W]`` or ``[B,3,H,W]``);
they get the checkpoint's test transform (resize to ``data.height x data.width``,
ImageNet normalisation). :func:`export_onnx` writes the same network (input ``images``
``[batch,3,H,W]`` normalised floats, output ``features`` ``[batch,D]``) with a dynamic
batch dimension; preprocessing facts are stored as ONNX metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms.v2.functional import pil_to_tensor

from ccreid.config import Config
from ccreid.data.dataset import read_image
from ccreid.data.transforms import build_test_transform
from ccreid.data.video import test_clips, time_axis
from ccreid.errors import CCReIDError
from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ccreid.inference.backends import (DEFAULT_OPSET, INSTALL_EXPORT, check_backend, embed, prepare, uses_camids,
                                       write_onnx)
from ccreid.inference.evaluator import tracklet_features
from ccreid.methods.restore import load_checkpoint_config, plugins_override, trained_model
from ccreid.models import ReIDModel
from ccreid.runtime.device import resolve_device
from ccreid.runtime.io import atomic_path

ImageInput = Union[str, Path, Image.Image, torch.Tensor]


def load_model(weights: Union[str, Path], device: Union[str, torch.device] = "cpu",
               overrides: Sequence[str] = ()) -> Tuple[ReIDModel, Config]:
    """The checkpoint's model (eval mode, on ``device``) and its config (+ ``overrides``)."""
    cfg, loaded = load_checkpoint_config(weights, None, overrides)
    model = trained_model(cfg, loaded, weights)
    return model.to(device).eval(), cfg


def as_uint8_images(images: Union[ImageInput, Sequence[ImageInput]]) -> list[torch.Tensor]:
    """Paths, PIL images and ``uint8`` tensors as a list of ``uint8 [3,H,W]`` RGB tensors."""
    if isinstance(images, (str, Path, Image.Image)) or (torch.is_tensor(images) and images.dim() == 3):
        images = [images]
    out: list[torch.Tensor] = []
    for item in images:
        if isinstance(item, (str, Path)):
            out.append(read_image(str(item)))
        elif isinstance(item, Image.Image):
            out.append(pil_to_tensor(item.convert("RGB")))
        elif torch.is_tensor(item) and item.dtype == torch.uint8 and item.dim() in (3, 4) and item.shape[-3] == 3:
            out.extend([item.cpu()] if item.dim() == 3 else item.cpu().unbind(0))
        else:
            kind = f"{item.dtype} tensor {tuple(item.shape)}" if torch.is_tensor(item) else type(item).__name__
            raise CCReIDError(f"images: cannot embed a {kind}; pass file paths, PIL images or uint8 [3,H,W] / "
                              f"[B,3,H,W] RGB tensors")
    return out


class Embedder:
    """Test transform + model forward (+ flip average) + L2 normalisation.

    ``backend`` / ``precision``: how the network runs (:func:`ccreid.inference.backends.prepare`:
    ``auto``, the fastest engine giving the fp32 features, ``torch`` with folded BatchNorms and
    channels_last, or ``onnxruntime``; ``fp32`` or ``bf16``)."""

    def __init__(self, model: ReIDModel, height: int, width: int, flip: bool = True,
                 device: Union[str, torch.device] = "cpu", batch_size: int = 64, backend: str = "auto",
                 precision: str = "fp32", clips: Optional[Tuple[int, int]] = None) -> None:
        self.clips = clips  # a video model's (seq_len, stride): it embeds tracklets
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.net = prepare(self.model, self.device, backend, precision)
        self.height, self.width = height, width
        self.flip = flip
        self.batch_size = batch_size
        self.transform = build_test_transform(height, width)

    @classmethod
    def from_weights(cls, weights: Union[str, Path], device: str = "auto", flip: Optional[bool] = None,
                     batch_size: Optional[int] = None, overrides: Sequence[str] = (), backend: str = "auto",
                     precision: str = "fp32") -> "Embedder":
        """An embedder for a ``model.safetensors`` checkpoint (flip and batch size from its config)."""
        resolved = resolve_device(device)
        check_backend(backend, precision, resolved)
        model, cfg = load_model(weights, resolved, overrides)
        clips = None if cfg.model.video is None else (cfg.data.video.seq_len, cfg.data.video.stride)
        return cls(model, cfg.data.height, cfg.data.width, cfg.test.flip if flip is None else flip,
                   resolved, batch_size or cfg.test.batch_size, backend, precision, clips)

    @property
    def dim(self) -> int:
        return self.model.out_dim

    def preprocess(self, images: Union[ImageInput, Sequence[ImageInput]]) -> torch.Tensor:
        """Normalised ``float32 [B,3,H,W]`` model input (on CPU)."""
        tensors = as_uint8_images(images)
        if not tensors:
            return torch.empty(0, 3, self.height, self.width)
        return torch.stack([self.transform(t, None)[0] for t in tensors])

    def forward_batch(self, batch: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """L2-normalised features of a preprocessed batch (flip-averaged when ``flip``)."""
        return F.normalize(embed(self.net, batch, self.flip, camids), dim=1)

    def embed(self, images: Union[ImageInput, Sequence[ImageInput]],
              camids: Optional[Sequence[int]] = None) -> torch.Tensor:
        """``float32 [B,D]`` L2-normalised features on CPU, in input order; ``camids`` (one per
        image) for a model trained with a camera embedding (``model.vit.sie``)."""
        if self.clips is not None:
            raise CCReIDError("this checkpoint is a video model: embed a tracklet's frames with "
                              "embed_tracklet(frames)")
        items = [images] if isinstance(images, (str, Path, Image.Image)) else images
        if torch.is_tensor(items):
            items = [items] if items.dim() == 3 else list(items.unbind(0))
        cams = None if camids is None else torch.as_tensor(camids, dtype=torch.long).reshape(-1)
        if cams is not None and len(cams) != len(items):
            raise CCReIDError(f"camids: {len(cams)} camera ids for {len(items)} images; pass one per image")
        chunks = [self.forward_batch(self.preprocess(items[i:i + self.batch_size]),
                                     None if cams is None else cams[i:i + self.batch_size]).cpu()
                  for i in range(0, len(items), self.batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, self.dim)


    def embed_tracklet(self, frames: Union[Sequence[ImageInput], torch.Tensor]) -> torch.Tensor:
        """A video model's ``float32 [D]`` feature of one tracklet (its frames in time order): the mean
        of its test clips' features (:func:`~ccreid.data.video.test_clips`), L2-normalised, as
        ``ccreid test`` computes it."""
        if self.clips is None:
            raise CCReIDError("this checkpoint is an image model: embed images with embed(images)")
        batch = self.preprocess(frames)
        if not len(batch):
            raise CCReIDError("frames: a tracklet needs at least one frame")
        clips = torch.stack([batch[index] for index in test_clips(len(batch), *self.clips)])
        feats = torch.cat([embed(self.net, clips[i:i + self.batch_size], self.flip).cpu()
                           for i in range(0, len(clips), self.batch_size)])
        return tracklet_features(feats, torch.zeros(len(feats), dtype=torch.long), 1)[0]


def load(weights: Union[str, Path], device: str = "auto", flip: Optional[bool] = None,
         batch_size: Optional[int] = None, backend: str = "auto", precision: str = "fp32",
         plugins: Sequence[str] = ()) -> Embedder:
    """``ccreid.load(weights).embed(images)``: see :class:`Embedder`. ``plugins`` replace the
    plug-ins the checkpoint records (files that moved since training)."""
    return Embedder.from_weights(weights, device, flip, batch_size, plugins_override(plugins), backend, precision)


class _Normalized(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.uses_camids = uses_camids(model)

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.normalize(self.model(images, camids) if self.uses_camids else self.model(images), dim=1)


def export_onnx(weights: Union[str, Path], out: Union[str, Path], opset: int = DEFAULT_OPSET,
                normalize: bool = True, plugins: Sequence[str] = ()) -> list[Path]:
    """Write ``out`` (one ``.onnx`` file): ``images [batch,3,H,W] -> features [batch,D]`` (a ViT
    with camera embedding takes ``camids [batch]`` int64 as a second input; a video model takes
    clips ``[batch,T,3,H,W]`` of ``T = data.video.seq_len`` frames, recorded as ``ccreid.seq_len``).

    ``normalize`` appends the L2 normalisation (features then match ``embed`` without
    flip). Opsets >= 18 use torch's ``torch.export`` exporter; older ones (down to 13)
    the legacy TorchScript exporter, as long as the installed torch still ships it.
    ``plugins`` replace the plug-ins the checkpoint records.
    """
    try:
        import onnx
    except ImportError:
        raise CCReIDError(f"ONNX export needs the optional packages onnx and onnxscript: {INSTALL_EXPORT}")
    if opset < 13:
        raise CCReIDError(f"option --opset: {opset} is too old (use 13 or newer; default {DEFAULT_OPSET})")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise CCReIDError(f"option --opset: {opset} is newer than the installed onnx knows ({newest}); "
                          f"use 13..{newest} (default {DEFAULT_OPSET})")
    model, cfg = load_model(weights, "cpu", plugins_override(plugins))
    net = _Normalized(model) if normalize else model
    out = Path(out)
    with atomic_path(out) as tmp:
        write_onnx(net, torch.zeros(2, *time_axis(cfg), 3, cfg.data.height, cfg.data.width), tmp, opset)
        proto = onnx.load(str(tmp))
        written = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=opset)
        if written != opset:  # the exporter may fall back to another opset: say so instead of writing it
            raise CCReIDError(f"option --opset: torch exported opset {written}, not {opset}; "
                              f"use --opset {written} or another version")
        meta = {"ccreid.height": cfg.data.height, "ccreid.width": cfg.data.width, "ccreid.mean": list(IMAGENET_MEAN),
                "ccreid.std": list(IMAGENET_STD), "ccreid.normalized": normalize, "ccreid.preset": cfg.model.preset}
        if cfg.model.video is not None:
            meta |= {"ccreid.seq_len": cfg.data.video.seq_len, "ccreid.video": cfg.model.video}
        onnx.helper.set_model_props(proto, {k: str(v) for k, v in meta.items()})
        onnx.save(proto, str(tmp))
    return [out]
