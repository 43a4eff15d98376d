"""report.html for train and demo folders, rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccreid.engine import tester
from ccreid.errors import CCReIDError
from ccreid.viz import write_report
from test_viz_common import make_checkpoint, make_demo_run, make_train_run, write_dataset

pytest.importorskip("matplotlib", reason="the report's plots need the optional extra: pip install 'ccreid[viz]'")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
#: Marks, once the page has loaded, how many images it has and which failed to load.
PROBE = """<script>window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  document.body.setAttribute("data-images", document.images.length);
  document.body.setAttribute("data-broken", broken.join(" ") || "none");
});</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium binary found (install it: apt-get install -y chromium); report not rendered")


def render(html: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, "--virtual-time-budget=5000", *args, html.as_uri()],
                          capture_output=True, text=True, timeout=120)


def image_check(html: Path) -> tuple[int, str]:
    """(number of <img>, broken srcs or 'none') as the browser saw them."""
    probe = html.with_name("probe.html")
    probe.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    dom = render(probe, "--dump-dom").stdout
    found = re.search(r'data-images="(\d+)" data-broken="([^"]*)"', dom)
    assert found, f"the probe did not run: {dom[:300]}"
    return int(found.group(1)), found.group(2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    manifest = write_dataset(root / "data")
    return make_train_run(root / "train", manifest, "ours"), make_demo_run(root / "demo", manifest)


def referenced_images(html: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html.read_text())


def test_train_folder_report(folders):
    train, _ = folders
    written = write_report(train, device="cpu")
    report = written[0]
    assert report == train / "report.html" and not list(train.glob(".*.tmp"))
    names = {p.name for p in written[1:]}
    assert {"training.png", "cmc.png", "actmap.png", "attention_ours.png", "ranks_ours_cc.png"} <= names
    text = report.read_text()
    srcs = referenced_images(report)
    assert sorted(srcs) == sorted(f"report_files/{n}" for n in names)
    for src in srcs:  # relative, existing, decodable
        assert not src.startswith(("/", "file:", "http")) and Image.open(train / src).size[0] > 10
    results = json.loads((train / "results.json").read_text())["presets"]["ours"]
    assert f"<td>{results['cc']['rank1']:.1f}</td>" in text and f"<td>{results['general']['mAP']:.1f}</td>" in text
    assert "model:" in text and "preset: ours" in text  # the config
    assert "report_s" in text and "eval_s" in text and "torch" in text  # time taken and machine


def test_test_folder_report_uses_the_weights_it_names(folders, tmp_path):
    train, _ = folders
    tester.test_checkpoint(train, tmp_path / "test")  # the folder form of --weights
    written = write_report(tmp_path / "test", device="cpu", num_queries=1, k=2)
    names = [p.name for p in written[1:]]
    assert "training.png" not in names and {"cmc.png", "actmap.png", "ranks_ours_cc.png"} <= set(names)


def test_demo_folder_report_renders_in_chromium(folders, tmp_path):
    _, demo = folders
    written = write_report(demo, device="cpu", num_queries=2, k=4)
    names = {p.name for p in written[1:]}
    assert {f"ranks_{p}_{r}.png" for p in ("baseline", "ours") for r in ("general", "sc", "cc")} <= names
    assert "attention_ours.png" in names and "attention_baseline.png" not in names
    actmap = Image.open(demo / "report_files" / "actmap.png")
    assert actmap.size[0] > 3 * 32  # image + baseline + ours columns
    report = written[0]
    assert "baseline" in report.read_text() and "ours" in report.read_text()
    count, broken = image_check(report)
    assert count == len(written) - 1 and broken == "none"
    shot = tmp_path / "shot.png"
    render(report, f"--screenshot={shot}", "--window-size=1280,1600")
    pixels = np.array(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1280)
    assert (pixels.std(axis=(0, 1)) > 10).all() and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100


def test_broken_image_is_detected_and_notes_replace_missing_parts(folders, tmp_path):
    train, _ = folders
    copy = tmp_path / "run"
    shutil.copytree(train, copy, ignore=shutil.ignore_patterns("report*"))
    make_checkpoint(copy / "model.safetensors", tmp_path / "moved" / "manifest.csv", "ours")  # dataset gone
    written = write_report(copy)
    text = written[0].read_text()
    assert "sample pictures skipped: custom: no manifest" in text and "moved" in text
    assert [p.name for p in written[1:]] == ["training.png"] and "<td>ours</td>" in text
    (copy / "report_files" / "training.png").unlink()
    count, broken = image_check(written[0])
    assert count == 1 and broken == "report_files/training.png"
    (copy / "results.json").write_text("{broken")
    with pytest.raises(CCReIDError, match="results.json"):
        write_report(copy)
