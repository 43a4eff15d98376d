"""Issue #7: report.html of a demo and a test folder, opened in headless Chromium.

Offline and self-contained: the report is moved away from the run folder before it is
rendered, and Chromium runs without network. The screenshot must not be blank, every
``<img>`` must load, and a broken image (negative control) must be caught.
Needs Debian's ``chromium`` (``.ci/run`` and ``make test`` install it when they can);
skips with that reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ccreid.commands import tester
from ccreid.viz import write_report
from headless_chromium import blank_reason, image_status, screenshot
from test_viz_common import make_demo_run, write_dataset

pytest.importorskip("matplotlib", reason="the report's plots need the optional extra: pip install 'ccreid[viz]'")

WIDTH, HEIGHT = 1280, 2000


def img_srcs(report: Path) -> list[str]:
    return re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', report.read_text(encoding="utf-8"))


def move_report(run_dir: Path, dest: Path) -> Path:
    """Only report.html + report_files/, in a new place: what someone would copy or zip up."""
    dest.mkdir(parents=True)
    shutil.copy2(run_dir / "report.html", dest / "report.html")
    shutil.copytree(run_dir / "report_files", dest / "report_files")
    return dest / "report.html"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """``{"demo": report.html, "test": report.html}``: a ``ccreid demo`` folder (baseline + ours)
    and a ``ccreid test`` folder of the demo's ``ours`` weights, each moved out of its run folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report_browser")
    demo = make_demo_run(root / "demo", write_dataset(root / "data"))
    tester.test_checkpoint(demo / "ours" / "seed0", root / "test")
    out = {}
    for name in ("demo", "test"):
        write_report(root / name, device="cpu", num_queries=2, k=4, num_images=3)
        out[name] = move_report(root / name, root / "moved" / name)
    return out


@pytest.mark.parametrize("kind", ["demo", "test"])
def test_report_is_self_contained(reports, kind):
    report = reports[kind]
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|iframe)\b", text, re.I) and "@import" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:|/)""", text, re.I)
    srcs = img_srcs(report)
    assert srcs and all(src.startswith("report_files/") and (report.parent / src).is_file() for src in srcs)


@pytest.mark.parametrize("kind", ["demo", "test"])
def test_every_image_loads_in_chromium(reports, kind):
    report = reports[kind]
    count, broken = image_status(report)
    assert count > 0 and count == len(img_srcs(report))
    assert broken == [], f"images that did not load: {broken}"
    if kind == "demo":  # both presets' ranked lists, cmc, training, maps
        assert count >= 2 * 3 + 4


def test_screenshot_is_not_blank(reports, tmp_path):
    pixels = screenshot(reports["demo"], tmp_path / "report.png", WIDTH, HEIGHT)
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert blank_reason(pixels) is None, blank_reason(pixels)


def test_broken_image_is_detected(reports, tmp_path):
    """Negative control: the same check on a copy with one image path broken must fail."""
    report = reports["demo"]
    bad = report.with_name("broken.html")
    first = img_srcs(report)[0]
    bad.write_text(report.read_text(encoding="utf-8").replace(f'src="{first}"', 'src="report_files/missing.png"', 1),
                   encoding="utf-8")
    count, broken = image_status(bad)
    assert count == len(img_srcs(report)) and broken == ["report_files/missing.png"]
    corrupt = tmp_path / "page"  # a file that exists but is not an image is broken too
    move_report(report.parent, corrupt)
    (corrupt / first).write_bytes(b"not a png")
    assert image_status(corrupt / "report.html")[1] == [first]


def test_blank_pages_are_caught():
    """Negative control of the screenshot check (no browser needed)."""
    white = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    assert "distinct colours" in blank_reason(white)
    noisy_white = white.copy()
    noisy_white[:10] = np.random.default_rng(0).integers(0, 256, (10, WIDTH, 3))  # one thin stripe
    assert "not white" in blank_reason(noisy_white)
