"""Activation/attention maps, ranked lists, plots and the embedding API against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ccreid
from ccreid.data.transforms import build_test_transform
from ccreid.deploy import Embedder, load_model
from ccreid.errors import CCReIDError
from ccreid.viz import activation_maps, attention_maps, plot_cmc, plot_training, viz_actmap, viz_attention, viz_ranks
from ccreid.viz.canvas import GREEN, RED, font, jet, load_tile, overlay
from ccreid.viz.plots import read_metrics
from ccreid.viz.ranks import YELLOW, pick_queries, protocol_features, top_k
from test_viz_common import HEIGHT, WIDTH, make_checkpoint, write_dataset, write_metrics

GAP, TITLE_H, HEADER_H = 4, 16, 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("viz")
    manifest = write_dataset(root / "data")
    base = make_checkpoint(root / "base.safetensors", manifest, "baseline", seed=0)
    ours = make_checkpoint(root / "ours.safetensors", manifest, "ours", seed=1)
    images = sorted(str(p) for p in (root / "data" / "images").glob("3_*.png"))[:3]
    return root, base, ours, images


def model_input(paths):
    transform = build_test_transform(HEIGHT, WIDTH)
    return torch.stack([transform(torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1), None)[0]
                        for p in paths])


def cell(png: np.ndarray, row: int, col: int, titles) -> np.ndarray:
    """The ``HEIGHT x WIDTH`` tile at (row, col) of a viz grid (columns as wide as their title)."""
    widths = [max(WIDTH, round(font(10).getlength(t)) + 4) for t in titles]
    x = GAP + sum(widths[:col]) + GAP * col + (widths[col] - WIDTH) // 2
    y = TITLE_H + HEADER_H + GAP + row * (HEIGHT + GAP)
    return png[y:y + HEIGHT, x:x + WIDTH]


def test_activation_maps_are_normalised_channel_sums(setup):
    _, base, _, images = setup
    model, _ = load_model(base)
    x = model_input(images)
    with torch.no_grad():
        reference = model.backbone(x).sum(1).numpy()  # baseline: no attention, map = backbone output
    lo, hi = reference.min(axis=(1, 2), keepdims=True), reference.max(axis=(1, 2), keepdims=True)
    heat = activation_maps(model, x).numpy()
    np.testing.assert_allclose(heat, (reference - lo) / (hi - lo), atol=1e-5)
    assert heat.min() == 0.0 and np.allclose(heat.max(axis=(1, 2)), 1.0)


def test_jet_and_overlay():
    np.testing.assert_array_equal(jet(np.array([[0.0, 0.5, 1.0]]))[0], [[0, 0, 128], [128, 255, 128], [128, 0, 0]])
    image = np.full((4, 2, 3), 100, np.uint8)
    heat = torch.tensor([[1.0]])  # upsampled to 4x2: all ones -> dark red
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, heat, alpha=1.0), np.broadcast_to([128, 0, 0], (4, 2, 3)))
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.5)[0, 0], [114, 50, 50])


def test_viz_actmap_grid_holds_the_overlays(setup, tmp_path):
    _, base, ours, images = setup
    titles = ["image", "b", "o"]
    [path] = viz_actmap([base, ours], tmp_path, images, labels=titles[1:])
    png = np.array(Image.open(path).convert("RGB"))
    assert png.shape[0] == TITLE_H + HEADER_H + GAP + len(images) * (HEIGHT + GAP)
    for col, weights in enumerate([base, ours], start=1):
        model, _ = load_model(weights)
        heat = activation_maps(model, model_input(images))
        for row, image in enumerate(images):
            tile = load_tile(image, (HEIGHT, WIDTH))
            np.testing.assert_array_equal(cell(png, row, 0, titles), tile)
            np.testing.assert_array_equal(cell(png, row, col, titles), overlay(tile, heat[row]))
    with pytest.raises(CCReIDError, match="labels"):
        viz_actmap([base], tmp_path, images, labels=["a", "b"])


def test_viz_attention_shows_mask_and_bsga_map(setup, tmp_path):
    _, base, ours, images = setup
    model, _ = load_model(ours)
    with torch.no_grad():
        expected = model(model_input(images), return_attention=True)["attention"][0][:, 0]
    torch.testing.assert_close(attention_maps(model, model_input(images))[0], expected)
    maps = [p.replace("/images/", "/parsing/") for p in images[:-1]] + [None]
    [path] = viz_attention(ours, tmp_path, images, maps)
    png = np.array(Image.open(path).convert("RGB")).astype(int)
    titles = ["image", "body shape", "BSGA layer4"]
    for row, image in enumerate(images):
        tile = load_tile(image, (HEIGHT, WIDTH))
        np.testing.assert_array_equal(cell(png, row, 0, titles), tile)
        mask = cell(png, row, 1, titles)
        if maps[row]:
            np.testing.assert_array_equal(mask[..., 0] > 127, np.array(Image.open(maps[row])) > 0)
        else:
            assert (mask == 200).all(axis=-1).mean() > 0.8  # grey "no map" tile
        np.testing.assert_array_equal(cell(png, row, 2, titles), overlay(tile, expected[row]))
    with pytest.raises(CCReIDError, match="no BSGA"):
        viz_attention(base, tmp_path, images)


def brute_force_top_k(pf, q, k):
    """Cosine distances, the protocol's junk removed, stable order; written without the library."""
    query = pf.split.query[q]
    qf = pf.qf[q] / pf.qf[q].norm()
    kept = []
    for g, rec in enumerate(pf.split.gallery):
        same = rec.pid == query.pid
        junk = same and rec.camid == query.camid
        if pf.split.rule == "cc":
            junk = junk or (same and rec.clothes_id == query.clothes_id)
        if pf.split.rule == "sc":
            junk = junk or (same and rec.clothes_id != query.clothes_id)
        if not junk:
            kept.append((1 - float(qf @ (pf.gf[g] / pf.gf[g].norm())), g))
    kept.sort(key=lambda t: t[0])  # stable: ties keep gallery order
    return [g for _, g in kept[:k]]


def test_ranked_lists_match_brute_force_and_borders(setup, tmp_path):
    _, base, _, _ = setup
    model, cfg = load_model(base)
    feats = protocol_features(model, cfg, "cpu")
    assert set(feats) == {"general", "sc", "cc"}
    for pf in feats.values():
        picked = pick_queries(pf.split, 3, seed=1)
        assert len(picked) == 3 and picked == sorted(picked)
        for q, ranked in zip(picked, top_k(pf, picked, 5)):
            assert [g for g, _ in ranked] == brute_force_top_k(pf, q, 5)
            assert any(pf.split.gallery[g].pid == pf.split.query[q].pid for g in brute_force_top_k(pf, q, 99))
    paths = viz_ranks(base, tmp_path, num_queries=2, k=4, seed=1)
    assert [p.name for p in paths] == ["ranks_general.png", "ranks_sc.png", "ranks_cc.png"]
    cell_w, cell_h = WIDTH + 6, HEIGHT + 6 + 14
    marks = set()
    for path, pf in zip(paths, feats.values()):
        png = np.array(Image.open(path).convert("RGB"))
        picked = pick_queries(pf.split, 2, seed=1)
        for row, (q, ranked) in enumerate(zip(picked, top_k(pf, picked, 4))):
            for rank, (g, _) in enumerate(ranked):
                x = GAP + (rank + 1) * (cell_w + GAP)
                y = TITLE_H + HEADER_H + GAP + row * (cell_h + GAP)
                same_id = pf.split.gallery[g].pid == pf.split.query[q].pid
                assert tuple(png[y + 1, x + 1]) == (GREEN if same_id else RED)
                same_clothes = pf.split.gallery[g].clothes_id == pf.split.query[q].clothes_id
                assert (tuple(png[y + 11, x + 11]) == YELLOW) == same_clothes  # filled dot: same clothes
                marks.add((same_id, same_clothes))
    assert {(True, True), (False, False)} <= marks
    with pytest.raises(CCReIDError, match="not defined"):
        viz_ranks(base, tmp_path, protocol="nope")


def test_plots_and_metrics_log(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the optional extra: pip install 'ccreid[viz]'")
    log = write_metrics(tmp_path / "metrics.jsonl", epochs=2, iters=3)
    steps, vals = read_metrics(log)
    assert len(steps) == 6 and [v["epoch"] for v in vals] == [1, 2]
    for path in (plot_training({"a": log}, tmp_path / "t.png"),
                 plot_training({"a": log, "b": log}, tmp_path / "t2.png"),
                 plot_cmc({"a": {"cc": [50.0, 75.0, 100.0], "general": [80.0, 100.0]}}, tmp_path / "c.png")):
        image = np.array(Image.open(path).convert("L"))
        assert image.shape[0] > 200 and image.std() > 5
    (tmp_path / "bad.jsonl").write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(CCReIDError, match="line 2"):
        read_metrics(tmp_path / "bad.jsonl")


def test_embedder_inputs_agree_and_match_the_model(setup):
    _, base, _, images = setup
    embedder = ccreid.load(base, device="cpu")
    assert isinstance(embedder, Embedder) and embedder.flip
    from_paths = embedder.embed(images)
    pil = [Image.open(p) for p in images]
    tensors = [torch.from_numpy(np.array(p)).permute(2, 0, 1).contiguous() for p in pil]
    torch.testing.assert_close(embedder.embed(pil), from_paths)
    torch.testing.assert_close(embedder.embed(torch.stack(tensors)), from_paths)
    torch.testing.assert_close(embedder.embed(tensors[0]), from_paths[:1])
    model, _ = load_model(base)
    x = model_input(images)
    with torch.no_grad():
        reference = F.normalize((model(x) + model(x.flip(3))) / 2, dim=1)
    torch.testing.assert_close(from_paths, reference, atol=1e-5, rtol=1e-5)
    assert torch.allclose(from_paths.norm(dim=1), torch.ones(len(images)))
    embedder.batch_size = 2  # chunking must not change anything
    torch.testing.assert_close(embedder.embed(images), from_paths, atol=1e-6, rtol=1e-6)
    with pytest.raises(CCReIDError, match="uint8"):
        embedder.embed(torch.rand(3, HEIGHT, WIDTH))
    with pytest.raises(CCReIDError, match="not found"):
        embedder.embed(["/nonexistent/image.png"])
