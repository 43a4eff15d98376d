"""The synthetic clothes-changing dataset: determinism, exact masks, splits, caching, errors."""

import csv

import numpy as np
import pytest
from PIL import Image

from ccreid.config import DataConfig, SyntheticConfig
from ccreid.data.registry import DATASETS
from ccreid.data.synthetic import generate, read_manifest
from ccreid.data.synthetic_render import GARMENTS, camera_background, render, sample_identity, sample_outfit
from ccreid.errors import CCReIDError

SMALL = dict(ids=10, outfits=2, images_per_outfit=2, height=64, width=32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "synthetic", seed=3, **SMALL)


def rows(root):
    with open(root / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_deterministic_per_seed(root, tmp_path):
    again = generate(tmp_path / "again", seed=3, **SMALL)
    other = generate(tmp_path / "other", seed=4, **SMALL)
    first = rows(root)
    assert first == rows(again)
    for row in first[:5]:
        assert (root / row["path"]).read_bytes() == (again / row["path"]).read_bytes()
        assert (root / row["parsing_path"]).read_bytes() == (again / row["parsing_path"]).read_bytes()
    differs = [(root / a["path"]).read_bytes() != (other / b["path"]).read_bytes()
               for a, b in zip(first[:5], rows(other)[:5])]
    assert any(differs)


@pytest.mark.parametrize("seed", range(6))
def test_parsing_map_matches_clean_pixels(seed):
    rng = np.random.default_rng(seed)
    ident, outfit = sample_identity(rng), sample_outfit(rng)
    camera = seed % 4
    rgb, labels = render(ident, outfit, camera, np.random.default_rng(seed), 128, 64, seed=0, nuisances=False)
    background = np.clip(camera_background(camera, 128, 64, 0), 0, 255).astype(np.uint8)
    assert (rgb[labels == 0] == background[labels == 0]).all()
    assert (labels > 0).sum() > 0.15 * labels.size  # a person is drawn
    garment = labels == outfit.upper_kind
    assert garment.any()
    colours = {tuple(c) for c in rgb[garment]}
    assert colours <= {tuple(outfit.upper), tuple(outfit.upper2)}
    skin = np.isin(labels, [14, 15, 16, 17])
    assert {tuple(c) for c in rgb[skin]} == {tuple(ident.skin)}
    assert set(np.unique(labels)) <= set(range(20))
    assert set(np.unique(labels)) & set(GARMENTS)


def test_written_maps_are_single_channel_label_pngs(root):
    row = rows(root)[0]
    parsing = Image.open(root / row["parsing_path"])
    image = Image.open(root / row["path"])
    assert parsing.mode == "L" and parsing.size == image.size == (32, 64)
    assert np.asarray(parsing).max() < 20


def test_splits_and_clothes_changing_structure(root):
    splits = read_manifest(root)
    ids = {name: {r.pid for r in recs} for name, recs in splits.items()}
    test_ids = ids["gallery"] | ids["query_sc"] | ids["query_cc"]
    val_ids = ids["val_gallery"] | ids["val_query_sc"] | ids["val_query_cc"]
    assert not ids["train"] & test_ids and not ids["train"] & val_ids and not val_ids & test_ids
    assert len(ids["train"]) == 5 and len(val_ids) == 2 and len(test_ids) == 3
    for prefix in ("", "val_"):
        gallery_clothes = {(r.pid, r.clothes_id) for r in splits[prefix + "gallery"]}
        for q in splits[prefix + "query_cc"]:
            assert (q.pid, q.clothes_id) not in gallery_clothes
            assert any(p == q.pid for p, _ in gallery_clothes)
        for q in splits[prefix + "query_sc"]:
            assert (q.pid, q.clothes_id) in gallery_clothes
        gallery_cams = {r.camid for r in splits[prefix + "gallery"]}
        assert gallery_cams == {0, 1}
    train_outfits = {(r.pid, r.clothes_id) for r in splits["train"]}
    assert len(train_outfits) == 5 * 2


def test_cache_reuses_and_refuses_other_options(root):
    manifest = root / "manifest.csv"
    before = manifest.stat().st_mtime_ns
    assert generate(root, seed=3, **SMALL) == root
    assert manifest.stat().st_mtime_ns == before
    with pytest.raises(CCReIDError, match="other options"):
        generate(root, seed=4, **SMALL)


def test_refuses_non_empty_foreign_folder_and_bad_options(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(CCReIDError, match="not a synthetic dataset"):
        generate(tmp_path, **SMALL)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(CCReIDError, match="--outfits"):
        generate(tmp_path / "x", ids=10, outfits=1)
    with pytest.raises(CCReIDError, match="--ids"):
        generate(tmp_path / "y", ids=3)
    with pytest.raises(CCReIDError, match="--extra-test-ids"):
        generate(tmp_path / "z", ids=10, extra_test_ids=-1)


def test_extra_test_ids_extend_only_the_test_split(root, tmp_path):
    bigger = generate(tmp_path / "bigger", seed=3, extra_test_ids=4, **SMALL)
    small_rows, big_rows = rows(root), rows(bigger)
    assert big_rows[:len(small_rows)] == small_rows  # the first ids render identically
    for row in small_rows[::7]:
        assert (root / row["path"]).read_bytes() == (bigger / row["path"]).read_bytes()
    added = big_rows[len(small_rows):]
    assert {int(r["pid"]) for r in added} == set(range(10, 14))
    assert {r["split"] for r in added} == {"gallery", "query_sc", "query_cc"}
    with pytest.raises(CCReIDError, match="other options"):
        generate(bigger, seed=3, **SMALL)


def test_missing_file_is_named(tmp_path):
    root = generate(tmp_path / "s", seed=1, **SMALL)
    victim = root / rows(root)[4]["path"]
    victim.unlink()
    with pytest.raises(CCReIDError, match=victim.name):
        read_manifest(root)
    with pytest.raises(CCReIDError, match="manifest.csv"):
        read_manifest(tmp_path)


def test_adapter_protocols_and_relabelling(tmp_path):
    cfg = DataConfig(root=str(tmp_path / "a"), synthetic=SyntheticConfig(**SMALL, seed=0))
    dataset = DATASETS.get("synthetic")(cfg)
    assert sorted({r.pid for r in dataset.train}) == list(range(5))
    assert sorted({r.clothes_id for r in dataset.train}) == list(range(10))
    assert set(dataset.protocols) == set(dataset.val) == {"general", "sc", "cc"}
    assert dataset.protocols["cc"].rule == "cc" and dataset.protocols["sc"].rule == "sc"
    general = dataset.protocols["general"]
    assert len(general.query) == len(dataset.protocols["sc"].query) + len(dataset.protocols["cc"].query)
    assert all(r.parsing_path for r in dataset.train)


def test_a_concurrent_render_of_the_same_dataset_is_accepted(tmp_path, monkeypatch):
    import ccreid.data.synthetic as synthetic

    render_all = synthetic._render_all

    def render_while_another_process_finishes_first(out, options, progress):
        monkeypatch.setattr(synthetic, "_render_all", render_all)
        generate(tmp_path / "s", seed=2, **SMALL)  # the other process wins the rename
        render_all(out, options, progress)

    monkeypatch.setattr(synthetic, "_render_all", render_while_another_process_finishes_first)
    root = generate(tmp_path / "s", seed=2, **SMALL)
    assert read_manifest(root)["train"] and [p.name for p in tmp_path.iterdir()] == ["s"]


def test_a_folder_holding_a_dataset_is_used_as_it_is(tmp_path):
    from ccreid.config import DataConfig, SyntheticConfig
    from ccreid.data.registry import DATASETS

    made = generate(tmp_path / "d", seed=5, **SMALL)
    cfg = DataConfig(name="synthetic", root=str(made), synthetic=SyntheticConfig(ids=120, seed=0))
    dataset = DATASETS.get("synthetic")(cfg)
    assert dataset.train and (cfg.synthetic.ids, cfg.synthetic.seed) == (SMALL["ids"], 5)  # recorded as used
    (made / "meta.json").write_text("{broken")
    with pytest.raises(CCReIDError, match="meta.json is damaged.*delete"):
        DATASETS.get("synthetic")(cfg)


def test_a_killed_render_leaves_nothing_behind_after_the_next_one(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / ".s.abandoned"
    stale.mkdir()
    (stale / "render.pid").write_text(f"{dead.pid}\n")
    (stale / "images").mkdir()
    generate(tmp_path / "s", seed=1, **SMALL)
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["s"]


def test_sigkill_during_synth_then_a_rerun_cleans_up(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # 60 people, no extra test people: ~1000 images, a second or two to render (the kill lands in ~20 ms)
    args = [sys.executable, "-m", "ccreid", "synth", "--out", str(tmp_path / "s"), "--ids", "60",
            "--extra-test-ids", "0", "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not any((p / "render.pid").exists() for p in tmp_path.glob(".s.*")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "s").exists() and list(tmp_path.glob(".s.*"))  # killed mid-render
    assert subprocess.run(args, capture_output=True).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["s"] and (tmp_path / "s" / "meta.json").is_file()
