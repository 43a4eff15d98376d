"""Search indexes: FAISS exact / IVF / IVF-PQ and the torch fallback against brute force."""

import sys

import numpy as np
import pytest
import torch

from ccreid.errors import CCReIDError
from ccreid.evaluation import build_index
from ccreid.evaluation.search import FALLBACK_NOTE, TorchIndex, import_faiss

needs_faiss = pytest.mark.skipif(import_faiss() is None, reason="faiss-cpu is not installed")


def brute_force(gallery, queries, k):
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ g.T.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((3000, 32)).astype(np.float32), rng.standard_normal((40, 32)).astype(np.float32)


@needs_faiss
def test_exact_faiss_matches_brute_force(data):
    gallery, queries = data
    index = build_index(gallery)
    assert not index.is_fallback and index.ntotal == 3000 and index.dim == 32
    scores, idx = index.search(queries, 10)
    ref_scores, ref_idx = brute_force(gallery, queries, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_torch_index_matches_brute_force_across_chunks(data, monkeypatch):
    gallery, queries = data
    monkeypatch.setattr("ccreid.evaluation.search._GALLERY_CHUNK", 700)
    monkeypatch.setattr("ccreid.evaluation.search._QUERY_CHUNK", 16)
    scores, idx = TorchIndex(torch.from_numpy(gallery)).search(queries, 10)
    ref_scores, ref_idx = brute_force(gallery, queries, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_torch_index_breaks_ties_by_gallery_index(monkeypatch):
    monkeypatch.setattr("ccreid.evaluation.search._GALLERY_CHUNK", 3)
    gallery = np.tile(np.eye(2, dtype=np.float32), (5, 1))  # rows 0, 2, 4, ... are identical
    scores, idx = TorchIndex(gallery).search(np.array([[1.0, 0.0]], np.float32), 4)
    assert idx.tolist() == [[0, 2, 4, 6]] and scores.tolist() == [[1.0] * 4]


def test_fallback_without_faiss(data, monkeypatch):
    gallery, queries = data
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    index = build_index(gallery, kind="ivf")
    assert isinstance(index, TorchIndex) and index.is_fallback and index.note == FALLBACK_NOTE
    _, idx = index.search(queries, 5)
    np.testing.assert_array_equal(idx, brute_force(gallery, queries, 5)[1])


@needs_faiss
def test_ivf_exact_with_all_cells_approximate_with_fewer(data):
    gallery, queries = data
    _, ref_idx = brute_force(gallery, queries, 10)
    _, idx = build_index(gallery, kind="ivf", nlist=16, nprobe=16).search(queries, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    _, idx = build_index(gallery, kind="ivf", nlist=16, nprobe=4).search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref_idx)])
    assert recall > 0.3


@needs_faiss
def test_ivfpq_returns_neighbours(data):
    gallery, queries = data
    index = build_index(gallery, kind="ivfpq", nlist=8, m=8, nprobe=8)
    scores, idx = index.search(gallery[:20], 5)
    assert idx.shape == (20, 5) and (idx[:, 0] == np.arange(20)).mean() >= 0.8  # a vector finds itself


@needs_faiss
def test_k_larger_than_gallery_is_clamped(data):
    gallery, queries = data
    for index in (build_index(gallery[:3]), TorchIndex(gallery[:3])):
        scores, idx = index.search(queries[:2], 10)
        assert idx.shape == (2, 3) and sorted(idx[0].tolist()) == [0, 1, 2]


@needs_faiss
@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="hnsw"), "unknown index kind"),
    (dict(kind="ivfpq", m=5), "m must divide"),
    (dict(kind="ivf", nlist=10**6), "nlist must be at most"),
    (dict(kind="ivf", nprobe=0), "nprobe must be >= 1"),
])
def test_bad_options(data, kwargs, message):
    with pytest.raises(CCReIDError, match=message):
        build_index(data[0], **kwargs)


@needs_faiss
def test_bad_features_and_queries(data):
    gallery, _ = data
    bad = gallery.copy()
    bad[5, 3] = np.nan
    with pytest.raises(CCReIDError, match="NaN or inf"):
        build_index(bad)
    with pytest.raises(CCReIDError, match="non-empty 2-D"):
        build_index(np.zeros((0, 32), np.float32))
    for index in (build_index(gallery), TorchIndex(gallery)):
        with pytest.raises(CCReIDError, match="dimension 16 but the index has 32"):
            index.search(np.ones((2, 16), np.float32), 3)
