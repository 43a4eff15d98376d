"""Extraction engines: BatchNorm folding, the prepared torch network, the onnxruntime backend, their options."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccreid.cli import main
from ccreid.commands import extraction
from ccreid.deploy import Embedder
from ccreid.errors import CCReIDError
from ccreid.inference.backends import check_backend, embed, prepare
from ccreid.methods import PRESETS, build_model_from_config
from ccreid.models.fuse import conv_bn_pairs, fold_batchnorm
from test_viz_common import HEIGHT, WIDTH, make_checkpoint, tiny_config, write_dataset


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters away from the identity, so folding changes weights."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            with torch.no_grad():
                module.running_mean.copy_(torch.rand(module.num_features, generator=gen) * 0.4 - 0.2)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=gen) - 0.5)


def brute_force_features(model: nn.Module, images: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """The plain eval-mode model, NCHW fp32, (+ its mirrored forward) averaged."""
    with torch.no_grad():
        feats = model(images)
        return (feats + model(torch.flip(images, dims=[3]))) / 2 if flip else feats


class Toy(nn.Module):
    """One foldable pair, a conv also read by a skip path, a conv called twice, a BN without running stats."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b, self.bn_b = nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4)
        self.c, self.bn_c = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)
        self.d, self.bn_d = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        x = F.relu(self.bn_a(self.a(x)))
        y = self.b(x)
        x = self.bn_b(y) + y
        x = self.bn_c(self.c(x))
        return self.d(self.bn_d(self.d(x))) * scale


class Untraceable(nn.Module):
    """Data-dependent control flow at the top: fx fails here, the children are looked into."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) if x.sum() > 0 else -self.block(x)


def test_fold_batchnorm_folds_only_exclusive_conv_bn_pairs_and_keeps_the_eval_forward():
    torch.manual_seed(0)
    for model, pairs in ((Toy(), [("a", "bn_a")]), (Untraceable(), [("block.0", "block.1")])):
        randomize_batchnorm(model.eval())
        assert conv_bn_pairs(model) == pairs
        images = torch.randn(3, 3, 8, 6)
        expected = brute_force_features(model, images, flip=False)
        folded = fold_batchnorm(copy.deepcopy(model))
        for conv, bn in pairs:
            assert isinstance(folded.get_submodule(bn), nn.Identity)
            assert not torch.equal(folded.get_submodule(conv).weight, model.get_submodule(conv).weight)
        folded_bns = {bn for _, bn in pairs}
        kept = [n for n, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
        assert kept == [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n not in folded_bns]
        with torch.no_grad():
            torch.testing.assert_close(folded(images), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(Toy().train())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_prepared_network_equals_the_plain_eval_model_for_every_registered_preset(tmp_path, preset):
    torch.manual_seed(1)
    cfg = tiny_config(tmp_path / "m.csv", preset, "model.vit.name=vit_tiny_patch16_224")
    model = build_model_from_config(cfg, 3)
    randomize_batchnorm(model, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(5, 3, HEIGHT, WIDTH)
    model.train()  # e.g. evaluation during training: the model keeps its mode and weights
    net = prepare(model, "cpu")
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    ran = []  # every conv + BN pair of the inference path was folded (PCB's training-only head keeps its BN)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda *_: ran.append(1))
    expected = brute_force_features(model.eval(), images)
    torch.testing.assert_close(embed(net, images), expected, atol=1e-4, rtol=1e-4)
    assert not ran
    torch.testing.assert_close(embed(net, images, flip=False), brute_force_features(model, images, False),
                               atol=1e-4, rtol=1e-4)


def test_bf16_precision_is_close_to_fp32(tmp_path):
    torch.manual_seed(3)
    model = build_model_from_config(tiny_config(tmp_path / "m.csv", "ours"), 3).eval()
    randomize_batchnorm(model)
    images = torch.randn(6, 3, HEIGHT, WIDTH)
    got = embed(prepare(model, "cpu", precision="bf16"), images)
    assert got.dtype == torch.float32
    cosine = F.cosine_similarity(got, brute_force_features(model, images), dim=1)
    assert cosine.min() > 0.99


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("inference")
    manifest = write_dataset(root / "data")
    return root, make_checkpoint(root / "ours.safetensors", manifest, "ours", seed=4)


def test_onnxruntime_backend_equals_the_plain_model(checkpoint):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    root, weights = checkpoint
    torch_embedder = Embedder.from_weights(weights, device="cpu")
    ort_embedder = Embedder.from_weights(weights, device="cpu", backend="onnxruntime")
    images = torch.randn(5, 3, HEIGHT, WIDTH)
    expected = F.normalize(brute_force_features(torch_embedder.model, images), dim=1)
    torch.testing.assert_close(ort_embedder.forward_batch(images), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ort_embedder.forward_batch(images[:1]), expected[:1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch_embedder.forward_batch(images), expected, atol=1e-4, rtol=1e-4)


def test_extract_and_test_give_the_same_results_with_either_backend(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    root, weights = checkpoint
    feats, results = {}, {}
    for backend, ran in (("torch", "torch"), ("onnxruntime", "onnxruntime"), (None, "onnxruntime")):
        option = ["--backend", backend] if backend else []  # no option: the default, auto
        name = backend or "default"
        out = tmp_path / f"{name}.npz"
        assert main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(out), "--quiet",
                     *option]) == 0
        feats[name] = np.load(out)
        assert main(["test", "--weights", str(weights), "--out", str(tmp_path / name), "--quiet", "--no-report",
                     *option]) == 0
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
        assert results[name]["extraction"] == {"backend": ran, "precision": "fp32"}
    for name in ("onnxruntime", "default"):
        for key in ("qf", "gf"):
            assert np.abs(feats["torch"][key] - feats[name][key]).max() < 1e-5
        assert results["torch"]["presets"] == results[name]["presets"]


def test_backend_options_are_checked_before_any_work(checkpoint, tmp_path, monkeypatch, capsys):
    _, weights = checkpoint
    check_backend("torch", "bf16", torch.device("cpu"))
    with pytest.raises(CCReIDError, match="--backend: 'tensorrt' is not one of auto, torch, onnxruntime"):
        check_backend("tensorrt")
    with pytest.raises(CCReIDError, match="--precision: 'fp16'"):
        check_backend("torch", "fp16")
    with pytest.raises(CCReIDError, match="onnxruntime runs fp32"):
        check_backend("onnxruntime", "bf16")
    with pytest.raises(CCReIDError, match="runs on the CPU, not cuda"):
        check_backend("onnxruntime", "fp32", torch.device("cuda"))
    with pytest.raises(SystemExit):
        main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(tmp_path / "x.npz"),
              "--backend", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed: `import` fails
    monkeypatch.setattr(extraction, "load_model", lambda *a, **k: pytest.fail("loaded the model before the check"))
    with pytest.raises(CCReIDError, match="needs the optional package onnxruntime: pip install 'ccreid.export.'"):
        check_backend("onnxruntime")
    with pytest.raises(CCReIDError, match="optional package onnxruntime"):
        Embedder.from_weights(weights, device="cpu", backend="onnxruntime")
    capsys.readouterr()
    assert main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(tmp_path / "x.npz"),
                 "--quiet", "--backend", "onnxruntime"]) == 2
    assert main(["test", "--weights", str(weights), "--out", str(tmp_path / "t"), "--quiet", "--no-report",
                 "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert err.count("needs the optional package onnxruntime") == 2 and len(err.strip().splitlines()) == 2
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "t").exists()
