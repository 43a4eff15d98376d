"""`ccreid parse` end to end against SCHP's own extractor output (../shared/schp/expected)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from ccreid.cli import main
from ccreid.parsing.store import ERRORS_NAME, PALETTE
from ccreid.parsing.warp import affine_matrix, opencv, person_box, read_bgr


@pytest.mark.parametrize("labels", ["lip", "atr"])
def test_pipeline_matches_schp_extractor(schp_data, schp_checkpoint, tmp_path, labels, capsys):
    out = tmp_path / "maps"
    args = ["parse", "--weights", str(schp_checkpoint(labels)), "--images", str(schp_data / "images"),
            "--out", str(out), "--logits", "--device", "cpu", "--amp", "off", "--batch", "2", "--quiet"]
    assert main(args) == 0
    gold = np.load(schp_data / "expected" / labels / "logits.npz")
    origin, stride = int(gold["_origin"]), int(gold["_stride"])
    images = sorted(p.stem for p in (schp_data / "images").iterdir())
    assert sorted(p.stem for p in out.glob("*.png")) == images
    for stem in images:
        with Image.open(out / f"{stem}.png") as png:
            assert png.mode == "P" and png.getpalette()[:9] == PALETTE[:9]
            ours = np.array(png)
        with Image.open(schp_data / "expected" / labels / f"{stem}.png") as png:
            expected = np.array(png)
        assert ours.shape == expected.shape
        assert (ours == expected).mean() >= 0.995, stem
        logits = np.load(out / f"{stem}.npy")
        assert logits.dtype == np.float32 and logits.shape == tuple(gold[f"{stem}.shape"])
        ref = gold[stem]
        assert np.abs(logits[origin::stride, origin::stride] - ref).max() <= 1e-3 * np.abs(ref).max(), stem
        assert (logits.argmax(2) == ours).all()
    assert "parsed 3, skipped 0" in capsys.readouterr().out


def test_box_and_matrix_closed_form():
    box = person_box(128, 64, (473, 473))
    assert box.center.tolist() == [31.5, 63.5] and box.scale.tolist() == [127.0, 127.0]
    k = 472 / 127
    forward = affine_matrix(box, (473, 473))
    np.testing.assert_allclose(forward, [[k, 0, 236 - k * 31.5], [0, k, 236 - k * 63.5]], atol=1e-9)
    inverse = affine_matrix(box, (473, 473), inverse=True)
    np.testing.assert_allclose(inverse, [[1 / k, 0, 31.5 - 236 / k], [0, 1 / k, 63.5 - 236 / k]], atol=1e-9)
    narrow = person_box(81, 49, (81, 49))  # (w-1, h-1) = (48, 80) padded to the input's aspect 49/81
    np.testing.assert_allclose(narrow.scale, [80 * 49 / 81, 80.0], rtol=1e-6)


def test_inverse_warp_round_trip(schp_data):
    cv2 = opencv()
    image = read_bgr(schp_data / "images" / "person_256x128.jpg").astype(np.float32)
    box = person_box(*image.shape[:2], (473, 473))
    up = cv2.warpAffine(image, affine_matrix(box, (473, 473)), (473, 473), flags=cv2.INTER_LINEAR)
    back = cv2.warpAffine(up, affine_matrix(box, (473, 473), inverse=True), (box.width, box.height),
                          flags=cv2.INTER_LINEAR)
    inner = np.abs(back - image)[2:-2, 2:-2]
    assert np.median(inner) < 2.0 and np.mean(inner) < 6.0  # bilinear up then down: a mild blur only


def _run(weights, images, out, *extra):
    return main(["parse", "--weights", str(weights), "--images", str(images), "--out", str(out), "--device", "cpu",
                 "--amp", "off", "--quiet", *extra])


def test_resume_overwrite_and_unreadable_images(schp_data, schp_checkpoint, tmp_path, capsys):
    images = tmp_path / "in"
    (images / "cam1" / "deep").mkdir(parents=True)
    shutil.copy(schp_data / "images" / "person_128x64.png", images / "cam1" / "A.PNG")
    shutil.copy(schp_data / "images" / "person_128x64.png", images / "cam1" / "deep" / "b.jpeg")
    (images / "cam1" / "broken.jpg").write_bytes(b"not an image")
    (images / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    weights = schp_checkpoint("lip")
    assert _run(weights, images, out) == 2
    captured = capsys.readouterr()
    assert "parsed 2, skipped 0 (already complete), failed 1" in captured.out
    assert f"see {out / ERRORS_NAME}" in captured.err and "Traceback" not in captured.err
    assert (out / "cam1" / "A.png").is_file() and (out / "cam1" / "deep" / "b.png").is_file()
    assert "broken.jpg\tnot a decodable image" in (out / ERRORS_NAME).read_text()
    (images / "cam1" / "broken.jpg").unlink()
    first = (out / "cam1" / "A.png").stat().st_mtime_ns
    (out / "cam1" / "deep" / "b.png").write_bytes(b"\x89PNG half")  # not written by ccreid parse (atomic writes)
    assert _run(weights, images, out) == 2
    err = capsys.readouterr().err
    assert f"{out / 'cam1' / 'deep' / 'b.png'} is not a map ccreid parse wrote with" in err and "--overwrite" in err
    (out / "cam1" / "deep" / "b.png").unlink()
    assert _run(weights, images, out) == 0
    assert "parsed 1, skipped 1" in capsys.readouterr().out
    assert (out / "cam1" / "A.png").stat().st_mtime_ns == first and not (out / ERRORS_NAME).exists()
    assert _run(weights, images, out, "--logits") == 0  # the logits are missing: both redone
    assert "parsed 2, skipped 0" in capsys.readouterr().out
    assert _run(weights, images, out, "--overwrite") == 0
    assert "parsed 2, skipped 0" in capsys.readouterr().out
    assert not list(out.rglob(".*.tmp"))


def test_bad_options_are_one_line_and_write_nothing(schp_data, schp_checkpoint, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    shutil.copy(schp_data / "images" / "person_128x64.png", images / "a.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    reid = tmp_path / "model.safetensors"
    reid.write_bytes(b"{}")
    weights = schp_checkpoint("lip")
    cases = [
        (_run, (weights, empty, tmp_path / "o1"), "no images"),
        (_run, (weights, images, images / "maps"), "inside the input folder"),
        (_run, (weights, images, afile), "is a file"),
        (_run, (reid, images, tmp_path / "o2"), "safetensors"),
        (_run, (weights, images, tmp_path / "o3", "--amp", "fp16"), "fp16 needs a GPU"),
        (_run, (weights, images, tmp_path / "o4", "--batch", "0"), "--batch"),
        (_run, (weights, images, tmp_path / "o5", "--labels", "atr"), "atr has 18 classes"),
        (main, (["parse", "--weights", str(weights), "--dataset", "prcc", "--out", str(tmp_path / "o6")],),
         "--dataset and --root go together"),
    ]
    for run, args, expected in cases:
        assert run(*args) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7)) and not (images / "maps").exists()


@pytest.mark.timeout(240)
def test_torchrun_shares_the_images_and_writes_what_one_process_writes(schp_data, schp_checkpoint, tmp_path):
    """Two processes parse every other batch; the maps equal a single process's byte for byte; a rerun
    (an interrupted job) skips the maps already complete; an unreadable image is listed once."""
    import os
    import socket
    import subprocess
    import sys

    images = tmp_path / "in"
    images.mkdir()
    sources = sorted((schp_data / "images").iterdir())
    for i in range(5):
        shutil.copy(sources[i % 3], images / f"{i}{sources[i % 3].suffix}")
    (images / "9_broken.jpg").write_bytes(b"not an image")
    weights = schp_checkpoint("lip")

    def torchrun(out, processes=2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "ccreid", "parse", "--weights",
               str(weights), "--images", str(images), "--out", str(out), "--device", "cpu", "--amp", "off",
               "--batch", "2", "--quiet", "--workers", "0"]
        return subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                              timeout=200)

    assert torchrun(tmp_path / "one", processes=1).returncode != 0  # the same threads: the broken image fails it
    two = tmp_path / "two"
    done = torchrun(two)
    assert done.returncode != 0 and "1 image(s) could not be parsed" in done.stderr
    assert "parsed 5, skipped 0 (already complete), failed 1" in done.stdout
    pngs = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert pngs == sorted(p.relative_to(two) for p in two.rglob("*.png")) and len(pngs) == 5
    for name in pngs:
        assert (two / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert (two / ERRORS_NAME).read_text().count("9_broken.jpg") == 1
    (two / pngs[0]).unlink()  # as if the job had been killed before that map
    again = torchrun(two)
    assert "parsed 1, skipped 4" in again.stdout
