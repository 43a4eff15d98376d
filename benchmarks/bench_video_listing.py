"""Listing a video dataset: ``ccreid data check`` on a million frames, time and peak RSS.

    python benchmarks/bench_video_listing.py [--frames 1000000] [--layouts mevid ccvid] [--per-tracklet 200]

Each layout is built in a temporary folder as empty files with the real naming: MEVID
(``bbox_{train,test}/<pid>/<name>``, name lists, tracklet tables, query rows; 158 identities,
a fifth of the test rows queries) and CCVID (``session<k>/<pid>_<walk>/<frame>.jpg`` folders
listed in ``{train,query,gallery}.txt``). Then, each in a fresh process (its peak RSS is the
run's own; the RSS after importing ccreid, torch included, is given too): the adapter alone (``ccreid.data.datasets.LOADERS``), and the whole ``data check``
(``ccreid.data.check.check_dataset``, the adapter included; no parsing maps, no decoding).
MEVID's frame paths come from its name lists (one existence check per frame folder); CCVID
lists each tracklet folder once (``os.scandir``); neither reads a file's metadata.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import torch

from ccreid.config import DataConfig
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text

IDENTITIES = 158  # MEVID's
LIMIT_SECONDS, LIMIT_RSS_MIB = 60, 2048


def _touch(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))


def _tracklets(frames: int, per_tracklet: int) -> int:
    """How many tracklets: two per identity at least, so every test identity has a query and a gallery one."""
    tracklets = frames // per_tracklet
    if tracklets < 2 * IDENTITIES:
        raise SystemExit(f"--frames / --per-tracklet must give at least {2 * IDENTITIES} tracklets")
    return tracklets


def build_mevid(root: Path, frames: int, per_tracklet: int) -> int:
    """A MEVID tree of ``frames`` empty frames; returns the number of tracklets."""
    tracklets = _tracklets(frames, per_tracklet)
    sides: Dict[str, list] = {"train": [], "test": []}
    for t in range(tracklets):
        pid = t % IDENTITIES
        side = "train" if pid < IDENTITIES * 2 // 3 else "test"
        count = per_tracklet + (frames - tracklets * per_tracklet if t == tracklets - 1 else 0)
        names = [f"{pid:04d}O{t % 3:03d}C{330 + t % 33:03d}T{t:05d}F{f:05d}.jpg" for f in range(count)]
        sides[side].append((names, pid, t % 3, 330 + t % 33))
    for side, tracks in sides.items():
        rows, names_all = [], []
        for names, pid, outfit, camid in tracks:
            rows.append(f"{len(names_all)} {len(names_all) + len(names) - 1} {pid} {outfit} {camid}\n")
            names_all += names
            _touch(root / f"bbox_{side}" / names[0][:4], names)
        (root / f"{side}_name.txt").write_text("".join(f"{n}\n" for n in names_all))
        (root / f"track_{side}_info.txt").write_text("".join(rows))
    (root / "query_IDX.txt").write_text("".join(f"{i}\n" for i in range(0, len(sides["test"]), 5)))
    return tracklets


def build_ccvid(root: Path, frames: int, per_tracklet: int) -> int:
    """A CCVID tree of ``frames`` empty frames; returns the number of tracklets."""
    tracklets = _tracklets(frames, per_tracklet)
    base = root / "CCVID"
    lists: Dict[str, list] = {"train": [], "query": [], "gallery": []}
    for t in range(tracklets):
        pid, walk = t % IDENTITIES + 1, t // IDENTITIES + 1
        path = f"session{walk % 3 + 1}/{pid:03d}_{walk:02d}"
        count = per_tracklet + (frames - tracklets * per_tracklet if t == tracklets - 1 else 0)
        _touch(base / path, (f"{f:05d}.jpg" for f in range(count)))
        split = "train" if pid <= IDENTITIES // 2 else ("query" if walk % 2 else "gallery")
        lists[split].append(f"{path} {pid:03d} u{walk % 2}_l0\n")
    for split, lines in lists.items():
        (base / f"{split}.txt").write_text("".join(lines))
    return tracklets


BUILDERS = {"mevid": build_mevid, "ccvid": build_ccvid}


def measure(kind: str, name: str, root: str) -> dict:
    """In a fresh process: the adapter alone (``load``) or the whole ``data check`` (``check``)."""
    import ccreid.data  # noqa: F401  (registers the adapters)
    from ccreid.data.check import check_dataset
    from ccreid.data.datasets import LOADERS

    rss_before = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    load = os.getloadavg()
    start = time.perf_counter()
    if kind == "load":
        LOADERS[name](DataConfig(name=name, root=root))
    else:
        check_dataset(name, root)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "rss_before_mib": rss_before,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "load_avg_before_after": [load, os.getloadavg()]}


def in_child(*args) -> dict:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def run_layout(name: str, frames: int, per_tracklet: int, scratch: Path) -> dict:
    root = scratch / name
    start = time.perf_counter()
    tracklets = BUILDERS[name](root, frames, per_tracklet)
    built = time.perf_counter() - start
    out = {"layout": name, "frames": frames, "tracklets": tracklets, "build_seconds": round(built, 1),
           "load": in_child("load", name, str(root)), "check": in_child("check", name, str(root))}
    shutil.rmtree(root)
    print(out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--per-tracklet", type=int, default=200, help="frames per tracklet (MEVID ~210, CCVID ~122)")
    parser.add_argument("--layouts", nargs="+", choices=sorted(BUILDERS), default=["mevid", "ccvid"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccreid-video-listing-") as scratch:
        runs = [run_layout(name, args.frames, args.per_tracklet, Path(scratch)) for name in args.layouts]
    table = ["| layout | frames | tracklets | build (s) | adapter (s) | adapter peak RSS (MiB) | data check (s) "
             "| data check peak RSS (MiB) | RSS after imports (MiB) | load avg (1 min) before / after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['layout']} | {r['frames']:,} | {r['tracklets']:,} | {r['build_seconds']} | {r['load']['seconds']} "
              f"| {r['load']['peak_rss_mib']:,} | {r['check']['seconds']} | {r['check']['peak_rss_mib']:,} "
              f"| {r['check']['rss_before_mib']:,} "
              f"| {r['check']['load_avg_before_after'][0][0]:.1f} / {r['check']['load_avg_before_after'][1][0]:.1f} |"
              for r in runs]
    within = all(r["check"]["seconds"] < LIMIT_SECONDS and r["check"]["peak_rss_mib"] < LIMIT_RSS_MIB for r in runs)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    text = (f"# Video dataset listing\n\n{__doc__.split(chr(10) * 2, 2)[2].strip()}\n\n"
            f"Command: `{command}`; {args.per_tracklet} frames per tracklet.\n\n" + "\n".join(table) + "\n\n"
            f"Target: under {LIMIT_SECONDS} s and {LIMIT_RSS_MIB} MiB for the whole data check: "
            f"{'met' if within else 'NOT met'}. {os.cpu_count()} CPU cores, shared with other jobs: see the load "
            "averages (all three in video_listing.json).\n")
    out = Path(args.out)
    machine = machine_info(torch.device("cpu")) | {"load_avg": os.getloadavg()}
    write_json(out / "video_listing.json", {"command": command, "runs": runs, "machine": machine})
    write_text(out / "video_listing.md", text)


if __name__ == "__main__":
    main()
