"""Every `ccreid` command line printed in README.md runs as printed, in the README's order, as a
user following it would run them (so a README command can never again fail as written).

The commands come from the README itself: the lines of its code blocks that run ccreid
(continuation lines joined, comments dropped) and its inline code that starts with ``ccreid ``.
What is substituted is only what must be data on disk: ``/data/...`` and ``/models/...`` become
folders of the test's own (a PRCC tree laid out as the real one, an SCHP-format checkpoint, weight
files, image folders), made just before the first command that names them. A command that trains
(train, demo) gets ``TINY_RUN`` appended after its own argv, leaving out every key the README
command sets itself: the README's argv is run unchanged, only with a tiny model and dataset.

Inline code with placeholders (``DIR``, ``W``, ``[--seed S]``, ``a|b``, ``...``) is the commands
table's syntax, not a command line. Command lines that cannot run here are in ``NOT_RUN`` with the
reason (they are still parsed and their config loaded); inline mentions of a command or an option
in the prose are in ``MENTIONS``. Every other command runs and must exit 0: a new README command is
run, or the test fails until it is listed.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import torch

from ccreid.cli import main, parse_args
from ccreid.config import load_config
from test_datasets_common import write_tree
from tiny_run import TINY

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: a tiny model and dataset for the commands that train (P x K = 2 x 2: the test trees hold few people)
TINY_RUN = [*TINY, "data.ids_per_batch=2", "data.images_per_id=2"]
#: placeholders and option syntax of the commands table (DIR, W, RUN1, [--seed S], a|b, ...)
SYNOPSIS = re.compile(r"[\[\]|()]|\.\.\.|\b[A-Z][A-Z0-9_]*\b")

NOT_RUN = {
    "torchrun --nproc_per_node=4 -m ccreid train -c prcc --out runs/prcc-ddp data.root=/data/prcc "
    "data.parsing.root=/data/prcc_parsing": "torchrun on 4 CUDA GPUs",
    "torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 -m ccreid train -c prcc "
    "--out /shared/runs/prcc-ddp data.root=/data/prcc data.parsing.root=/data/prcc_parsing":
        "torchrun on two machines with 8 CUDA GPUs each",
    "ccreid train -c prcc data.root=/data/prcc data.parsing.root=/data/prcc_parsing --out runs/prcc-a1 "
    "model.backbone=timm:resnet50.a1_in1k model.pretrained=imagenet": "downloads timm's ImageNet weights (network)",
    "ccreid train -c prcc data.root=/data/prcc data.parsing.root=/data/prcc_parsing --out runs/prcc-convnext "
    "model.backbone=timm:convnext_tiny model.bsga.enabled=false":
        "downloads timm's ImageNet weights (network; model.pretrained=imagenet from configs/real.yaml)",
}
MENTIONS = {"ccreid train", "ccreid test", "ccreid extract", "ccreid demo", "ccreid ablation", "ccreid synth",
            "ccreid parse", "ccreid data check", "ccreid export onnx", "ccreid viz curves", "ccreid train --resume",
            "ccreid test --rerank", "ccreid eval --json", "ccreid parse --dataset",
            "ccreid viz ranks", "ccreid viz cmc"}


def readme_commands() -> List[str]:
    """The README's command lines in order of first appearance (whitespace normalised)."""
    text = README.read_text()
    found = []
    for block in re.finditer(r"```[^\n]*\n(.*?)```", text, re.S):
        for offset, line in enumerate(block.group(1).replace("\\\n", " ").splitlines()):
            command = line.split(" #")[0].strip()
            if re.match(r"(ccreid|torchrun) ", command):
                found.append((block.start() + offset, " ".join(command.split())))
    prose = re.sub(r"```.*?```", lambda block: " " * len(block.group()), text, flags=re.S)
    for span in re.finditer(r"`([^`]+)`", prose):
        code = " ".join(span.group(1).split())
        if code.startswith("ccreid ") and not SYNOPSIS.search(code):
            found.append((span.start(), code))
    return list(dict.fromkeys(command for _, command in sorted(found)))


def _image_folder(count: int) -> Callable[[Path], None]:
    return lambda path: write_tree(path, [f"cam{i % 2}/{i:03d}.jpg" for i in range(count)])


def _prcc(root: Path) -> None:
    """PRCC's layout: rgb/train/<pid>/ (cameras A, C), rgb/test/{A,B,C}/<pid>/."""
    write_tree(root / "rgb", ["train/001/A_1.jpg", "train/001/C_1.jpg", "train/002/A_1.jpg", "train/002/C_1.jpg",
                              "test/A/010/A_1.jpg", "test/B/010/B_1.jpg", "test/C/010/C_1.jpg",
                              "test/A/011/A_1.jpg", "test/C/011/C_1.jpg"])


def _torchvision_weights(path: Path) -> None:
    """A torchvision-named ResNet state dict of the backbone TINY_RUN builds."""
    from safetensors.torch import save_file

    from ccreid.models.backbones import build_backbone

    state = {key: value.contiguous() for key, value in build_backbone("resnet18", 0.25).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)


def _copy_of(made: str) -> Callable[[Path], None]:
    """A user's checkpoint: the model an earlier README command trained."""
    def copy(path: Path) -> None:
        assert Path(made).is_file(), f"{made} is made by an earlier README command"
        shutil.copyfile(made, path)
    return copy


def _makers(schp_checkpoint) -> Dict[str, Callable[[Path], None]]:
    """Data on disk the README's commands name, by the path they print."""
    return {
        "/data/prcc": _prcc,
        "/data/ltcc": lambda root: write_tree(root / "LTCC_ReID", [
            "train/001_1_c1_000001.png", "train/002_1_c2_000001.png", "query/010_1_c2_000001.png",
            "test/010_2_c3_000001.png"]),
        "/data/cctv_crops": _image_folder(24),
        "my_crops/": _image_folder(1),
        "suspect.jpg": lambda path: write_tree(path.parent, [path.name]),
        "exp-schp-201908261155-lip.pth": lambda path: path.symlink_to(schp_checkpoint("lip")),
        "/models/resnet50-11ad3fa6.pth": _torchvision_weights,
        "/models/resnet50.a1_in1k.safetensors": _torchvision_weights,
        "a.safetensors": _copy_of("runs/x/model.safetensors"),
        "b.safetensors": _copy_of("runs/x/model.safetensors"),
        "ours.safetensors": _copy_of("runs/x/model.safetensors"),
    }


def on_disk(text: str, root: Path) -> str:
    """``/data/...`` and ``/models/...`` (also after ``key=``) inside the test's folder."""
    return re.sub(r"(^|[=\s])/(data|models)/", lambda m: f"{m.group(1)}{root}/{m.group(2)}/", text)


def with_tiny_run(argv: List[str]) -> List[str]:
    """``argv`` of a training command + TINY_RUN's keys it does not set itself."""
    if argv[0] not in ("train", "demo"):
        return argv
    own = {token.split("=")[0] for token in argv if "=" in token and not token.startswith("-")}
    return argv + [override for override in TINY_RUN if override.split("=")[0] not in own]


def test_listed_commands_are_still_in_the_readme():
    commands = set(readme_commands())
    assert set(NOT_RUN) <= commands and MENTIONS <= commands


@pytest.mark.parametrize("command", sorted(NOT_RUN))
def test_commands_not_run_here_still_parse(command):
    args = parse_args(shlex.split(command.split("-m ccreid ")[-1].removeprefix("ccreid ")))
    load_config(args.config, args.overrides)


def test_readme_commands_run_as_printed(schp_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    makers = _makers(schp_checkpoint)
    ran = []
    for command in readme_commands():
        if command in NOT_RUN or command in MENTIONS:
            continue
        for name, make in makers.items():
            target = Path(on_disk(name, tmp_path))
            if name in command and not target.exists():
                make(target)
        argv = with_tiny_run(shlex.split(on_disk(command, tmp_path))[1:])
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 0, f"README command `{command}` exited {status}: {err}"
        ran.append(command)
    assert len(ran) >= 15
