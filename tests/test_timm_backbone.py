"""timm backbones (``model.backbone=timm:<name>``): build, train one step, BSGA stages, errors."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file

from ccreid.config import Config, ModelConfig
from ccreid.errors import CCReIDError
from ccreid.losses import ReIDObjective
from ccreid.methods import build_model_from_config
from ccreid.models import build_backbone
from ccreid.models.bsga import bsga_loss
from ccreid.training.pretrained import load_pretrained

timm = pytest.importorskip("timm")


def one_step(model) -> None:
    """One optimisation step on a 64x32 batch; parameters must move, eval features stay finite."""
    torch.manual_seed(0)
    images, pids = torch.randn(4, 3, 64, 32), torch.tensor([0, 0, 1, 1])
    body = torch.zeros(4, 64, 32, dtype=torch.bool)
    body[:, 8:56, 8:24] = True
    objective = ReIDObjective(2, use_bctri=False, attention_loss=bsga_loss)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    outputs = model(images)
    assert outputs["logits"].shape == (4, 2) and outputs["feat"].shape == (4, model.backbone.out_channels)
    loss, _ = objective(outputs, pids, pids, torch.zeros(4, dtype=torch.bool), body, torch.ones(4, dtype=torch.bool))
    before = [p.detach().clone() for p in model.parameters()]
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(images[:2])).all()


def test_timm_resnet_trains_with_bsga_on_intermediate_stages() -> None:
    cfg = ModelConfig(preset="ours", backbone="timm:resnet18", pretrained="none")
    cfg.bsga.stages = ["layer3", "layer4"]
    model = build_model_from_config(Config(model=cfg), num_classes=2)
    assert model.backbone.stage_channels == {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    model.train()
    attention = model(torch.randn(2, 3, 64, 32))["attention"]
    assert [a.shape for a in attention] == [(2, 1, 4, 2), (2, 1, 4, 2)]  # output_stride 16: layer4 keeps 1/16
    one_step(model)


def test_other_timm_models_are_one_stage() -> None:
    cfg = ModelConfig(preset="ours", backbone="timm:convnext_atto", pretrained="none")
    model = build_model_from_config(Config(model=cfg), num_classes=2)
    assert model.backbone.stage_channels == {"layer4": 320}
    one_step(model)
    cfg.bsga.stages = ["layer3"]
    with pytest.raises(CCReIDError, match="model.bsga.stages.*choose from layer4"):
        build_model_from_config(Config(model=cfg), num_classes=2)


def test_last_stride_and_local_weights(tmp_path) -> None:
    images = torch.randn(1, 3, 64, 32)
    assert build_backbone("timm:resnet18", last_stride=2).eval()(images).shape == (1, 512, 2, 1)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({f"module.{k}": v for k, v in source.state_dict().items()}, str(path))
    backbone = build_backbone("timm:resnet18")
    report = load_pretrained(backbone, str(path))
    assert sorted(report["ignored"]) == ["fc.bias", "fc.weight"] and report["missing"] == report["unexpected"] == []
    assert torch.equal(backbone.net.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_timm_errors_are_one_line(monkeypatch, tmp_path) -> None:
    def error(match: str, name: str, pretrained: str = "none", **kwargs) -> str:
        with pytest.raises(CCReIDError, match=match) as err:
            load_pretrained(build_backbone(name, **kwargs), pretrained)
        assert "\n" not in str(err.value)
        return str(err.value)

    error("model.backbone.*timm has no model 'nonexistent_net'", "timm:nonexistent_net")
    error("model.width_mult", "timm:resnet18", width_mult=0.5)
    error("model.last_stride=2", "timm:mobilenetv3_small_050", last_stride=1)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    error("no backbone weights matched in .*other.pth", "timm:resnet18", pretrained=str(tmp_path / "other.pth"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    message = error("model.pretrained.*cannot fetch timm's imagenet weights of resnet18", "timm:resnet18",
                    pretrained="imagenet")
    assert "models--timm--resnet18.a1_in1k" in message and "model.pretrained=/path/to/" in message

    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    error("model.backbone.*pip install timm", "timm:resnet18")


def test_token_models_as_backbones_point_to_the_vit_preset():
    cfg = ModelConfig(backbone="timm:vit_tiny_patch16_224", pretrained="none")
    with pytest.raises(CCReIDError, match="train it with model.preset=vit model.vit.name=vit_tiny_patch16_224"):
        build_model_from_config(Config(model=cfg), num_classes=2)
