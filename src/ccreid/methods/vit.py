"""A transformer baseline in the TransReID style (He et al., ICCV 2021), preset ``vit``.

Any timm ``vit_*`` model (``model.vit.name``) at the re-ID input size: its position
embeddings are resized once, bilinearly, from the pretrained grid to the patch grid of
``data.height x data.width`` and learnt there (TransReID's ``resize_pos_embed``; inputs of
another size are resampled at run time), patches may overlap (``model.vit.patch_stride`` below
the patch size, TransReID's 12 for 16), and the class token goes through the BNNeck head;
trained with the baseline's CE + triplet. ``model.pretrained``: ``none``, ``imagenet``
(timm's weights) or a local timm weight file. Activation maps show the patch tokens on
their grid. ``model.vit.sie``: TransReID's camera embedding (SIE), one learnt vector per
camera added (times ``model.vit.sie_coef``) to every token after the position embeddings; the
model then takes the camera ids in training and at test time (``uses_camids``). Not built:
TransReID's jigsaw branch. ``model.vit.drop_path`` (0.1): TransReID's stochastic depth
(rates ``linspace(0, 0.1, depth)``, on the attention and MLP branches of each block);
``loss.vit.soft_margin`` (true): TransReID's soft-margin triplet.
Differences from TransReID's code: docs/METHOD.md, "ViT".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ccreid.config import Config, ModelConfig, register_section, setting
from ccreid.data.records import ReIDDataset
from ccreid.errors import CCReIDError
from ccreid.inference.backends import CAMIDS_REQUIRED
from ccreid.methods.base import Preset, register_preset
from ccreid.methods.paper import PaperMethod, Switches
from ccreid.methods.recipe import RecipeOptimizer
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
    # stochastic depth on both residual branches of every block, rising linearly from 0 at the first block
    # to this rate at the last (timm's drop_path_rate; TransReID's MODEL.DROP_PATH 0.1)
    drop_path: float = setting(0.1, range=(0, 1))


@dataclass
class ViTLossConfig:
    """The triplet of preset ``vit``: the config section ``loss.vit``."""

    # TransReID's NO_MARGIN: soft-margin batch-hard triplet log(1 + exp(d_ap - d_an)); false: loss.triplet_margin
    soft_margin: bool = True


register_section("model.vit", ViTConfig)
register_section("loss.vit", ViTLossConfig)


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
        return patch_grid(height, width, proj.kernel_size[0], proj.stride[0])

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


def patch_grid(height: int, width: int, patch: int, stride: int) -> Tuple[int, int]:
    """The patch grid of a ``height x width`` input (TransReID's ``PatchEmbed_overlap`` num_y, num_x)."""
    return (height - patch) // stride + 1, (width - patch) // stride + 1


def fit_position_embeddings(vit: nn.Module, grid: Tuple[int, int]) -> None:
    """``vit``'s position embeddings moved onto ``grid`` once, as TransReID's ``resize_pos_embed``
    does at load: the stored grid resized bilinearly (class token kept), a new parameter of
    ``1 + h * w`` rows; the patch embedding then reports that grid, so timm adds it as it is."""
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    old_h, old_w = vit.patch_embed.grid_size
    with torch.no_grad():
        pos = vit.pos_embed.detach()
        cells = pos[0, prefix:].reshape(1, old_h, old_w, -1).permute(0, 3, 1, 2)
        cells = F.interpolate(cells, size=grid, mode="bilinear", align_corners=False)
        cells = cells.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
        vit.pos_embed = nn.Parameter(torch.cat([pos[:, :prefix], cells], dim=1))
    vit.patch_embed.grid_size = grid
    vit.patch_embed.num_patches = grid[0] * grid[1]


def build_vit(cfg: ModelConfig, height: int, width: int) -> nn.Module:
    """The timm ViT of ``model.vit`` with its weights (``model.pretrained``) at timm's own input size,
    then TransReID's patch stride and position embeddings on the patch grid of ``height x width``."""
    name = cfg.vit.name
    timm = import_timm(name)
    if not name.startswith("vit_") or not timm.is_model(name):
        raise CCReIDError(f"config key 'model.vit.name': {name!r} is not a timm vit_* model "
                          "(e.g. vit_small_patch16_224, vit_base_patch16_224)")
    create_kwargs = {"num_classes": 0, "dynamic_img_size": True, "drop_path_rate": cfg.vit.drop_path}
    vit = timm.create_model(name, pretrained=False, **create_kwargs)
    load_vit_pretrained(vit, name, cfg.pretrained, create_kwargs)
    patch = vit.patch_embed.proj.kernel_size[0]
    stride = cfg.vit.patch_stride or patch
    if not 0 < stride <= patch:
        raise CCReIDError(f"config key 'model.vit.patch_stride': {stride} must be in 1..{patch} (the patch size)")
    if min(height, width) < patch:
        raise CCReIDError(f"data.height x data.width {height}x{width}: model.vit.name={name} needs at least "
                          f"{patch} pixels each way (its patch size)")
    vit.patch_embed.proj.stride = (stride, stride)
    fit_position_embeddings(vit, patch_grid(height, width, patch, stride))
    if cfg.pretrained == "none":  # nothing learnt to resize: a fresh draw on the grid, as timm and TransReID init
        nn.init.trunc_normal_(vit.pos_embed, std=0.02)
    return vit


class ViTMethod(RecipeOptimizer, PaperMethod):
    """The baseline's losses and optimizer on a ViT (BSGA has no CNN stage to follow: refused)."""

    pretrained_prefix = "vit."
    runs_on_clips = False  # its network takes images

    @classmethod
    def build_network(cls, cfg: Config, preset: Preset, num_classes: int) -> nn.Module:
        if Switches.of(preset).bsga:
            raise CCReIDError("model.preset=vit: BSGA follows a CNN stage and has none in a ViT; "
                              "leave model.bsga.enabled unset")
        size, vit = (cfg.data.height, cfg.data.width), cfg.model.vit
        return ViTReID(build_vit(cfg.model, *size), num_classes, size,
                       sie_cameras=vit.sie_cameras if vit.sie else 0, sie_coef=vit.sie_coef)

    def objective_options(self) -> Dict[str, Any]:
        """The baseline's objective; its triplet with TransReID's soft margin (``loss.vit.soft_margin``)."""
        options = super().objective_options()
        return options | {"triplet_margin": None} if self.cfg.loss.vit.soft_margin else options

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
