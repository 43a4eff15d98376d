"""``model.pretrained``: weights from a local file or a download, loaded into a built backbone.

:mod:`ccreid.models` builds networks only; this module reads weight files and fetches the
ImageNet weights (``none``, ``imagenet`` or a path):

- a local safetensors file or ``torch.save`` checkpoint (told apart by content, not by name),
  read with safetensors or ``torch.load(weights_only=True)`` (no pickled code runs) and
  mapped onto the backbone's keys by :func:`ccreid.models.weights.load_state_into`;
- ``imagenet`` for a ccreid ResNet (or any backbone with a ``weights_url``): torchvision's
  default weights, from the torch hub cache or downloaded there (hash checked);
- ``imagenet`` for ``timm:<name>`` and the ViT preset: timm's own pretrained weights.

The :class:`ccreid.models.weights.LoadReport` goes to ``backbone.pretrained_report``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn
from torch.hub import load_state_dict_from_url

from ccreid.config import ModelConfig
from ccreid.errors import CCReIDError, first_line
from ccreid.files import PICKLE, SAFETENSORS, TORCH_ZIP, describe_format, require_file, weights_format
from ccreid.models.backbones import Backbone, ResNetBackbone, build_backbone
from ccreid.models.timm_backbone import TimmBackbone, import_timm
from ccreid.models.weights import LoadReport, load_state_into, state_tensors


LABEL = "config key 'model.pretrained': weight file"
SAVE_AS = "pass a .safetensors file or a .pth/.pt file saved as torch.save(model.state_dict())"


def _weight_file(path: Union[str, Path]) -> Tuple[Path, str]:
    """``path`` and its :func:`~ccreid.files.weights_format`, or a one-line error when it is
    missing, a folder, empty or not a weights file."""
    path = require_file(path, LABEL, "use imagenet, none or a path to a .pth/.safetensors file")
    kind = weights_format(path)
    if kind not in (SAFETENSORS, TORCH_ZIP, PICKLE):
        raise CCReIDError(f"{LABEL} {path}: {describe_format(kind)}; {SAVE_AS}")
    return path, kind


def read_weight_file(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensors of a local safetensors file or ``torch.save`` checkpoint, whatever its name
    (nothing pickled runs)."""
    path, kind = _weight_file(path)
    try:
        if kind == SAFETENSORS:
            from safetensors.torch import load_file

            return state_tensors(load_file(str(path)))
        with open(path, "rb") as handle:  # a handle: torch reads a path ending in .safetensors as safetensors
            return state_tensors(torch.load(handle, map_location="cpu", weights_only=True))
    except Exception as err:  # unpickling and safetensors errors come in many types
        raise CCReIDError(f"{LABEL} {path}: {describe_format(kind)} that cannot be read "
                          f"({type(err).__name__}: {first_line(err)}); {SAVE_AS}")


def pretrained_backbone(model: ModelConfig) -> Backbone:
    """The backbone of ``model.backbone`` with the weights of ``model.pretrained``."""
    backbone = build_backbone(model.backbone, model.width_mult, model.last_stride)
    load_pretrained(backbone, model.pretrained)
    return backbone


def load_pretrained(backbone: Backbone, pretrained: str) -> Optional[LoadReport]:
    """Load ``pretrained`` (``none``, ``imagenet`` or a weight-file path) into ``backbone``;
    the report is also kept as ``backbone.pretrained_report``."""
    if pretrained == "none":
        report = None
    elif isinstance(backbone, TimmBackbone):
        report = (_timm_imagenet(backbone.net, backbone.name, backbone.create_kwargs) if pretrained == "imagenet"
                  else load_state_into(backbone.net, read_weight_file(pretrained), pretrained, backbone.arch))
    elif pretrained == "imagenet":
        report = _download(backbone)
    else:
        report = load_state_into(backbone, read_weight_file(pretrained), pretrained, backbone.arch)
    backbone.pretrained_report = report
    return report


def _download(backbone: Backbone) -> LoadReport:
    """The weights at ``backbone.weights_url``, from the torch hub cache or downloaded there."""
    if backbone.weights_url is None:
        raise CCReIDError(f"config key 'model.pretrained': ccreid knows no imagenet weights of {backbone.arch}; "
                          "pass a weight file (model.pretrained=/path/to/file) or model.pretrained=none")
    if isinstance(backbone, ResNetBackbone) and backbone.width_mult != 1.0:
        raise CCReIDError(f"config key 'model.pretrained': imagenet weights need model.width_mult=1 "
                          f"(got {backbone.width_mult}); use pretrained=none")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(backbone.weights_url)
    if cached.is_file():
        return load_state_into(backbone, read_weight_file(cached), str(cached), backbone.arch)
    try:
        state = load_state_dict_from_url(backbone.weights_url, progress=False, check_hash=True, weights_only=True)
    except Exception as err:  # URLError, socket errors, hash mismatch...
        raise CCReIDError(
            f"config key 'model.pretrained': cannot download {backbone.weights_url} ({type(err).__name__}); "
            f"put the file at {cached}, or set model.pretrained=/path/to/file or model.pretrained=none"
        )
    return load_state_into(backbone, state_tensors(state), backbone.weights_url, backbone.arch)


def _timm_cache(timm: Any, name: str) -> str:
    """Where timm looks for the pretrained weights of ``name`` (for the offline error)."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return "nowhere: timm lists no pretrained weights for it"
    if cfg.hf_hub_id:
        from huggingface_hub.constants import HF_HUB_CACHE

        return f"{HF_HUB_CACHE}/models--{cfg.hf_hub_id.replace('/', '--')}"
    return f"{torch.hub.get_dir()}/checkpoints/{str(cfg.url).rsplit('/', 1)[-1]}"


def _timm_imagenet(net: nn.Module, name: str, create_kwargs: Dict[str, Any]) -> LoadReport:
    """timm's pretrained weights of ``name``, built as ``net`` was and copied into it."""
    timm = import_timm(name)
    try:
        source = timm.create_model(name, pretrained=True, **create_kwargs)
    except Exception as err:  # network, hub, hash and "no pretrained weights" errors
        raise CCReIDError(
            f"config key 'model.pretrained': cannot fetch timm's imagenet weights of {name} ({type(err).__name__}); "
            f"timm looks in {_timm_cache(timm, name)}; or set model.pretrained=/path/to/weights.safetensors "
            "or model.pretrained=none"
        )
    net.load_state_dict(source.state_dict())
    loaded = sorted(k for k in net.state_dict() if not k.endswith("num_batches_tracked"))
    return LoadReport(source=f"timm pretrained weights of {name}", loaded=loaded, missing=[], unexpected=[],
                      mismatched=[], ignored=[])


def load_vit_pretrained(vit: nn.Module, name: str, pretrained: str, create_kwargs: Dict[str, Any]) -> None:
    """``model.pretrained`` into a timm ViT: timm's weights, or a local timm file whose position
    embeddings timm's own filter interpolates to ``vit``'s grid."""
    if pretrained == "imagenet":
        _timm_imagenet(vit, name, create_kwargs)
    elif pretrained != "none":
        from timm.models import load_checkpoint
        from timm.models.vision_transformer import checkpoint_filter_fn

        path, kind = _weight_file(pretrained)
        if (kind == SAFETENSORS) != (path.suffix == ".safetensors"):  # timm tells formats by the name
            right = ".safetensors" if kind == SAFETENSORS else ".pth"
            raise CCReIDError(f"{LABEL} {path}: {describe_format(kind)} named {path.suffix or 'without a suffix'}, "
                              f"and timm reads files by their name; rename it to end in {right}")
        try:
            load_checkpoint(vit, str(path), strict=False, filter_fn=checkpoint_filter_fn)
        except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as err:
            raise CCReIDError(f"config key 'model.pretrained': cannot load {path} into {name} "
                              f"({type(err).__name__}: {first_line(err)})")
