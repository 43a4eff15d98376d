"""The picture, export and report commands: `ccreid viz ...`, `ccreid export onnx`, `ccreid report`."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ccreid.cli import main
from test_viz_common import make_train_run, write_dataset

pytest.importorskip("matplotlib", reason="the plots need the optional extra: pip install 'ccreid[viz]'")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli_viz")
    manifest = write_dataset(root / "data")
    return make_train_run(root / "baseline", manifest, "baseline"), make_train_run(root / "ours", manifest, "ours", 1)


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def test_viz_commands_write_pictures(runs, tmp_path, capsys):
    baseline, ours = runs
    weights = [str(baseline / "model.safetensors"), str(ours / "model.safetensors")]
    common = ["--out", str(tmp_path), "--device", "cpu", "--quiet"]
    assert main(["viz", "actmap", "--weights", *weights, "--labels", "base", "ours", "--num-images", "3", *common]) == 0
    width, height = png_size(tmp_path / "actmap.png")
    assert width > 3 * 32 and height > 3 * 64
    assert main(["viz", "attention", "--weights", weights[1], "--num-images", "2", *common]) == 0
    assert png_size(tmp_path / "attention.png")[0] > 2 * 32
    assert main(["viz", "ranks", "--weights", weights[1], "--protocol", "cc", "--num-queries", "2", "-k", "3",
                 *common]) == 0
    assert (tmp_path / "ranks_cc.png").is_file() and not (tmp_path / "ranks_sc.png").exists()
    assert main(["viz", "cmc", "--weights", *weights, "--labels", "base", "ours", *common]) == 0
    assert png_size(tmp_path / "cmc.png")[0] > 300
    assert main(["viz", "curves", "--runs", str(baseline), str(ours), "--out", str(tmp_path)]) == 0
    assert png_size(tmp_path / "training.png")[0] > 300
    assert "wrote" in capsys.readouterr().out
    stamp = (tmp_path / "cmc.png").stat().st_mtime_ns
    assert main(["viz", "cmc", "--weights", *weights, *common]) == 2  # an earlier picture is kept
    assert "cmc.png already exists" in capsys.readouterr().err and (tmp_path / "cmc.png").stat().st_mtime_ns == stamp
    assert main(["viz", "curves", "--runs", str(baseline), "--out", str(tmp_path), "--overwrite"]) == 0


def test_viz_bad_inputs(runs, tmp_path, capsys):
    baseline, _ = runs
    assert main(["viz", "attention", "--weights", str(baseline / "model.safetensors"), "--out", str(tmp_path),
                 "--device", "cpu"]) == 2
    assert main(["viz", "actmap", "--weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)]) == 2
    assert main(["viz", "curves", "--runs", str(baseline), "--labels", "a", "b", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no BSGA" in err and "none.safetensors" in err and "--labels" in err and "Traceback" not in err


def test_report_command_and_export(runs, tmp_path, capsys):
    _, ours = runs
    assert main(["report", str(ours), "--no-samples"]) == 0
    assert "report.html" in capsys.readouterr().out and (ours / "report.html").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err
    pytest.importorskip("onnx", reason="ONNX export needs the optional extra: pip install 'ccreid[export]'")
    out = tmp_path / "model.onnx"
    assert main(["export", "onnx", "--weights", str(ours / "model.safetensors"), "--out", str(out), "--quiet"]) == 0
    assert out.stat().st_size > 10_000
    other = tmp_path / "other.onnx"
    assert main(["export", "onnx", "--weights", str(ours / "model.safetensors"), "--out", str(other), "--opset", "9"]) == 2
    assert "--opset" in capsys.readouterr().err and not other.exists()
