"""Backbones, heads and presets (tiny ResNet-18 at 64x32); weight files: test_pretrained.py."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ccreid.config import Config, ModelConfig
from ccreid.errors import CCReIDError
from ccreid.losses import ReIDObjective
from ccreid.methods import DataInfo, build_model_from_config, resolve_preset
from ccreid.methods.paper import ABLATION_SWITCHES, PaperMethod
from ccreid.models import (
    BACKBONES,
    ClothesErasure,
    build_model,
)
from ccreid.models.bsga import bsga_loss
from ccreid.models.heads import BNNeckHead

TINY = dict(backbone="resnet18", width_mult=0.25)


def tiny_batch(size: int = 8):
    """Persons as rectangles: upper/lower garments (LIP 5, 9), face (13), arms (14)."""
    torch.manual_seed(0)
    parsing = torch.zeros(size, 64, 32, dtype=torch.long)
    parsing[:, 4:12, 12:20] = 13
    parsing[:, 12:32, 8:24] = 5
    parsing[:, 14:30, 4:8] = 14
    parsing[:, 32:60, 9:23] = 9
    parsing[-1] = -1  # one image without a map
    has_parsing = torch.ones(size, dtype=torch.bool)
    has_parsing[-1] = False
    pids = torch.arange(size) // 4
    clothes = torch.arange(size) // 2
    return torch.randn(size, 3, 64, 32), parsing, has_parsing, pids, clothes


@pytest.mark.parametrize("preset", list(ABLATION_SWITCHES))
def test_every_preset_trains_one_step_and_evaluates(preset: str) -> None:
    comps = ABLATION_SWITCHES[preset]
    model = build_model(num_classes=2, bsga_stages=("layer4",) if comps.bsga else (), **TINY)
    objective = ReIDObjective(2, use_bctri=comps.bctri, attention_loss=bsga_loss)
    images, parsing, has_parsing, pids, clothes = tiny_batch()
    is_erased = torch.zeros(len(pids), dtype=torch.bool)
    if comps.cre:
        out = ClothesErasure([5, 9])(images, parsing, has_parsing, pids, clothes, num_clothes=4)
        images, pids, clothes, parsing, is_erased = out.images, out.pids, out.clothes, out.parsing, out.is_erased
        assert out.num_erased == 7 and out.num_without_map == 1
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    outputs = model(images)
    assert outputs["logits"].shape == (len(images), 2)
    assert len(outputs["attention"]) == int(comps.bsga)
    has_mask = (parsing >= 0).flatten(1).any(1)
    loss, terms = objective(outputs, pids, clothes, is_erased, parsing > 0, has_mask)
    before = [p.detach().clone() for p in model.parameters()]
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert (terms["bsga"] > 0) == comps.bsga and (terms["ce_erased"] > 0) == comps.cre
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        feat = model(images[:3])
    assert feat.shape == (3, model.out_dim) and torch.isfinite(feat).all()


def test_eval_feature_choice() -> None:
    model = build_model(num_classes=3, **TINY).eval()
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        out = model(images, return_attention=True)
        assert torch.equal(model(images), out["bn_feat"])
        model.feature = "pre"
        assert torch.equal(model(images), out["feat"])
    assert out["attention"] == []
    with pytest.raises(CCReIDError, match="test.feature"):
        model.feature = "post"


def test_last_stride_one_doubles_the_final_map() -> None:
    images = torch.randn(1, 3, 64, 32)
    strided = BACKBONES.get("resnet18")(width_mult=0.25, last_stride=2).eval()(images)
    full = BACKBONES.get("resnet18")(width_mult=0.25, last_stride=1).eval()(images)
    assert strided.shape[-2:] == (2, 1) and full.shape[-2:] == (4, 2)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_full_width_backbones_have_torchvision_parameter_names(arch: str) -> None:
    ours = BACKBONES.get(arch)().state_dict()
    theirs = getattr(torchvision.models, arch)().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items() if not k.startswith("fc.")}


def test_width_multiplier_scales_channels() -> None:
    assert BACKBONES.get("resnet18")(width_mult=0.25).out_channels == 128
    assert BACKBONES.get("resnet50")(width_mult=0.125).stage_channels == {
        "layer1": 32, "layer2": 64, "layer3": 128, "layer4": 256}
    with pytest.raises(CCReIDError, match="model.width_mult"):
        BACKBONES.get("resnet18")(width_mult=0)
    with pytest.raises(CCReIDError, match="model.last_stride"):
        BACKBONES.get("resnet18")(last_stride=3)


@pytest.mark.parametrize("pooling,factor", [("avg", 1), ("max", 1), ("gem", 1), ("avgmax", 2)])
def test_pooling_and_bnneck(pooling: str, factor: int) -> None:
    head = BNNeckHead(16, num_classes=5, pooling=pooling)
    fmap = torch.rand(4, 16, 4, 2)
    out = head(fmap)
    assert out["feat"].shape == (4, 16 * factor) and out["logits"].shape == (4, 5)
    if pooling == "avgmax":
        assert torch.allclose(out["feat"], torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1))
    if pooling == "gem":
        assert torch.allclose(out["feat"], fmap.pow(3).mean((2, 3)).pow(1 / 3), atol=1e-5)
        assert head.pool.p.requires_grad
    assert not head.bnneck.bias.requires_grad and head.classifier.bias is None
    assert head.classifier.weight.std().item() == pytest.approx(0.001, rel=0.3)


def _method(model_cfg: ModelConfig, clothes_labels) -> PaperMethod:
    cfg = Config(model=model_cfg)
    data = DataInfo(7, 3, torch.ones(7, 3, dtype=torch.bool), tuple(clothes_labels))
    return PaperMethod(cfg, resolve_preset(cfg), data)


def test_config_builders_follow_preset_and_overrides() -> None:
    cfg = ModelConfig(preset="ours", pretrained="none", **TINY)
    cfg.bsga.stages = ["layer3", "layer4"]
    assert list(build_model_from_config(Config(model=cfg), 7).bsga) == ["layer3", "layer4"]
    cfg.bsga.enabled = False
    assert len(build_model_from_config(Config(model=cfg), 7).bsga) == 0
    [cre] = _method(cfg, [5, 9]).batch_transforms()
    assert isinstance(cre.erasure, ClothesErasure) and cre.erasure.clothes_labels == (5, 9)
    cfg.cre.clothes_labels, cfg.cre.p, cfg.cre.fill = [9], 0.5, "noise"
    [cre] = _method(cfg, [5, 9]).batch_transforms()
    assert (cre.erasure.clothes_labels, cre.erasure.p, cre.erasure.fill) == ((9,), 0.5, "noise")
    baseline = ModelConfig(preset="baseline", pretrained="none", **TINY)
    assert _method(baseline, [5]).batch_transforms() == []
    assert len(build_model_from_config(Config(model=baseline), 7).bsga) == 0
