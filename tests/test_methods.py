"""Methods as plug-ins: the preset registry, CAL, and a toy method from a file outside ccreid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import ccreid

from ccreid.cli import main
from ccreid.training.step import TrainBatch
from ccreid.errors import CCReIDError
from ccreid.methods import PRESETS, Method
from ccreid.methods.cal import CosineClassifier, clothes_adversarial_loss
from ccreid.runs.checkpoint import load_weights
from tiny_run import PRESET_NEEDS, TINY


def brute_force_cal(logits, clothes, positive, epsilon):
    total = 0.0
    batch, classes = logits.shape
    for i in range(batch):
        negatives = sum(torch.exp(logits[i, k]) for k in range(classes) if not positive[i, k])
        npos = int(positive[i].sum())
        for j in range(classes):
            target = (1 - epsilon) * (j == clothes[i]) + (epsilon / npos if positive[i, j] else 0.0)
            log_prob = logits[i, j] - torch.log(negatives + torch.exp(logits[i, j]))
            total = total - target * log_prob
    return total / batch


@pytest.mark.parametrize("seed", range(4))
def test_cal_loss_equals_a_double_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    pids_of_clothes = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # 7 outfits of 4 identities
    clothes = torch.randint(0, 7, (10,), generator=gen)
    positive = pids_of_clothes[None, :] == pids_of_clothes[clothes][:, None]
    logits = 16 * (2 * torch.rand(10, 7, generator=gen, dtype=torch.float64) - 1)
    for epsilon in (0.0, 0.1, 0.5):
        ours = clothes_adversarial_loss(logits, clothes, positive, epsilon)
        torch.testing.assert_close(ours, brute_force_cal(logits, clothes, positive, epsilon))


def test_cosine_classifier_is_scale_free():
    clf = CosineClassifier(8, 5)
    x = torch.randn(3, 8)
    out = clf(x)
    assert out.shape == (3, 5) and out.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(clf(10 * x), out)
    assert (clf.weight.norm(dim=1) <= 1 + 1e-6).all()


def tiny_args(out, data, *extra):
    return ["train", "-c", "synthetic", "--out", str(out), "--quiet", "--no-report", f"data.root={data}", *TINY,
            "data.synthetic.ids=16", *extra]


@pytest.fixture
def data(tiny_data):
    """The synthetic dataset of ``tiny_args`` (rendered once a session; the tests only read it)."""
    return tiny_data("data.synthetic.ids=16")


def log_records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"iter"' in line]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_registered_preset_trains_resumes_exactly_and_evaluates(tmp_path, data, preset):
    args = tiny_args(tmp_path / "run", data, f"model.preset={preset}", "train.epochs=2",
                     "train.checkpoint_every=1", "loss.cal.start_epoch=0", *PRESET_NEEDS.get(preset, []))
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())["presets"][preset]
    assert {"sc", "cc"} <= set(results)
    resumed = tmp_path / "resumed"  # the same run stopped after its epoch-1 checkpoint, then resumed
    shutil.copytree(tmp_path / "run", resumed)
    for name in ("model.safetensors", "state.pt", "results.json", "results.md"):
        (resumed / name).unlink()
    assert main([*args[:4], str(resumed), *args[5:], "--resume"]) == 0
    full_w, resumed_w = (load_weights(run / "model.safetensors").state_dict for run in (tmp_path / "run", resumed))
    assert all(torch.equal(value, resumed_w[key]) for key, value in full_w.items())
    assert main(["test", "--weights", str(tmp_path / "run" / "model.safetensors"), "--out", str(tmp_path / "t"),
                 "--quiet", "--no-report"]) == 0
    if PRESETS.get(preset).method.build_network.__func__ is not Method.build_network.__func__:
        # a network of its own: it must export and appear in the report (loss curves by term name)
        assert main(["export", "onnx", "--weights", str(tmp_path / "run" / "model.safetensors"),
                     "--out", str(tmp_path / "m.onnx"), "--quiet"]) == 0
        assert main(["report", str(tmp_path / "run"), "--quiet"]) == 0
        assert (tmp_path / "run" / "report.html").is_file()


def test_cal_trains_its_classifier_from_the_start_epoch(tmp_path, data):
    run = tmp_path / "run"
    assert main(tiny_args(run, data, "model.preset=cal", "train.epochs=2", "loss.cal.start_epoch=1")) == 0
    records = log_records(run)
    before = [r for r in records if r["epoch"] == 1]
    after = [r for r in records if r["epoch"] == 2]
    assert before and after
    assert all(r["cal_adv"] == 0.0 and r["cal_clothes_ce"] > 0 for r in before)
    assert all(r["cal_adv"] > 0 for r in after)
    assert all(r["tri"] >= 0 for r in records)  # logged, though weighted 0 in `cal`


def test_unknown_preset_names_the_registered_ones(tmp_path, capsys):
    assert main(tiny_args(tmp_path / "run", tmp_path / "data", "model.preset=pcb-typo")) == 2
    err = capsys.readouterr().err
    assert "model.preset" in err and "ours+cal" in err and "Traceback" not in err


TOY = '''
"""A method defined outside ccreid: the baseline plus a feature-norm penalty."""
from ccreid.training.step import TrainStep
from ccreid.methods import Method, register_preset


class NormStep(TrainStep):
    def extra_terms(self, outputs, pids, clothes):
        return {"toy_norm": (0.01, outputs["feat"].norm(dim=1).mean())}


class ToyMethod(Method):
    def make_step(self, net, optimizers, *args, **kwargs):
        base = super().make_step(net, optimizers, *args, **kwargs)
        return NormStep(**base.fields())


register_preset("toy", ToyMethod)
'''


def test_toy_plugin_from_a_file_trains_and_tests(tmp_path, data, monkeypatch):
    plugin = tmp_path / "elsewhere" / "toy_method.py"
    plugin.parent.mkdir()
    plugin.write_text(textwrap.dedent(TOY))
    run = tmp_path / "run"
    assert main(tiny_args(run, data, f"plugins=[{plugin}]", "model.preset=toy")) == 0
    assert all(r["toy_norm"] > 0 for r in log_records(run))
    monkeypatch.chdir(tmp_path / "elsewhere")  # the saved config names the plug-in by absolute path
    assert main(["test", "--weights", str(run / "model.safetensors"), "--out", str(tmp_path / "t"), "--quiet",
                 "--no-report"]) == 0

    moved = tmp_path / "moved" / "toy_method.py"
    moved.parent.mkdir()
    plugin.rename(moved)
    weights = run / "model.safetensors"
    moved_hint = r"plugins.*not found.*plugins=\[NEW_PATH_OR_MODULE\].*--plugins.*ccreid.load"
    with pytest.raises(CCReIDError, match=moved_hint):
        ccreid.load(weights)
    # a new process, as a user's would be (this one registered "toy" from the old path already)
    load = (f"import ccreid, torch; ccreid.load({str(weights)!r}, plugins=[{str(moved)!r}])"
            ".embed(torch.zeros(1, 3, 64, 32, dtype=torch.uint8))")
    procs = [subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in (["-c", load], ["-m", "ccreid", "test", "--weights", str(weights), "--out",
                                         str(tmp_path / "t2"), "--quiet", "--no-report", f"plugins=[{moved}]"],
                          ["-m", "ccreid", "export", "onnx", "--weights", str(weights), "--out",
                           str(tmp_path / "m.onnx"), "--plugins", str(moved)])]  # at once: each reads, none shares
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]


def test_a_moved_plugin_file_is_found_by_its_module_name(tmp_path, data, monkeypatch):
    """A plug-in file importable as a module (here from a folder on sys.path, as an installed package's
    file) is recorded by module name too: after the file moves, ccreid test imports the module."""
    site_a, site_b = tmp_path / "site_a", tmp_path / "site_b"
    site_a.mkdir()
    site_b.mkdir()
    plugin = (site_a / "toy_moving.py").resolve()
    plugin.write_text(textwrap.dedent(TOY).replace('"toy"', '"toy_moving"'))
    monkeypatch.syspath_prepend(str(site_a))
    run = tmp_path / "run"
    assert main(tiny_args(run, data, f"plugins=[{plugin}]", "model.preset=toy_moving")) == 0
    assert load_weights(run / "model.safetensors").extra["plugin_modules"] == {str(plugin): "toy_moving"}
    plugin.rename(site_b / "toy_moving.py")  # the package installed elsewhere: the module still imports
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site_b), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "ccreid", "test", "--weights", str(run / "model.safetensors"),
                           "--out", str(tmp_path / "t"), "--no-report"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "importing them by module name: toy_moving" in " ".join(done.stderr.split())


def test_bad_plugins_are_one_line_errors(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    for plugin, expected in ((tmp_path / "absent.py", "not found"), ("no_such_module_xyz", "no module"),
                             (broken, f"RuntimeError: boom) at {broken}:1")):
        assert main(tiny_args(tmp_path / "run", tmp_path / "data", f"plugins=[{plugin}]")) == 2
        err = capsys.readouterr().err
        assert "config key 'plugins'" in err and expected in err and "Traceback" not in err


def test_an_entry_point_plugin_that_fails_to_import_is_one_line(tmp_path, monkeypatch, capsys):
    """An installed plug-in (group ccreid.plugins) that raises at import: its file and line, status 2."""
    from importlib.metadata import EntryPoint

    import ccreid.plugins as plugins

    (tmp_path / "broken_pkg_xyz.py").write_text("x = 1\nraise ValueError('bad setting')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("broken", "broken_pkg_xyz", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point] if group == plugins.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    assert main(tiny_args(tmp_path / "run", tmp_path / "data")) == 2
    err = capsys.readouterr().err
    assert "plug-in entry point broken (broken_pkg_xyz, group ccreid.plugins): importing it failed " \
           f"(ValueError: bad setting) at {tmp_path / 'broken_pkg_xyz.py'}:2" in " ".join(err.split())
    assert "Traceback" not in err


def test_pcb_stripes_are_six_row_blocks_and_eval_concatenates_them():
    from ccreid.methods.pcb import PCBModel
    from ccreid.models import build_backbone

    torch.manual_seed(0)
    model = PCBModel(build_backbone("resnet18", 0.25, 1), num_classes=5).eval()
    images = torch.randn(2, 3, 192, 64)
    with torch.no_grad():
        fmap, attention = model.feature_map(images)
        stripes = model.stripes(images)
        feats = model(images)
    batch, channels, height, width = fmap.shape
    assert height == 12 and attention == []
    torch.testing.assert_close(stripes, fmap.view(batch, channels, 6, 2, width).mean((3, 4)).transpose(1, 2))
    assert feats.shape == (2, 6 * channels) == (2, model.out_dim)
    torch.testing.assert_close(feats.view(2, channels, 6).norm(dim=1), torch.ones(2, 6))
    model.train()
    out = model(images)
    assert out["part_logits"].shape == (2, 6, 5) and out["bn_feat"].shape == (2, 6 * 256)


def test_ps_same_position_changes_exactly_the_shared_garment_pixels_and_takes_them_from_another_image():
    from ccreid.methods.ps import GARMENT_GROUPS, PixelSampling, sample_pixels_same_position

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 8, 4, generator=gen)
    parsing = torch.zeros(4, 8, 4, dtype=torch.long)
    parsing[:, 1:4] = 5  # upper clothes in every image
    parsing[0, 5:7] = 9  # pants in images 0 and 2 only
    parsing[2, 4:8] = 12  # (skirt: same lower group)
    parsing[3, 0] = 13  # a face pixel never changes
    out = sample_pixels_same_position(images, parsing, GARMENT_GROUPS["lip"], gen)
    changed = (out != images).any(1)
    upper, lower = torch.isin(parsing, torch.tensor([5])), torch.isin(parsing, torch.tensor([9, 12]))
    assert not (changed & ~(upper | lower)).any()
    for i in range(4):
        for group in (upper, lower):  # each group's pixels all come from one other image
            where = changed[i] & group[i]
            if where.any():
                assert any(torch.equal(out[i][:, where], images[j][:, where]) for j in range(4) if j != i), i
    assert changed[:, 1:4].all()  # the upper clothes of all four images are shared and replaced
    assert torch.equal(changed[0, 5:7], torch.ones(2, 4, dtype=torch.bool))  # 0's pants lie inside 2's skirt
    assert not changed[1, 4:].any() and not changed[3, 4:].any()  # no lower clothes in images 1 and 3
    batch = TrainBatch(images=images, pids=torch.arange(4), clothes=torch.arange(4), index=torch.arange(10, 14),
                       has_parsing=torch.tensor([True, True, False, True]), is_copy=torch.zeros(4, dtype=torch.bool),
                       parsing=parsing)
    result = PixelSampling(GARMENT_GROUPS["lip"])(batch, gen)
    assert result.images.shape[0] == 7 and result.is_copy.tolist() == [False] * 4 + [True] * 3
    assert result.pids.tolist() == [0, 1, 2, 3, 0, 1, 3] and result.clothes.tolist() == [0, 1, 2, 3, 0, 1, 3]
    assert result.index.tolist() == [10, 11, 12, 13, 10, 11, 13]
    assert result.counts == {"num_erased": 3, "num_without_map": 1}


def test_ablation_takes_comma_separated_presets_and_checks_them_first(tmp_path, capsys):
    args = ["ablation", "--out", str(tmp_path / "abl"), "--seeds", "1", "--quiet", "--no-report",
            f"data.root={tmp_path / 'data'}", *TINY, "data.synthetic.ids=16"]
    assert main(args[:1] + ["--presets", "baseline,pcb,nope"] + args[1:]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err and not (tmp_path / "abl").exists()


def test_vit_interpolates_position_embeddings_and_overlaps_patches():
    from ccreid.config import Config
    from ccreid.methods import build_model_from_config

    cfg = Config()
    cfg.model.preset, cfg.model.pretrained, cfg.data.height, cfg.data.width = "vit", "none", 64, 32
    cfg.model.vit.name = "vit_tiny_patch16_224"
    model = build_model_from_config(cfg, 5).eval()
    assert model.vit.pos_embed.shape[1] == 1 + 4 * 2  # 224x224's 14x14 grid fitted to 64x32: 4x2 patches
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        fmap, _ = model.feature_map(images)
        assert fmap.shape == (2, 192, 4, 2) and model(images).shape == (2, 192)
        cfg.model.vit.patch_stride = 8  # overlapping: 7x3 patches, embeddings resized to that grid at build
        overlapping = build_model_from_config(cfg, 5).eval()
        assert overlapping.feature_map(images)[0].shape == (2, 192, 7, 3)
        assert torch.isfinite(overlapping(images)).all()
    cfg.model.bsga.enabled = True
    with pytest.raises(CCReIDError, match="BSGA follows a CNN stage"):
        build_model_from_config(cfg, 5)
    cfg.model.bsga.enabled, cfg.model.vit.name = None, "resnet50"
    with pytest.raises(CCReIDError, match="not a timm vit_"):
        build_model_from_config(cfg, 5)


def test_vit_camera_embedding_adds_one_vector_per_camera_to_every_token():
    from ccreid.config import Config
    from ccreid.methods import build_model_from_config

    cfg = Config()
    cfg.model.preset, cfg.model.pretrained, cfg.data.height, cfg.data.width = "vit", "none", 32, 32
    cfg.model.vit.name, cfg.model.vit.sie, cfg.model.vit.sie_cameras = "vit_tiny_patch16_224", True, 3
    model = build_model_from_config(cfg, 5).eval()
    assert model.uses_camids and model.sie.shape == (3, 1, 192)
    images, camids = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    with torch.no_grad():
        vit = model.vit  # TransReID: x = x + pos_embed + coef * sie[camid], then the blocks
        x = vit.pos_drop(torch.cat([vit.cls_token.expand(2, -1, -1), vit.patch_embed(images).flatten(1, 2)], 1)
                         + vit.pos_embed)
        expected = vit.norm(vit.blocks(x + 3.0 * model.sie[camids]))
        torch.testing.assert_close(model.tokens(images, camids), expected)
        assert not torch.allclose(model(images, camids), model(images, torch.tensor([1, 1])))
        model.sie.zero_()  # a zero table is timm's own forward
        torch.testing.assert_close(model.tokens(images, camids), vit.forward_features(images))
    with pytest.raises(CCReIDError, match="pass the camera ids"):
        model(images)
    cfg.model.vit.sie = False
    assert not build_model_from_config(cfg, 5).uses_camids


def test_vit_camera_table_is_sized_from_the_data(data):
    from ccreid.config import load_config
    from ccreid.data.manager import DataManager
    from ccreid.methods.vit import ViTMethod

    cfg = load_config("synthetic", [f"data.root={data}", *TINY, "data.synthetic.ids=16",
                                    "model.preset=vit", "model.vit.sie=true"])
    dataset = DataManager(cfg, need_parsing=False).dataset
    cameras = 1 + max(r.camid for r in dataset.train + dataset.protocols["cc"].gallery)
    ViTMethod.complete_config(cfg, dataset)
    assert cfg.model.vit.sie_cameras == cameras
    cfg.model.vit.sie_cameras = cameras - 1
    with pytest.raises(CCReIDError, match="model.vit.sie_cameras.*camera ids up to"):
        ViTMethod.complete_config(cfg, dataset)


def test_vit_with_camera_embedding_trains_tests_embeds_and_exports(tmp_path, data):
    from ccreid.deploy import load

    run = tmp_path / "run"
    assert main(tiny_args(run, data, "model.preset=vit", "model.vit.sie=true", "train.epochs=1")) == 0
    saved = (run / "config.yaml").read_text()
    assert "sie_cameras: 0" not in saved and "sie: true" in saved  # the table size from the data is recorded
    assert main(["test", "--weights", str(run / "model.safetensors"), "--out", str(tmp_path / "t"), "--quiet",
                 "--no-report"]) == 0
    embedder = load(run / "model.safetensors", device="cpu", flip=False)
    images = (torch.rand(2, 3, 64, 32) * 255).to(torch.uint8)
    with pytest.raises(CCReIDError, match="pass the camera ids"):
        embedder.embed(images)
    with pytest.raises(CCReIDError, match="2 camera ids for 1 images"):
        embedder.embed(images[:1], camids=[0, 1])
    feats = embedder.embed(images, camids=[0, 1])
    assert not torch.allclose(feats, embedder.embed(images, camids=[1, 0]))
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "vit.onnx"
    assert main(["export", "onnx", "--weights", str(run / "model.safetensors"), "--out", str(onnx_path),
                 "--quiet"]) == 0
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images", "camids"]
    batch = embedder.preprocess(images).numpy()
    out = session.run(["features"], {"images": batch, "camids": torch.tensor([0, 1]).numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), feats, atol=1e-4, rtol=1e-4)
    ort = load(run / "model.safetensors", device="cpu", flip=False, backend="onnxruntime")
    torch.testing.assert_close(ort.embed(images, camids=[0, 1]), feats, atol=1e-4, rtol=1e-4)


def test_resume_says_which_plugin_changed_since_the_run_started(tmp_path, caplog):
    import logging

    from ccreid.config import load_config
    from ccreid.engine.trainer import PLUGINS_NAME, _record_plugins

    plugin = tmp_path / "hashed_plugin.py"
    plugin.write_text("X = 1\n")
    cfg = load_config(None, [f"plugins=[{plugin}]"])
    _record_plugins(cfg, tmp_path, resume=False)
    assert list(json.loads((tmp_path / PLUGINS_NAME).read_text())) == [str(plugin)]
    with caplog.at_level(logging.WARNING):
        _record_plugins(cfg, tmp_path, resume=True)
        assert "changed" not in caplog.text
        plugin.write_text("X = 2\n")
        _record_plugins(cfg, tmp_path, resume=True)
    assert f"--resume: plug-in {plugin} changed since the run started" in caplog.text
    (tmp_path / PLUGINS_NAME).write_text("{damaged")
    with caplog.at_level(logging.WARNING):
        _record_plugins(cfg, tmp_path, resume=True)
    assert "plugins.json is damaged; cannot tell whether the plug-ins changed" in caplog.text
