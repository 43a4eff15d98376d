"""Render local HTML pages in headless Chromium (Debian's ``chromium``) for the report tests.

Every call starts a fresh browser with an empty profile and the flags this kind of machine
needs (no network, no sandbox as root, no GPU). Tests that need the browser skip, with the
install command as the reason, only when no Chromium binary is on ``PATH``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest
from PIL import Image

BINARIES = ("chromium", "chromium-browser")
SKIP_REASON = "chromium not installed (apt-get install chromium)"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--run-all-compositor-stages-before-draw"]
TIMEOUT_S = 60
#: Injected before ``</body>`` of a copy of the page: once everything has loaded, writes the
#: number of ``<img>`` and the ``src`` of those that did not decode into ``#ccreid-probe``.
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "ccreid-probe";
  out.textContent = JSON.stringify({images: images.length, broken: broken});
  document.body.appendChild(out);
});</script>"""


def chromium_binary() -> str:
    """The Chromium executable; skips the calling test when there is none."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(SKIP_REASON)


def run_chromium(page: Path, *args: str, budget_ms: int = 5000) -> subprocess.CompletedProcess:
    """Open ``page`` (a local file, by ``file://`` URL) with extra ``args``; a fresh profile each time."""
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="ccreid-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args,
               page.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(cmd)}")
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2000) -> np.ndarray:
    """A ``width`` x ``height`` screenshot of the top of ``page``, as an RGB array."""
    run_chromium(page, f"--screenshot={out}", f"--window-size={width},{height}")
    assert out.is_file(), f"chromium wrote no screenshot to {out}"
    return np.asarray(Image.open(out).convert("RGB"))


def blank_reason(pixels: np.ndarray, min_colours: int = 200, min_ink: float = 0.03) -> Optional[str]:
    """Why an RGB screenshot looks blank (too few colours, too little non-white), or ``None``."""
    flat = pixels.reshape(-1, 3).astype(np.uint32)
    colours = len(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]))
    ink = float((flat.min(axis=1) < 235).mean())  # fraction of pixels that are not (near) white
    if colours < min_colours:
        return f"only {colours} distinct colours (< {min_colours})"
    if ink < min_ink:
        return f"only {ink:.1%} of the pixels are not white (< {min_ink:.0%})"
    return None


def image_status(page: Path) -> Tuple[int, List[str]]:
    """(number of ``<img>``, ``src`` of each that did not load) as Chromium saw ``page``.

    The check runs on a copy of the page beside it (same folder, so relative paths resolve
    alike) with :data:`PROBE` added; the shipped page is not changed. The copy is removed.
    """
    text = page.read_text(encoding="utf-8")
    assert "</body>" in text, f"{page} has no </body>"
    probe = page.with_name(f".probe-{uuid.uuid4().hex}.html")
    probe.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = run_chromium(probe, "--dump-dom").stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="ccreid-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe script did not run; dumped DOM starts: {dom[:300]!r}"
    result = json.loads(html.unescape(found.group(1)))
    return int(result["images"]), list(result["broken"])
