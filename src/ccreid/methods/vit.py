"""A transformer baseline in the TransReID style (He et al., ICCV 2021), preset ``vit``.

Any timm ``vit_*`` model (``model.vit.name``) at the re-ID input size: its position
embeddings are interpolated to the patch grid of ``data.height x data.width`` (at load and,
for overlapping patches, at run time), patches may overlap (``model.vit.patch_stride`` below
the patch size, TransReID's 12 for 16), and the class token goes through the BNNeck head;
trained with the baseline's CE + triplet. ``model.pretrained``: ``none``, ``imagenet``
(timm's weights) or a local timm weight file. Activation maps show the patch tokens on
their grid. Not built: TransReID's camera embedding (SIE) and jigsaw branch.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from ccreid.config import Config, ModelConfig
from ccreid.errors import CCReIDError
from ccreid.methods.base import Method, Preset, register_preset
from ccreid.models.heads import BNNeckHead
from ccreid.models.presets import PRESETS as PAPER_PRESETS
from ccreid.models.timm_backbone import _import_timm


class ViTReID(nn.Module):
    """timm ViT -> class token -> BNNeck (+ classifier in training), the model contract of ReIDModel."""

    def __init__(self, vit: nn.Module, num_classes: int, image_size: Tuple[int, int]) -> None:
        super().__init__()
        self.vit = vit
        self.image_size = image_size
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

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(images)

    def feature_map(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Patch tokens on their grid ``[B, C, h, w]`` (for activation maps)."""
        tokens = self.tokens(images)[:, self.vit.num_prefix_tokens:]
        h, w = self.grid(*images.shape[-2:])
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w), []

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor] | torch.Tensor:
        cls_token = self.tokens(images)[:, 0]
        out: Dict[str, object] = dict(self.head(cls_token[:, :, None, None]))
        out["attention"] = []
        if self.training:
            return out
        return out["bn_feat"] if self.feature == "bn" else out["feat"]


def build_vit(cfg: ModelConfig, height: int, width: int) -> nn.Module:
    """The timm ViT of ``model.vit``, position embeddings fitted to ``height x width``."""
    name = cfg.vit.name
    timm = _import_timm(name)
    if not name.startswith("vit_") or not timm.is_model(name):
        raise CCReIDError(f"config key 'model.vit.name': {name!r} is not a timm vit_* model "
                          "(e.g. vit_small_patch16_224, vit_base_patch16_224)")
    try:
        vit = timm.create_model(name, pretrained=cfg.pretrained == "imagenet", num_classes=0,
                                img_size=(height, width), dynamic_img_size=True)
    except RuntimeError as err:  # e.g. no network for timm's download
        raise CCReIDError(f"model.pretrained=imagenet: timm could not load {name} ({str(err).splitlines()[0]}); "
                          "pass a local weight file or model.pretrained=none")
    patch = vit.patch_embed.proj.kernel_size[0]
    stride = cfg.vit.patch_stride or patch
    if not 0 < stride <= patch:
        raise CCReIDError(f"config key 'model.vit.patch_stride': {stride} must be in 1..{patch} (the patch size)")
    vit.patch_embed.proj.stride = (stride, stride)
    if cfg.pretrained not in ("none", "imagenet"):
        from timm.models import load_checkpoint
        from timm.models.vision_transformer import checkpoint_filter_fn

        try:
            load_checkpoint(vit, cfg.pretrained, strict=False, filter_fn=checkpoint_filter_fn)
        except (OSError, RuntimeError, KeyError) as err:
            raise CCReIDError(f"config key 'model.pretrained': cannot load {cfg.pretrained} into {name} "
                              f"({str(err).splitlines()[0][:120]})")
    return vit


class ViTMethod(Method):
    """The baseline's losses and optimizer on a ViT (BSGA has no CNN stage to follow: refused)."""

    @classmethod
    def build_network(cls, cfg: Config, preset: Preset, num_classes: int) -> nn.Module:
        if preset.components.bsga:
            raise CCReIDError("model.preset=vit: BSGA follows a CNN stage and has none in a ViT; "
                              "leave model.bsga.enabled unset")
        size = (cfg.data.height, cfg.data.width)
        return ViTReID(build_vit(cfg.model, *size), num_classes, size)


register_preset("vit", ViTMethod, PAPER_PRESETS["baseline"])
