"""ONNX export: parity with PyTorch in onnxruntime, dynamic batch, metadata, both exporter paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccreid.data.synthetic import generate
from ccreid.deploy import DEFAULT_OPSET, Embedder, export_onnx, load_model
from ccreid.errors import CCReIDError
from test_viz_common import HEIGHT, WIDTH, make_checkpoint, write_dataset

onnx = pytest.importorskip("onnx", reason="ONNX export needs the optional extra: pip install 'ccreid[export]'")
ort = pytest.importorskip("onnxruntime", reason="the parity test needs onnxruntime: pip install 'ccreid[export]'")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    manifest = write_dataset(root / "data")
    return root, make_checkpoint(root / "ours.safetensors", manifest, "ours", seed=3)


def run_onnx(path, batch: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["features"], {"images": batch.numpy()})[0]


def test_default_export_matches_pytorch_on_random_and_synthetic_images(checkpoint, tmp_path):
    root, weights = checkpoint
    [path] = export_onnx(weights, tmp_path / "model.onnx")
    assert path.is_file() and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.data"))
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == DEFAULT_OPSET
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["ccreid.height"] == str(HEIGHT) and meta["ccreid.normalized"] == "True"
    model, _ = load_model(weights)
    torch.manual_seed(0)
    for batch in (torch.randn(1, 3, HEIGHT, WIDTH), torch.randn(5, 3, HEIGHT, WIDTH) * 2):
        with torch.no_grad():
            expected = F.normalize(model(batch), dim=1).numpy()
        assert np.abs(run_onnx(path, batch) - expected).max() < 1e-4
    embedder = Embedder.from_weights(weights, device="cpu", flip=False)
    synthetic = generate(root / "synthetic", ids=6, outfits=2, images_per_outfit=1, height=HEIGHT, width=WIDTH)
    images = sorted(str(p) for p in (synthetic / "images").rglob("*") if p.suffix in (".png", ".jpg"))[:8]
    assert len(images) == 8
    got = run_onnx(path, embedder.preprocess(images))
    assert np.abs(got - embedder.embed(images).numpy()).max() < 1e-4


def test_legacy_opset_export_of_raw_features(checkpoint, tmp_path):
    _, weights = checkpoint
    [path] = export_onnx(weights, tmp_path / "raw.onnx", opset=17, normalize=False)
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    model, _ = load_model(weights)
    batch = torch.randn(3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        expected = model(batch).numpy()
    assert np.abs(run_onnx(path, batch) - expected).max() < 1e-4


def test_bad_export_inputs(checkpoint, tmp_path):
    _, weights = checkpoint
    with pytest.raises(CCReIDError, match="opset"):
        export_onnx(weights, tmp_path / "x.onnx", opset=9)
    with pytest.raises(CCReIDError, match="not found"):
        export_onnx(tmp_path / "missing.safetensors", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
