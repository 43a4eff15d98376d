"""A transformer baseline in the TransReID style (He et al., ICCV 2021), preset ``vit``.

Any timm ``vit_*`` model (``model.vit.name``) at the re-ID input size: its position
embeddings are interpolated to the patch grid of ``data.height x data.width`` (at load and,
for overlapping patches, at run time), patches may overlap (``model.vit.patch_stride`` below
the patch size, TransReID's 12 for 16), and the class token goes through the BNNeck head;
trained with the baseline's CE + triplet. ``model.pretrained``: ``none``, ``imagenet``
(timm's weights) or a local timm weight file. Activation maps show the patch tokens on
their grid. ``model.vit.sie``: TransReID's camera embedding (SIE), one learnt vector per
camera added (times ``model.vit.sie_coef``) to every token after the position embeddings; the
model then takes the camera ids in training and at test time (``uses_camids``). Not built:
TransReID's jigsaw branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ccreid.config import Config, ModelConfig, register_section, setting
from ccreid.data.records import ReIDDataset
from ccreid.errors import CCReIDError
from ccreid.inference.backends import CAMIDS_REQUIRED
from ccreid.methods.base import Preset, register_preset
from ccreid.methods.paper import PaperMethod, Switches
from ccreid.models.heads import BNNeckHead
from ccreid.models.timm_backbone import import_timm
from ccreid.training.pretrained import load_vit_pretrained


@dataclass
class ViTConfig:
    """The transformer of preset ``vit`` (TransReID-style): the config section ``model.vit``."""

    name: str = "vit_base_patch16_224"  # any timm vit_* model
    patch_stride: Optional[int] = None  # None: the patch size; smaller: overlapping patches (TransReID: 12)
    sie: bool = False  # TransReID's camera embedding (side information embedding) added to every token
    sie_coef: float = 3.0  # its weight (TransReID's SIE_COE)
    # rows of the camera table; 0: from the data (max camera id + 1), saved in config.yaml
    sie_cameras: int = setting(0, min=0, meaning="0: from the data")


register_section("model.vit", ViTConfig)


class ViTReID(nn.Module):
    """timm ViT -> class token -> BNNeck (+ classifier in training), the model contract of ReIDModel."""

    def __init__(self, vit: nn.Module, num_classes: int, image_size: Tuple[int, int], sie_cameras: int = 0,
                 sie_coef: float = 3.0) -> None:
        super().__init__()
        self.vit = vit
        self.image_size = image_size
        self.uses_camids = sie_cameras > 0
        self.sie_coef = sie_coef
        self.sie = nn.Parameter(torch.zeros(sie_cameras, 1, vit.embed_dim)) if self.uses_camids else None
        if self.sie is not None:
            nn.init.trunc_normal_(self.sie, std=0.02)
        self.head = BNNeckHead(vit.embed_dim, num_classes, pooling="avg")
        self.num_classes = num_classes
        self.out_dim = self.head.out_dim
        self.feature = "bn"
        self.bsga = nn.ModuleDict()  # no attention branch (activation-map tools read this)

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        """The patch grid of an input (stride may be below the patch size: overlapping patches)."""
        proj = self.vit.patch_embed.proj
        return ((height - proj.kernel_size[0]) // proj.stride[0] + 1,
                (width - proj.kernel_size[1]) // proj.stride[1] + 1)

    def tokens(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """timm's ``forward_features``, with the camera embedding added after the position embeddings."""
        if self.sie is None:
            return self.vit.forward_features(images)
        if camids is None:
            raise CCReIDError(CAMIDS_REQUIRED)
        vit = self.vit
        x = vit._pos_embed(vit.patch_embed(images))  # timm's forward_features, step by step
        x = x + self.sie_coef * self.sie[camids].to(x.dtype)
        return vit.norm(vit.blocks(vit.norm_pre(vit.patch_drop(x))))

    def feature_map(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Patch tokens on their grid ``[B, C, h, w]`` (for activation maps)."""
        tokens = self.tokens(images, camids)[:, self.vit.num_prefix_tokens:]
        h, w = self.grid(*images.shape[-2:])
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w), []

    def forward(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor] | torch.Tensor:
        cls_token = self.tokens(images, camids)[:, 0]
        out: Dict[str, object] = dict(self.head(cls_token[:, :, None, None]))
        out["attention"] = []
        if self.training:
            return out
        return out["bn_feat"] if self.feature == "bn" else out["feat"]


def build_vit(cfg: ModelConfig, height: int, width: int) -> nn.Module:
    """The timm ViT of ``model.vit``, position embeddings fitted to ``height x width``."""
    name = cfg.vit.name
    timm = import_timm(name)
    if not name.startswith("vit_") or not timm.is_model(name):
        raise CCReIDError(f"config key 'model.vit.name': {name!r} is not a timm vit_* model "
                          "(e.g. vit_small_patch16_224, vit_base_patch16_224)")
    create_kwargs = {"num_classes": 0, "img_size": (height, width), "dynamic_img_size": True}
    vit = timm.create_model(name, pretrained=False, **create_kwargs)
    load_vit_pretrained(vit, name, cfg.pretrained, create_kwargs)
    patch = vit.patch_embed.proj.kernel_size[0]
    stride = cfg.vit.patch_stride or patch
    if not 0 < stride <= patch:
        raise CCReIDError(f"config key 'model.vit.patch_stride': {stride} must be in 1..{patch} (the patch size)")
    vit.patch_embed.proj.stride = (stride, stride)
    return vit


class ViTMethod(PaperMethod):
    """The baseline's losses and optimizer on a ViT (BSGA has no CNN stage to follow: refused)."""

    runs_on_clips = False  # its network takes images

    @classmethod
    def build_network(cls, cfg: Config, preset: Preset, num_classes: int) -> nn.Module:
        if Switches.of(preset).bsga:
            raise CCReIDError("model.preset=vit: BSGA follows a CNN stage and has none in a ViT; "
                              "leave model.bsga.enabled unset")
        size, vit = (cfg.data.height, cfg.data.width), cfg.model.vit
        return ViTReID(build_vit(cfg.model, *size), num_classes, size,
                       sie_cameras=vit.sie_cameras if vit.sie else 0, sie_coef=vit.sie_coef)

    @classmethod
    def complete_config(cls, cfg: Config, dataset: ReIDDataset) -> None:
        """``model.vit.sie_cameras`` 0: the largest camera id of the dataset's records + 1."""
        if not cfg.model.vit.sie:
            return
        needed = max(r.camid for r in dataset.all_records()) + 1
        if cfg.model.vit.sie_cameras == 0:
            cfg.model.vit.sie_cameras = needed
        elif cfg.model.vit.sie_cameras < needed:
            raise CCReIDError(f"config key 'model.vit.sie_cameras': {cfg.model.vit.sie_cameras} rows, but dataset "
                              f"{dataset.name!r} has camera ids up to {needed - 1} (use 0: from the data)")


register_preset("vit", ViTMethod)
