"""Side-by-side benchmarks compare equal work: both sides' model settings come from the script, and a
ratio of sides whose FLOPs differ is refused (benchmarks/equal_work.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_train_step  # noqa: E402
from equal_work import count_flops, model_config, require_equal_flops  # noqa: E402

from ccreid.config import load_config  # noqa: E402

HEIGHT, WIDTH, BATCH = 64, 32, 8


def one_batch() -> dict:
    gen = torch.Generator().manual_seed(0)
    pids = torch.arange(BATCH) // 4
    return {"image": torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=gen), "pid": pids, "camid": pids * 0,
            "clothes": pids, "parsing": torch.full((BATCH, HEIGHT, WIDTH), -1), "index": torch.arange(BATCH),
            "has_parsing": torch.zeros(BATCH, dtype=torch.bool)}


@pytest.mark.parametrize("last_stride", [1, 2])
def test_train_step_benchmark_gives_both_loops_the_same_work(last_stride):
    torch.set_num_threads(1)
    # the synthetic config sets model keys of its own (last_stride: 2): the script must not inherit them
    cfg = model_config(load_config("synthetic", ["train.device=cpu", "data.ids_per_batch=2",
                                                 "data.images_per_id=4"]), "resnet18", last_stride)
    assert cfg.model.last_stride == last_stride and cfg.model.width_mult == 1.0
    device = torch.device("cpu")
    batch = one_batch()
    ccreid_step, _ = bench_train_step.make_ccreid_step(cfg, 2, 2, device)
    bare_step, _ = bench_train_step.make_bare_step("resnet18", last_stride, 2, device, cfg.train.lr,
                                                   cfg.train.weight_decay, "off", False)
    flops = {"ccreid": count_flops(lambda: ccreid_step(batch)), "bare": count_flops(lambda: bare_step(batch))}
    assert require_equal_flops(flops) == flops["bare"] > 0


def test_a_ratio_of_unequal_work_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        require_equal_flops({"ccreid": 253_800_000_000, "bare": 386_700_000_000})
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "refusing to report a ratio: the sides do different work per step (ccreid 253.80 GFLOP, bare 386.70 "
        "GFLOP); give them the same model settings")


def test_extract_benchmark_times_the_default_engine_and_judges_it_against_the_bare_session(tmp_path, monkeypatch):
    import bench_extract
    from ccreid.inference.backends import missing_onnxruntime
    from test_viz_common import make_checkpoint, write_dataset

    weights = make_checkpoint(tmp_path / "w.safetensors", write_dataset(tmp_path / "data"), "baseline", seed=3)
    embedder, seconds = bench_extract.default_embedder(weights, torch.device("cpu"))
    assert embedder.net.backend == ("torch" if missing_onnxruntime() else "onnxruntime") and seconds > 0
    ref, default = bench_extract.REFERENCE, bench_extract.DEFAULT
    rounds = {ref: [1.0, 1.2, 1.1], default: [1.1, 1.0, 1.0]}
    verdict = bench_extract.judge({default: 0.98}, {default: 1.02}, rounds, "onnxruntime")
    assert "0.980x" in verdict and "1.020x" in verdict and "1.100x (paired median wall)" in verdict
    assert "misses the >= 1.0 target" in verdict
    assert "meets" in bench_extract.judge({default: 1.0}, {default: 1.01}, rounds, "onnxruntime")


@pytest.mark.parametrize("layout", ["mevid", "ccvid"])
def test_video_listing_benchmark_builds_trees_its_adapters_read_whole(tmp_path, layout):
    """The timed trees are real layouts: every frame and tracklet built is listed, none dropped."""
    import bench_video_listing
    from ccreid.data.check import check_dataset

    tracklets = bench_video_listing.BUILDERS[layout](tmp_path, 1000, 3)
    report = check_dataset(layout, str(tmp_path))
    general = report["protocols"]["general"]
    parts = [report["train"], general["query"], general["gallery"]]
    assert sum(p["tracklets"] for p in parts) == tracklets == 333
    assert sum(p["images"] for p in parts) == 1000
    assert all(p.get("dropped", 0) == 0 for p in parts)
    assert report["train"]["ids"] > 50 and general["query"]["ids"] > 10
