"""Feature files and saved indexes: round trips, validation errors naming the key, atomic writes."""

import sys

import numpy as np
import pytest

from ccreid.errors import CCReIDError
from ccreid.evaluation import build_index
from ccreid.evaluation.search import TorchIndex, import_faiss
from ccreid.runs.features_io import load_features, load_index, save_features, save_index


def arrays(nq=3, ng=5, dim=4):
    rng = np.random.default_rng(0)
    return dict(qf=rng.standard_normal((nq, dim)).astype(np.float32),
                gf=rng.standard_normal((ng, dim)).astype(np.float32),
                q_pids=np.arange(nq), g_pids=np.arange(ng), q_camids=np.zeros(nq, np.int64),
                g_camids=np.ones(ng, np.int64), q_clothes=np.arange(nq), g_clothes=np.arange(ng))


def test_round_trip_keeps_extra_arrays_and_leaves_no_temp_file(tmp_path):
    data = arrays() | {"g_paths": np.array(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"])}
    path = save_features(tmp_path / "feats.npz", **data)
    assert [p.name for p in tmp_path.iterdir()] == ["feats.npz"]
    loaded = load_features(path, "cc")[1]
    assert set(loaded) == set(data)
    for key, value in data.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_clothes_are_optional_for_the_general_rule(tmp_path):
    data = arrays()
    del data["q_clothes"], data["g_clothes"]
    path = save_features(tmp_path / "f.npz", **data)
    assert "q_clothes" not in load_features(path)[1]
    with pytest.raises(CCReIDError, match="missing key 'q_clothes'"):
        load_features(path, "cc")


def _nan(data):
    data["gf"][2, 1] = np.nan


def _inf(data):
    data["qf"][0, 0] = np.inf


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("gf"), "missing key 'gf'"),
    (lambda d: d.pop("g_camids"), "missing key 'g_camids'"),
    (lambda d: d.pop("g_clothes"), "'q_clothes' is present but 'g_clothes' is missing"),
    (lambda d: d.update(q_pids=np.arange(4)), "key 'q_pids' has 4 entries but qf has 3 rows"),
    (lambda d: d.update(g_clothes=np.arange(2)), "key 'g_clothes' has 2 entries but gf has 5 rows"),
    (_nan, "key 'gf' has NaN or inf values \\(first in row 2\\)"),
    (_inf, "key 'qf' has NaN or inf"),
    (lambda d: d.update(qf=np.zeros((0, 4), np.float32), q_pids=np.arange(0)), "key 'qf' is empty"),
    (lambda d: d.update(gf=np.ones((5, 6), np.float32)), "key 'gf' has dimension 6 but 'qf' has 4"),
    (lambda d: d.update(gf=np.ones(5, np.float32)), "key 'gf' must be a 2-D float array"),
    (lambda d: d.update(q_camids=np.array([0.5, 1.0, 2.0])), "key 'q_camids' must be a 1-D integer array"),
])
def test_bad_files_name_the_key(tmp_path, change, message):
    data = arrays()
    change(data)
    path = save_features(tmp_path / "bad.npz", **data)
    with pytest.raises(CCReIDError, match=message):
        load_features(path)


def test_missing_or_unreadable_files(tmp_path):
    with pytest.raises(CCReIDError, match="not found"):
        load_features(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(CCReIDError, match="text.npz is not an .npz archive"):
        load_features(tmp_path / "text.npz")
    np.savez(tmp_path / "objects.npz", **arrays(), q_extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CCReIDError, match="not a readable .npz"):
        load_features(tmp_path / "objects.npz")


def _indexes(gallery):
    yield TorchIndex(gallery)
    if import_faiss() is not None:
        yield build_index(gallery)
        yield build_index(gallery, kind="ivf", nlist=4, nprobe=4)


def test_index_round_trip_with_metadata(tmp_path):
    gallery = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    queries = gallery[:7] + 0.01
    meta = {"paths": [f"img{i}.jpg" for i in range(300)], "pids": np.arange(300) % 10, "source": "feats.npz"}
    for n, index in enumerate(_indexes(gallery)):
        path = save_index(index, tmp_path / f"gallery{n}.index", meta)
        loaded, metadata = load_index(path)
        assert type(loaded) is type(index) and loaded.ntotal == 300 and loaded.kind == index.kind
        assert metadata["paths"][4] == "img4.jpg" and metadata["pids"][13] == 3 and metadata["source"] == "feats.npz"
        np.testing.assert_array_equal(loaded.search(queries, 3)[1], index.search(queries, 3)[1])


def test_index_errors(tmp_path, monkeypatch):
    gallery = np.ones((4, 3), np.float32)
    with pytest.raises(CCReIDError, match="'paths' has 2 entries but the index holds 4"):
        save_index(TorchIndex(gallery), tmp_path / "x.index", {"paths": ["a", "b"]})
    with pytest.raises(CCReIDError, match="not found"):
        load_index(tmp_path / "missing.index")
    path = save_index(TorchIndex(gallery), tmp_path / "t.index")
    path.with_name("t.index.json").write_text("{broken")
    with pytest.raises(CCReIDError, match="not valid"):
        load_index(path)
    if import_faiss() is not None:
        path = save_index(build_index(gallery), tmp_path / "f.index")
        monkeypatch.setitem(sys.modules, "faiss", None)
        with pytest.raises(CCReIDError, match="install faiss-cpu"):
            load_index(path)
