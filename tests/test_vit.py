"""The ViT of preset ``vit`` against transcriptions of TransReID (damo-cv/TransReID,
``model/backbones/vit_pytorch.py``): the token path (``PatchEmbed_overlap`` + ``forward_features``) at patch
stride 16 and 12, and stochastic depth (``dpr = linspace(0, drop_path_rate, depth)``, ``Block.forward``)."""

from __future__ import annotations

import pytest
import torch

from ccreid.config import Config
from ccreid.methods import build_model_from_config

timm = pytest.importorskip("timm")
import math  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from ccreid.methods.vit import fit_position_embeddings  # noqa: E402


def vit_model(stride=None, sie=0, drop_path=0.1):
    cfg = Config()
    cfg.model.preset, cfg.model.pretrained, cfg.data.height, cfg.data.width = "vit", "none", 64, 32
    cfg.model.vit.name, cfg.model.vit.patch_stride, cfg.model.vit.drop_path = "vit_tiny_patch16_224", stride, drop_path
    cfg.model.vit.sie, cfg.model.vit.sie_cameras = sie > 0, sie
    return build_model_from_config(cfg, 5)


def transreid_forward_features(vit, x, pos_embed, sie_embed=None, camera_id=None, sie_xishu=3.0):
    """``TransReID.forward_features`` (no jigsaw branch), its modules taken from ``vit``."""
    B = x.shape[0]
    x = vit.patch_embed.proj(x)
    x = x.flatten(2).transpose(1, 2)
    cls_tokens = vit.cls_token.expand(B, -1, -1)
    x = torch.cat((cls_tokens, x), dim=1)
    if sie_embed is not None:
        x = x + pos_embed + sie_xishu * sie_embed[camera_id]
    else:
        x = x + pos_embed
    for blk in vit.blocks:
        x = blk(x)
    x = vit.norm(x)
    return x[:, 0]


@pytest.mark.parametrize("stride", [16, 12])
def test_token_path_equals_transreid_at_patch_stride_16_and_12(stride):
    torch.manual_seed(0)
    model = vit_model(stride, sie=3).eval()
    images, camids = torch.randn(2, 3, 64, 32), torch.tensor([0, 2])
    grid = ((64 - 16) // stride + 1, (32 - 16) // stride + 1)  # PatchEmbed_overlap's num_y, num_x
    assert model.grid(64, 32) == grid and model.vit.pos_embed.shape[1] == 1 + grid[0] * grid[1]
    with torch.no_grad():  # the stored position embeddings are added as they are, as TransReID's
        ours = model.tokens(images, camids)[:, 0]
        theirs = transreid_forward_features(model.vit, images, model.vit.pos_embed, model.sie, camids)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def transreid_resize_pos_embed(posemb, posemb_new, hight, width):
    """``resize_pos_embed`` of ``vit_pytorch.py`` (what ``load_param`` applies to the pretrained grid)."""
    ntok_new = posemb_new.shape[1]
    posemb_token, posemb_grid = posemb[:, :1], posemb[0, 1:]
    ntok_new -= 1
    gs_old = int(math.sqrt(len(posemb_grid)))
    posemb_grid = posemb_grid.reshape(1, gs_old, gs_old, -1).permute(0, 3, 1, 2)
    posemb_grid = F.interpolate(posemb_grid, size=(hight, width), mode='bilinear')
    posemb_grid = posemb_grid.permute(0, 2, 3, 1).reshape(1, hight * width, -1)
    return torch.cat([posemb_token, posemb_grid], dim=1)


@pytest.mark.parametrize("grid", [(16, 8), (21, 10)])  # 256x128 at stride 16 and 12
def test_position_embeddings_are_resized_once_as_transreid_loads_them(grid):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True)
    pretrained = vit.pos_embed.detach().clone()  # the 14x14 grid of the stored weights
    fit_position_embeddings(vit, grid)
    expected = transreid_resize_pos_embed(pretrained, torch.zeros(1, 1 + grid[0] * grid[1], 1), *grid)
    torch.testing.assert_close(vit.pos_embed.detach(), expected, rtol=0, atol=0)
    assert isinstance(vit.pos_embed, torch.nn.Parameter) and vit.patch_embed.grid_size == grid


def test_drop_path_rates_and_placement_follow_transreid():
    model = vit_model()
    blocks = model.vit.blocks
    dpr = [x.item() for x in torch.linspace(0, 0.1, len(blocks))]  # TransReID's stochastic depth decay rule
    assert [getattr(b.drop_path1, "drop_prob", 0.0) for b in blocks] == pytest.approx(dpr)  # 0: nn.Identity
    assert [getattr(b.drop_path2, "drop_prob", 0.0) for b in blocks] == pytest.approx(dpr)
    blk = blocks[-1].train()
    x = torch.randn(2, 9, blk.norm1.normalized_shape[0])
    torch.manual_seed(1)
    ours = blk(x)
    torch.manual_seed(1)  # TransReID's Block.forward, the same drop-path modules (same masks)
    y = x + blk.drop_path1(blk.attn(blk.norm1(x)))
    y = y + blk.drop_path2(blk.mlp(blk.norm2(y)))
    torch.testing.assert_close(ours, y)
    assert not torch.equal(ours, blk.eval()(x))  # a branch was dropped in training
    assert all(getattr(b.drop_path1, "drop_prob", 0.0) == 0.0 for b in vit_model(drop_path=0.0).vit.blocks)


def transreid_soft_margin_triplet(global_feat, labels):
    """``TripletLoss()`` (margin None: ``nn.SoftMarginLoss``) of TransReID's ``loss/triplet_loss.py``."""
    m = global_feat.size(0)
    xx = torch.pow(global_feat, 2).sum(1, keepdim=True).expand(m, m)
    dist_mat = (xx + xx.t() - 2 * global_feat @ global_feat.t()).clamp(min=1e-12).sqrt()
    is_pos = labels.expand(m, m).eq(labels.expand(m, m).t())
    dist_ap = torch.max(dist_mat[is_pos].contiguous().view(m, -1), 1)[0]
    dist_an = torch.min(dist_mat[~is_pos].contiguous().view(m, -1), 1)[0]
    return torch.nn.SoftMarginLoss()(dist_an - dist_ap, torch.ones_like(dist_an))


def test_vit_objective_has_transreids_soft_margin_triplet():
    from ccreid.config import load_config
    from ccreid.methods import DataInfo, resolve_preset

    cfg = load_config(None, ["model.preset=vit", "loss.label_smoothing=0"])
    preset = resolve_preset(cfg)
    objective = preset.method(cfg, preset, DataInfo(4, 4, torch.eye(4, dtype=torch.bool), (5,))).build_objective()
    feat, logits = torch.randn(8, 6, requires_grad=True), torch.randn(8, 4)
    pids = torch.arange(8) // 2
    _, terms = objective({"feat": feat, "logits": logits, "attention": []}, pids, pids, torch.zeros(8, dtype=torch.bool))
    torch.testing.assert_close(terms["tri"], transreid_soft_margin_triplet(feat, pids).detach())
    torch.testing.assert_close(terms["ce_orig"], torch.nn.functional.cross_entropy(logits, pids))
    cfg.loss.vit.soft_margin = False
    assert preset.method(cfg, preset, DataInfo(4, 4, torch.eye(4, dtype=torch.bool), (5,))).build_objective() \
        .triplet_margin == 0.3


def test_an_input_smaller_than_a_patch_is_a_one_line_error():
    from ccreid.errors import CCReIDError

    cfg = Config()
    cfg.model.preset, cfg.model.pretrained, cfg.data.height, cfg.data.width = "vit", "none", 8, 8
    cfg.model.vit.name = "vit_tiny_patch16_224"
    with pytest.raises(CCReIDError, match=r"8x8: model.vit.name=vit_tiny_patch16_224 needs at least 16 pixels"):
        build_model_from_config(cfg, 5)


def test_without_pretrained_weights_the_position_embeddings_are_drawn_on_the_grid():
    """TransReID's ``trunc_normal_(self.pos_embed, std=.02)`` at its own grid, not a resized (smoothed) draw."""
    torch.manual_seed(0)
    pos = vit_model(12).vit.pos_embed.detach()[0, 1:]  # 5x2 patches at 64x32
    assert pos.shape[0] == 5 * 2 and abs(pos.std().item() - 0.02) < 0.002
