"""Every file named by an option or a config key: a folder, an empty file and a weights file of
the other format are one-line errors that say so (never "not found", never a traceback); a
weights file is told by its content, not its name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ccreid.cli import main
from ccreid.config import resolve_config_path
from ccreid.data.labels import get_label_set
from ccreid.errors import CCReIDError, first_line
from ccreid.files import EMPTY, PICKLE, SAFETENSORS, TORCH_ZIP, UNKNOWN, weights_format
from ccreid.parsing.checkpoint import read_state_dict
from ccreid.plugins import import_plugins
from ccreid.runs.checkpoint import load_weights
from ccreid.runs.features_io import load_features, load_index
from ccreid.training.pretrained import read_weight_file

TENSORS = {"conv1.weight": torch.arange(6.0).reshape(2, 3)}

#: every loader of a file named by an option or a config key
LOADERS = {
    "--weights (ccreid)": load_weights,
    "model.pretrained": read_weight_file,
    "--weights (SCHP)": read_state_dict,
    "--features": load_features,
    "--index": load_index,
    "-c": resolve_config_path,
    "plugins": lambda path: import_plugins([str(path)]),
    "data.parsing.labels": get_label_set,
}


def one_line(call, *args) -> str:
    with pytest.raises(CCReIDError) as err:
        call(*args)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("name", LOADERS)
def test_a_folder_is_said_to_be_a_folder(tmp_path, name) -> None:
    folder = tmp_path / "thing.py"  # a folder named like the file (.py for plugins)
    folder.mkdir()
    message = one_line(LOADERS[name], folder)
    assert "a folder" in message and str(folder) in message and "not found" not in message, message


def test_a_run_folder_without_weights_is_named(tmp_path) -> None:
    message = one_line(load_weights, tmp_path)
    assert f"{tmp_path}: a folder without model.safetensors" in message


def test_formats_are_told_by_content(tmp_path) -> None:
    files = {name: tmp_path / name for name in ("st.pth", "zip.safetensors", "old.safetensors", "empty.pth",
                                                 "text.pth")}
    save_file(TENSORS, str(files["st.pth"]))
    torch.save(TENSORS, files["zip.safetensors"])
    torch.save(TENSORS, files["old.safetensors"], _use_new_zipfile_serialization=False)
    files["empty.pth"].write_bytes(b"")
    files["text.pth"].write_text("hello")
    kinds = [weights_format(path) for path in files.values()]
    assert kinds == [SAFETENSORS, TORCH_ZIP, PICKLE, EMPTY, UNKNOWN]


def test_model_pretrained_reads_either_format_whatever_its_name(tmp_path) -> None:
    renamed, zipped = tmp_path / "renamed.pth", tmp_path / "zipped.safetensors"
    save_file(TENSORS, str(renamed))
    torch.save(TENSORS, zipped)
    for path in (renamed, zipped):
        assert torch.equal(read_weight_file(path)["conv1.weight"], TENSORS["conv1.weight"])


@pytest.mark.parametrize("loader,expected", [
    (load_weights, "a PyTorch checkpoint (torch.save), not a ccreid model.safetensors"),
    (read_state_dict, "a safetensors file (ccreid re-ID weights?), not an SCHP checkpoint"),
])
def test_the_other_format_is_named(tmp_path, loader, expected) -> None:
    path = tmp_path / "weights.pth"
    (torch.save(TENSORS, path) if loader is load_weights else save_file(TENSORS, str(path)))
    assert expected in one_line(loader, path)


@pytest.mark.parametrize("loader", [load_weights, read_weight_file, read_state_dict])
def test_an_empty_weights_file_is_called_empty(tmp_path, loader) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(b"")
    message = one_line(loader, path)
    assert f"{path}: an empty file (0 bytes" in message


def test_first_line_of_an_empty_message_is_the_type() -> None:
    assert first_line(RuntimeError("")) == "RuntimeError" and first_line(ValueError("\n a\nb")) == "a"


def test_cli_names_the_folder(tmp_path, capsys) -> None:
    assert main(["eval", "--features", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"features file {tmp_path}: a folder, not a file" in err.replace("\n", "") and "Traceback" not in err
    assert main(["test", "--weights", str(tmp_path / "empty.safetensors"), "--out", str(tmp_path / "t")]) == 2
    assert "not found" in capsys.readouterr().err
    Path(tmp_path / "empty.safetensors").write_bytes(b"")
    assert main(["test", "--weights", str(tmp_path / "empty.safetensors"), "--out", str(tmp_path / "t")]) == 2
    assert "an empty file" in capsys.readouterr().err.replace("\n", "")


def test_an_schp_checkpoint_named_safetensors_is_read(tmp_path) -> None:
    path = tmp_path / "schp.safetensors"
    torch.save({"state_dict": {"module.conv1.weight": TENSORS["conv1.weight"]}}, path)
    assert torch.equal(read_state_dict(path)["conv1.weight"], TENSORS["conv1.weight"])


def test_report_of_a_file_or_an_empty_folder_says_so(tmp_path, capsys) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("x")
    for target, needle in ((afile, f"{afile}: a file, not a folder"),
                           (tmp_path, f"no results file {tmp_path / 'results.json'}; pass the output folder"),
                           (tmp_path / "gone", "(no such folder)")):
        assert main(["report", str(target)]) == 2
        assert needle in capsys.readouterr().err.replace("\n", "")


def test_images_a_folder_or_unreadable_say_so(tmp_path, monkeypatch) -> None:
    from PIL import Image

    from ccreid.data import dataset

    assert "a folder, not a file" in one_line(dataset.read_image, str(tmp_path))
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(dataset, "read_file", lambda p: (_ for _ in ()).throw(RuntimeError("[Errno 13]")))
    monkeypatch.setattr(dataset.Image, "open", denied)  # tests run as root: no file is unreadable to them
    message = one_line(dataset.read_image, str(path))
    assert f"cannot read image {path}: permission denied" in message and "damaged" not in message


def test_vit_weights_named_as_the_other_format_say_rename(tmp_path) -> None:
    from torch import nn

    from ccreid.training.pretrained import load_vit_pretrained

    pytest.importorskip("timm")
    renamed, zipped = tmp_path / "vit.pth", tmp_path / "vit.safetensors"
    save_file(TENSORS, str(renamed))
    torch.save(TENSORS, zipped)
    for path, right in ((renamed, ".safetensors"), (zipped, ".pth")):
        message = one_line(load_vit_pretrained, nn.Linear(2, 2), "vit_tiny_patch16_224", str(path), {})
        assert f"rename it to end in {right}" in message and "pickle" not in message.lower()


@pytest.mark.parametrize("dataset", ["prcc", "ltcc", "synthetic"])
def test_a_file_as_the_dataset_folder_says_so(tmp_path, capsys, dataset) -> None:
    afile = tmp_path / "data.txt"
    afile.write_text("x")
    assert main(["data", "check", "--dataset", dataset, "--root", str(afile)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{afile} is a file, not " in err and "does not exist" not in err and "choose another --out" not in err, err


def test_an_empty_training_log_is_not_plotted_as_empty_curves(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("\n")
    assert main(["viz", "curves", "--runs", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 2
    assert "holds no iteration records" in capsys.readouterr().err.replace("\n", "")
    assert not (tmp_path / "out" / "training.png").exists()
