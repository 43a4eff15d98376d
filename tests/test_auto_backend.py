"""``--backend auto``, the default engine: ONNX Runtime on the CPU with the export kept in the user's
cache (written once, reused, rebuilt when damaged), torch on GPUs, in bf16 and as the fallback."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

import ccreid
from ccreid.cli import build_parser, main
from ccreid.deploy import Embedder, load_model
from ccreid.errors import CCReIDError
from ccreid.inference import backends as inference
from ccreid.inference.backends import resolve_backend
from ccreid.inference.onnx_cache import CACHE_ENV, cache_dir, export_key
from test_viz_common import HEIGHT, WIDTH, make_checkpoint, write_dataset

needs_onnxruntime = pytest.mark.skipif(inference.missing_onnxruntime() is not None,
                                       reason="needs onnxruntime and onnxscript: pip install 'ccreid[export]'")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("auto")
    return make_checkpoint(root / "w.safetensors", write_dataset(root / "data"), "baseline", seed=7)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def count_exports(monkeypatch) -> list:
    """The ONNX exports made from now on (inference.write_onnx still runs)."""
    calls: list = []
    real = inference.write_onnx
    monkeypatch.setattr(inference, "write_onnx", lambda *a, **k: (calls.append(a), real(*a, **k)))
    return calls


def torch_features(weights, images: torch.Tensor) -> torch.Tensor:
    return Embedder.from_weights(weights, device="cpu", backend="torch").forward_batch(images)


@needs_onnxruntime
def test_auto_gives_the_fp32_features_and_exports_once_into_the_user_cache(weights, cache, monkeypatch, caplog):
    exports = count_exports(monkeypatch)
    images = torch.randn(6, 3, HEIGHT, WIDTH)
    expected = torch_features(weights, images)
    embedder = ccreid.load(weights, device="cpu")  # the default: auto
    got = embedder.forward_batch(images)
    assert embedder.net.backend == "onnxruntime" and len(exports) == 1
    assert (got - expected).abs().max() <= 1e-5
    entries = list((cache / "onnx").iterdir())
    assert [p.suffix for p in entries] == [".onnx"]
    assert sorted(p.name for p in weights.parent.iterdir()) == ["data", "w.safetensors"]  # nothing beside them

    again = ccreid.load(weights, device="cpu")
    assert (again.forward_batch(images) - expected).abs().max() <= 1e-5
    assert len(exports) == 1  # reused, not exported again

    entries[0].write_bytes(b"not an onnx model")  # a damaged entry is exported again
    with caplog.at_level(logging.INFO, logger="ccreid"):
        rebuilt = ccreid.load(weights, device="cpu")
        assert (rebuilt.forward_batch(images) - expected).abs().max() <= 1e-5
    assert len(exports) == 2 and "is damaged" in caplog.text and entries[0].stat().st_size > 1000
    assert list((cache / "onnx").iterdir()) == entries  # no temporary file left


@needs_onnxruntime
def test_the_cache_key_follows_the_weights_the_settings_and_the_input_size(weights):
    model, _ = load_model(weights)
    key = export_key(model, (3, HEIGHT, WIDTH), 18)
    assert export_key(load_model(weights)[0], (3, HEIGHT, WIDTH), 18) == key  # the same network, another load
    assert export_key(model, (3, HEIGHT * 2, WIDTH), 18) != key
    assert export_key(model, (3, HEIGHT, WIDTH), 17) != key
    model.feature = "pre"  # the eval output changes, the weights do not
    assert export_key(model, (3, HEIGHT, WIDTH), 18) != key
    model.feature = "bn"
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert export_key(model, (3, HEIGHT, WIDTH), 18) != key


def test_the_cache_folder_is_the_users_and_never_the_weights(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == tmp_path / "xdg" / "ccreid"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ccreid"


def test_auto_runs_torch_on_gpus_and_in_bf16():
    for device in ("cuda", "cuda:1", "mps"):
        assert resolve_backend("auto", "fp32", torch.device(device)) == "torch"
    assert resolve_backend("auto", "bf16", torch.device("cpu")) == "torch"
    assert resolve_backend("torch", "fp32", torch.device("cpu")) == "torch"
    for command in (["extract", "--weights", "w", "--images", "d", "--out", "f.npz"],
                    ["test", "--weights", "w", "--out", "o"], ["viz", "ranks", "--weights", "w", "--out", "o"],
                    ["viz", "cmc", "--weights", "w", "--out", "o"]):
        assert build_parser().parse_args(command).backend == "auto"


def test_auto_falls_back_to_torch_with_a_one_line_note_without_onnxruntime(weights, cache, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed: `import` fails
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    embedder = ccreid.load(weights, device="cpu")
    assert embedder.net.backend == "torch"
    assert torch.equal(embedder.forward_batch(images), torch_features(weights, images))
    capsys.readouterr()
    out = cache.parent / "f.npz"
    assert main(["extract", "--weights", str(weights), "--protocol", "cc", "--out", str(out)]) == 0
    err = capsys.readouterr().err  # one note (wrapped to the terminal's width) and nothing else
    assert err.startswith("INFO") and err.count("INFO") == 1 and "onnxruntime is not installed" in " ".join(err.split())
    assert out.is_file() and not cache.exists()


@needs_onnxruntime
def test_auto_falls_back_to_torch_when_the_export_fails(weights, cache, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("an operator the exporter does not know\nsecond line")

    monkeypatch.setattr(inference, "write_onnx", broken)
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    with caplog.at_level(logging.INFO, logger="ccreid"):
        embedder = ccreid.load(weights, device="cpu")
        got = embedder.forward_batch(images)
    assert embedder.net.backend == "torch" and torch.equal(got, torch_features(weights, images))
    assert [r.getMessage() for r in caplog.records] == [
        "--backend auto: torch could not export this model to ONNX (an operator the exporter does not know); "
        "running the network with torch instead"]
    with pytest.raises(CCReIDError, match=r"^option --backend onnxruntime: torch could not export .*; use --backend "
                                          r"torch$"):
        ccreid.load(weights, device="cpu", backend="onnxruntime").forward_batch(images)
    assert not list(cache.rglob("*.onnx*"))  # no entry, no temporary file


@needs_onnxruntime
def test_auto_falls_back_to_torch_when_the_cache_cannot_be_written(weights, tmp_path, monkeypatch, caplog):
    (tmp_path / "file").write_text("")
    key = export_key(load_model(weights)[0], (3, HEIGHT, WIDTH), 18)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file" / "cache"))  # a file in the path: mkdir fails
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    with caplog.at_level(logging.INFO, logger="ccreid"):
        embedder = ccreid.load(weights, device="cpu")
        assert torch.equal(embedder.forward_batch(images), torch_features(weights, images))
    assert embedder.net.backend == "torch"
    entry = tmp_path / "file" / "cache" / "onnx" / f"{key}.onnx"
    assert caplog.messages == [f"--backend auto: cannot write {entry}: a part of the path is a file, not a folder; "
                               f"set {CACHE_ENV} to a writable folder (files written before are intact); "
                               "running the network with torch instead"]
