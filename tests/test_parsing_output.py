"""`ccreid parse` keeps what it did not write: files in the way, another checkpoint's folder, the run
lock, stale temporary files, an unwritable or full --out, unreadable images, decoding in workers."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccreid.cli import main
from ccreid.config import DataConfig, ParsingConfig
from ccreid.engine.parsing_maps import check_recorded_labels
from ccreid.errors import CCReIDError
from ccreid.parsing import HumanParser, job
from ccreid.parsing.store import ERRORS_NAME, MANIFEST_NAME, MARKER
from ccreid.runs.outputs import LOCK_NAME


def _images(schp_data: Path, folder: Path, names=("a.png", "b.png")) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(schp_data / "images" / "person_128x64.png", folder / name)
    return folder


def _run(weights, images, out, *extra):
    return main(["parse", "--weights", str(weights), "--images", str(images), "--out", str(out), "--device", "cpu",
                 "--amp", "off", "--quiet", *extra])


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if the SCHP network is built."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was built")

    monkeypatch.setattr(HumanParser, "load", refuse)


def test_a_file_in_the_way_is_refused_and_kept(schp_data, schp_checkpoint, tmp_path, capsys):
    images = _images(schp_data, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    Image.new("P", (64, 128)).save(out / "a.png")  # the user's own map of the same name and size
    mine = (out / "a.png").read_bytes()
    assert _run(schp_checkpoint("lip"), images, out) == 2
    err = capsys.readouterr().err
    assert f"{out / 'a.png'} is not a map ccreid parse wrote with lip-seed1.pth" in err and "--overwrite" in err
    assert (out / "a.png").read_bytes() == mine and not (out / "b.png").exists()
    assert _run(schp_checkpoint("lip"), images, out, "--overwrite") == 0
    with Image.open(out / "a.png") as png:
        assert png.info[MARKER].startswith("sha256:")


def test_the_folder_records_its_checkpoint_and_refuses_another(schp_data, schp_checkpoint, tmp_path, capsys,
                                                               monkeypatch):
    images = _images(schp_data, tmp_path / "in", ("a.png",))
    out = tmp_path / "out"
    assert _run(schp_checkpoint("lip"), images, out) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["labels"] == "lip" and manifest["num_classes"] == 20 and manifest["checkpoint"] == "lip-seed1.pth"
    assert manifest["fingerprint"].startswith("sha256:")
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(HumanParser, "load", lambda *a, **k: pytest.fail("the network was built"))
        assert _run(schp_checkpoint("atr"), images, out) == 2  # ATR into a folder of LIP maps
    err = capsys.readouterr().err
    assert f"{out} holds maps of another SCHP checkpoint (lip labels from lip-seed1.pth" in err
    assert "pass --overwrite to ccreid parse to redo them with atr-seed1.pth (atr labels)" in err
    data = DataConfig(parsing=ParsingConfig(root=str(out), labels="atr"))
    with pytest.raises(CCReIDError, match=r"data.parsing.labels=atr but the maps in .* are lip maps \(20 classes"):
        check_recorded_labels(data)  # training refuses to read them as ATR
    check_recorded_labels(DataConfig(parsing=ParsingConfig(root=str(out), labels="lip")))
    assert _run(schp_checkpoint("atr"), images, out, "--overwrite") == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["labels"] == "atr"
    check_recorded_labels(data)


def test_a_second_run_into_the_folder_is_refused(schp_data, schp_checkpoint, tmp_path, capsys, no_network):
    images = _images(schp_data, tmp_path / "in", ("a.png",))
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getppid()}\n")  # a live process holds the folder
    assert _run(schp_checkpoint("lip"), images, out) == 2
    err = capsys.readouterr().err
    assert f"{out} is being written by process {os.getppid()} ({out / LOCK_NAME})" in err
    assert not (out / "a.png").exists()


def test_stale_temporary_files_are_removed_and_counted(schp_data, schp_checkpoint, tmp_path, capsys):
    images = _images(schp_data, tmp_path / "in", ("a.png",))
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".a.npy.k3x_9q0z.tmp", out / ".a.png.0a1b2c3d.tmp"]  # a run killed while writing
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    (out / ".notes.txt.0a1b2c3d.tmp").write_text("not ours")
    assert _run(schp_checkpoint("lip"), images, out, "--logits") == 0
    assert "removed 2 stale temporary file(s)" in capsys.readouterr().out
    assert not any(path.exists() for path in stale) and (out / ".notes.txt.0a1b2c3d.tmp").exists()


def test_unwritable_out_is_refused_before_the_network_is_built(schp_data, schp_checkpoint, tmp_path, capsys,
                                                               no_network):
    images = _images(schp_data, tmp_path / "in", ("a.png",))
    (tmp_path / "afile").write_text("x")
    assert _run(schp_checkpoint("lip"), images, tmp_path / "afile" / "maps") == 2
    err = capsys.readouterr().err
    assert "afile/maps" in err and "a part of the path is a file" in err and "Traceback" not in err


def test_a_disk_filling_up_during_logits_names_the_file(schp_data, schp_checkpoint, tmp_path, capsys):
    """A short write (the disk fills mid-file; here a file-size limit) is reported with the file's
    name: numpy's own writer says only "N requested and M written"."""
    images = _images(schp_data, tmp_path / "in", ("a.png",))
    out = tmp_path / "out"
    weights = schp_checkpoint("lip")
    saved = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, saved[0][1]))  # the logits are 655 kB
    try:
        status = _run(weights, images, out, "--logits", "--workers", "0")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved[0])
        signal.signal(signal.SIGXFSZ, saved[1])
    err = capsys.readouterr().err
    assert status == 2 and f"cannot write {out / 'a.npy'}: File too large" in err and "Traceback" not in err
    assert not list(out.glob(".*.tmp")) and not (out / "a.png").exists()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares ``width x height`` pixels (a decompression bomb) with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_unreadable_images_are_listed_with_the_reason(schp_data, schp_checkpoint, tmp_path, capsys, monkeypatch):
    images = _images(schp_data, tmp_path / "in", ("good.png", "locked.png"))
    _png_header_only(images / "bomb.png", 30000, 30000)  # over twice Pillow's limit: an error
    _png_header_only(images / "big.png", 10000, 10000)  # over the limit: Pillow's warning
    os.symlink("loop.jpg", images / "loop.jpg")
    real = np.fromfile

    def fromfile(name, *args, **kwargs):  # tests run as root, who may read anything: the OS answer, simulated
        if Path(name).name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", fromfile)  # the DataLoader workers are forked: they see it too
    out = tmp_path / "out"
    assert _run(schp_checkpoint("lip"), images, out, "--workers", "2") == 2
    captured = capsys.readouterr()
    assert "parsed 1, skipped 0 (already complete), failed 4" in captured.out and "Traceback" not in captured.err
    errors = dict(line.split("\t") for line in (out / ERRORS_NAME).read_text().splitlines())
    assert errors[str(images / "locked.png")] == "permission denied"
    assert errors[str(images / "loop.jpg")] == "a symbolic link loop"
    for name in ("bomb.png", "big.png"):
        assert errors[str(images / name)].startswith("too many pixels, refused as a possible decompression bomb")


def test_images_are_decoded_in_worker_processes_with_the_same_result(schp_data, schp_checkpoint, tmp_path,
                                                                     monkeypatch):
    images = _images(schp_data, tmp_path / "in", ())
    for name in ("person_256x128.jpg", "noise_97x211.png"):
        shutil.copy(schp_data / "images" / name, images / name)
    readers = tmp_path / "readers"
    real = job.read_bgr

    def read_bgr(path):
        with open(readers, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(path)

    monkeypatch.setattr(job, "read_bgr", read_bgr)
    weights = schp_checkpoint("lip")
    assert _run(weights, images, tmp_path / "w2", "--logits", "--workers", "2") == 0
    assert str(os.getpid()) not in readers.read_text().split()
    readers.unlink()
    assert _run(weights, images, tmp_path / "w0", "--logits", "--workers", "0") == 0
    assert readers.read_text().split() == [str(os.getpid())] * 2
    for name in ("person_256x128.png", "person_256x128.npy", "noise_97x211.png", "noise_97x211.npy"):
        assert (tmp_path / "w2" / name).read_bytes() == (tmp_path / "w0" / name).read_bytes(), name


def test_a_damaged_manifest_is_one_line(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{half")
    with pytest.raises(CCReIDError, match=r"parse_manifest.json is damaged or not written by ccreid parse"):
        check_recorded_labels(DataConfig(parsing=ParsingConfig(root=str(tmp_path), labels="lip")))
