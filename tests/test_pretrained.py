"""Pretrained weights from local files (torchvision / timm layouts), the load report, errors."""

from __future__ import annotations

import pickle
from urllib.error import URLError

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ccreid.config import load_config
from ccreid.errors import CCReIDError
from ccreid.models import BACKBONES, build_model, summarize
from ccreid.training import pretrained as pretrained_module
from ccreid.training.pretrained import load_pretrained

TINY = dict(backbone="resnet18", width_mult=0.25)


class Evil:
    """Unpickling this would create ``path``: the test asserts it never does."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def resnet(pretrained: str, arch: str = "resnet18", **kwargs):
    """A ccreid backbone with ``pretrained`` loaded as ``model.pretrained`` does."""
    backbone = BACKBONES.get(arch)(**kwargs)
    load_pretrained(backbone, pretrained)
    return backbone


def one_line_error(match: str, build, *args, **kwargs) -> str:
    with pytest.raises(CCReIDError, match=match) as err:
        build(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_prefixes_containers_and_report(tmp_path) -> None:
    source = BACKBONES.get("resnet18")(width_mult=0.25)
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.startswith("layer4.1.")}
    state["module.fc.weight"] = torch.zeros(10, 128)  # classifier: ignored, not a problem
    state["module.extra.weight"] = torch.zeros(3)  # unknown key
    state["module.conv1.weight"] = torch.zeros(16, 3, 3, 3)  # wrong shape: skipped
    path = tmp_path / "weights.pth"
    torch.save({"model": {"state_dict": state}, "epoch": 3}, path)
    backbone = resnet(str(path), width_mult=0.25)
    report = backbone.pretrained_report
    assert report["source"] == str(path) and report["ignored"] == ["fc.weight"]
    assert report["unexpected"] == ["extra.weight"] and report["mismatched"] == ["conv1.weight"]
    assert "conv1.weight" in report["missing"] and "layer4.1.conv1.weight" in report["missing"]
    assert "layer2.0.conv1.weight" in report["loaded"] and "conv1.weight" not in report["loaded"]
    assert torch.equal(backbone.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    assert not torch.equal(backbone.conv1.weight, source.conv1.weight)
    line = summarize(report)
    assert line.startswith(f"{len(report['loaded'])} tensors loaded from {path}") and "1 ignored (fc.weight)" in line

    st_path = tmp_path / "weights.safetensors"
    save_file({f"backbone.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(st_path))
    model = build_model(num_classes=2, **TINY)
    assert model.backbone.pretrained_report is None
    report = load_pretrained(model.backbone, str(st_path))
    assert model.backbone.pretrained_report is report
    assert report["missing"] == report["unexpected"] == report["mismatched"] == report["ignored"] == []
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    assert resnet("none", width_mult=0.25).pretrained_report is None


def test_torchvision_state_dict_loads_except_the_classifier(tmp_path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    report = resnet(str(path)).pretrained_report
    assert report["ignored"] == ["fc.weight", "fc.bias"]
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []


def test_timm_resnet_state_dict_gives_the_same_features(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "timm_resnet18.safetensors"
    save_file(net.state_dict(), str(path))
    ours = resnet(str(path), last_stride=2).eval()
    report = ours.pretrained_report
    assert sorted(report["ignored"]) == ["fc.bias", "fc.weight"] and report["missing"] == report["unexpected"] == []
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.allclose(ours(images), net.forward_features(images), atol=1e-5)


def test_weight_file_errors(tmp_path) -> None:
    wrong = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, wrong)
    message = one_line_error("no backbone weights matched", resnet, str(wrong))
    assert str(wrong) in message and "expected a torchvision/timm resnet18 state dict" in message
    one_line_error(f"{tmp_path / 'missing.pth'}: not found", resnet, str(tmp_path / "missing.pth"))
    for name, content in [("broken.pt", b"not a checkpoint"), ("broken.safetensors", b"\x08" * 40)]:
        (tmp_path / name).write_bytes(content)
        one_line_error(f"weight file {tmp_path / name}: neither a safetensors file nor a PyTorch checkpoint",
                       resnet, str(tmp_path / name))
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"conv1.weight": Evil(str(marker))}, protocol=2))
    one_line_error("weight file .*evil.pth: a PyTorch checkpoint .torch.save. that cannot be read", resnet,
                   str(evil))
    assert not marker.exists()


def test_imagenet_uses_the_cache_and_offline_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(pretrained_module, "load_state_dict_from_url", offline)
    message = one_line_error("cannot download", resnet, "imagenet")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(cached) in message and "model.pretrained=/path/to/file" in message
    one_line_error("width_mult=1", resnet, "imagenet", width_mult=0.5)
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    assert resnet("imagenet").pretrained_report["source"] == str(cached)


def test_config_rejects_unknown_backbones() -> None:
    message = one_line_error("model.backbone", load_config, None, ["model.backbone=resnet99"])
    assert "resnet50" in message and "timm:<timm model name>" in message
    assert load_config(None, ["model.backbone=resnet18"]).model.backbone == "resnet18"


def test_training_logs_the_pretrained_report(tmp_path, capsys):
    """`ccreid train` with a local weight file logs the key-mapping summary and keeps the report."""
    import json

    from ccreid.cli import main

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    out = tmp_path / "run"
    args = ["train", "-c", "synthetic", "--out", str(out), "--no-report", f"data.root={tmp_path / 'data'}",
            "data.synthetic.ids=20", "data.synthetic.extra_test_ids=0", "data.synthetic.outfits=2",
            "data.synthetic.images_per_outfit=2",
            "data.synthetic.height=64", "data.synthetic.width=32", "data.height=64", "data.width=32",
            "data.ids_per_batch=4", "data.images_per_id=2", "model.backbone=resnet18", "model.width_mult=1",
            f"model.pretrained={weights}", "train.epochs=1", "train.warmup_epochs=0", "train.milestones=[]",
            "train.device=cpu", "test.flip=false"]
    assert main(args) == 0
    report = json.loads((out / "pretrained_report.json").read_text())
    assert report["source"] == str(weights) and report["missing"] == [] and "fc.weight" in report["ignored"]
    assert "model.pretrained: 120 tensors loaded from" in capsys.readouterr().err


def test_models_read_no_files_and_download_nothing() -> None:
    """The layer rule of docs/ARCHITECTURE.md: weight files and downloads live in training/pretrained.py."""
    from pathlib import Path

    import ccreid.models

    forbidden = ("torch.load", "load_state_dict_from_url", "load_file", "open(", "pretrained=True", "hub.")
    for path in Path(ccreid.models.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert not [word for word in forbidden if word in text], path


def test_imagenet_of_a_backbone_without_a_weights_url() -> None:
    from ccreid.models import Backbone

    class MyNet(Backbone):
        arch = "mynet"

    message = one_line_error("knows no imagenet weights of mynet", load_pretrained, MyNet(), "imagenet")
    assert "model.pretrained=/path/to/file" in message
