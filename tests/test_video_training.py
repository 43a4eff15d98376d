"""Video CC-ReID end to end on the synthetic video benchmark: clip training, tracklet features,
exact resume, refusals; the clip forms of CRE and of the flip."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ccreid.cli import main
from ccreid.commands import tester
from ccreid.inference.evaluator import tracklet_features
from ccreid.models.cre import ClothesErasure
from test_resume import assert_kill_and_resume_equals_full, train_args
from tiny_run import VIDEO


def _results(run, preset):
    return json.loads((run / "results.json").read_text())["presets"][preset]


@pytest.mark.timeout(300)
def test_ours_on_clips_resumes_bit_identically_after_a_kill(tmp_path):
    """CRE (every frame of a clip erased), BSGA per frame and BCTri on clips; SIGKILL then --resume."""
    full, victim = assert_kill_and_resume_equals_full(tmp_path, tmp_path / "synthetic", ["model.preset=ours", *VIDEO],
                                                        "epoch-0002")
    assert _results(full, "ours") == _results(victim, "ours")
    steps = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert any(s.get("num_erased", 0) > 0 for s in steps) and all(s["bsga"] > 0 for s in steps if "bsga" in s)
    pictures = {p.name for p in (full / "report_files").glob("*.png")}  # maps per frame, tracklets as strips
    assert {"actmap.png", "attention_ours.png"} <= pictures and any(n.startswith("ranks_") for n in pictures)
    assert "skipped" not in (full / "report.html").read_text()


def test_video_run_tests_as_it_trained_with_one_feature_per_tracklet(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*train_args(out, tmp_path / "synthetic"), "model.preset=cal", "loss.cal.start_epoch=0",
                 "train.epochs=1", *VIDEO]) == 0
    config = (out / "config.yaml").read_text()
    assert "video: c2d" in config  # the video dataset chose the default video backbone, recorded with the run
    tested = tester.test_checkpoint(out / "model.safetensors", tmp_path / "test")["cal"]
    trained = _results(out, "cal")
    for name, metrics in tested.items():
        assert metrics["mAP"] == pytest.approx(trained[name]["mAP"], abs=1e-4), name
    feats = load_file(str(out / "test_features.safetensors"))["features"]
    splits = json.loads((out / "results.json").read_text())
    assert feats.shape[0] < 6 * 40 and torch.allclose(feats.norm(dim=1), torch.ones(len(feats)), atol=1e-5)
    assert splits["presets"]["cal"]["general"]["queries"] > 0
    npz = tmp_path / "cc.npz"
    assert main(["extract", "--weights", str(out / "model.safetensors"), "--protocol", "cc", "--out", str(npz)]) == 0
    import numpy as np

    stored = np.load(npz)
    assert stored["qf"].shape[0] == len(stored["q_frames"]) and stored["q_frames"].min() >= 4  # frames - frames // 4
    capsys.readouterr()
    assert main(["eval", "--features", str(npz), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == pytest.approx(tested["cc"]["mAP"], abs=1e-3)


@pytest.mark.parametrize("extra, message", [
    (["model.preset=pcb", *VIDEO], "model.preset=pcb does not train on clips"),
    (["model.video=c2d"], "config key 'model.video': dataset 'synthetic' holds images"),
])
def test_what_cannot_run_on_clips_is_one_line(tmp_path, capsys, extra, message):
    assert main([*train_args(tmp_path / "run", tmp_path / "synthetic"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_tracklet_feature_is_the_normalised_mean_of_its_clips():
    clips = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    feats = tracklet_features(clips, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(feats, torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5], [0.6, 0.8]]))


def test_cre_copies_whole_clips_with_a_map_on_every_frame():
    clips = torch.rand(3, 4, 3, 8, 4)
    parsing = torch.full((3, 4, 8, 4), 5)  # label 5: upper clothes (LIP)
    has = torch.ones(3, 4, dtype=torch.bool)
    has[1, 2] = False  # clip 1 misses a map: no copy of it
    index, copies = ClothesErasure([5], fill="black").clip_copies(clips, parsing, has)
    assert index.tolist() == [0, 2] and copies.shape == (2, 4, 3, 8, 4)
    assert torch.all(copies != clips[index])  # every pixel of every frame was clothes: all erased


@pytest.mark.timeout(300)
def test_a_video_checkpoint_embeds_tracklets_and_exports_clips(tmp_path):
    """``ccreid.load(w).embed_tracklet(frames)`` is the tracklet's test feature; ``ccreid export onnx`` takes
    ``[B, T, 3, H, W]`` clips and gives torch's features within 1e-4."""
    import numpy as np
    import onnxruntime

    import ccreid
    from ccreid.config import load_config
    from ccreid.data.manager import DataManager
    from ccreid.deploy import export_onnx

    out = tmp_path / "run"
    assert main([*train_args(out, tmp_path / "synthetic"), "train.epochs=1", *VIDEO]) == 0
    from ccreid.runs.features_io import load_test_features

    saved = load_test_features(out / "test_features.safetensors", out / "model.safetensors", flip=False)
    cfg = load_config(str(out / "config.yaml"))
    split = DataManager(cfg, need_parsing=False).eval_splits("test")["general"]
    tracklet = split.query[0]
    embedder = ccreid.load(out / "model.safetensors", device="cpu", backend="torch")
    with pytest.raises(Exception, match="embed_tracklet"):
        embedder.embed([tracklet.frames[0]])
    feature = embedder.embed_tracklet(list(tracklet.frames))
    torch.testing.assert_close(feature, saved[tracklet.path], atol=1e-5, rtol=0)  # the run's tracklet feature

    single, shared = tmp_path / "one.npz", tmp_path / "two.npz"  # extraction under torchrun: shares, one file
    assert main(["extract", "--weights", str(out / "model.safetensors"), "--protocol", "general", "--out", str(single),
                 "--device", "cpu", "--backend", "torch"]) == 0
    _torchrun_extract(out / "model.safetensors", shared)
    one, two = np.load(single), np.load(shared)
    assert list(one["g_paths"]) == list(two["g_paths"]) and list(one["q_frames"]) == list(two["q_frames"])
    np.testing.assert_allclose(one["gf"], two["gf"], atol=1e-5)
    np.testing.assert_allclose(one["qf"], two["qf"], atol=1e-5)

    [onnx_file] = export_onnx(out / "model.safetensors", tmp_path / "video.onnx")
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    clips = torch.randn(3, 2, 3, 64, 32)
    got = session.run(["features"], {"images": clips.numpy()})[0]
    want = torch.nn.functional.normalize(embedder.model(clips), dim=1).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def _torchrun_extract(weights, out):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "ccreid", "extract", "--weights", str(weights), "--protocol", "general",
           "--out", str(out), "--device", "cpu", "--backend", "torch"]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("variant", ["i3d", "ap3d", "nl"])
def test_temporal_variants_extract_with_every_engine_as_the_model(variant):
    """Networks with 3-D convolutions run through the inference engines (no channels_last for them)."""
    from ccreid.inference.backends import embed, prepare
    from ccreid.models import VideoReIDModel, build_backbone, build_video_backbone

    torch.manual_seed(0)
    model = VideoReIDModel(build_video_backbone(variant, build_backbone("resnet50", 0.125, 1)), 5).eval()
    clips = torch.randn(2, 4, 3, 64, 32)
    with torch.no_grad():
        want = model(clips)
    for backend in ("torch", "onnxruntime"):
        got = embed(prepare(model, torch.device("cpu"), backend), clips, flip=False)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=backend)
