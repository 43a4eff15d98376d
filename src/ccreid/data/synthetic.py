"""The embedded synthetic clothes-changing dataset: generator (``ccreid synth``) and adapter.

Folder layout written by :func:`generate`::

    root/images/<pid>/<pid>_<clothes>_c<cam>_<n>.jpg      RGB (JPEG, quality 95)
    root/parsing/<pid>/<pid>_<clothes>_c<cam>_<n>.png     LIP labels, single channel PNG
    root/manifest.csv   path,pid,camid,clothes_id,split,parsing_path (relative paths)
    root/meta.json      generation options (the cache key)

Identities are split train 50 % / val 10 % (at least 2) / test (the rest) of ``ids``, and
``extra_test_ids`` more identities join the test split (a larger test set at the same
training cost; the first ``ids`` identities render identically either way). PRCC-like:
for val and test identities the gallery is outfit 0 from cameras 0 and 1, the
same-clothes (SC) queries are outfit 0 from camera 2 and the clothes-changing (CC)
queries are the other outfits from camera 3, so a CC query's outfit never appears in
that person's gallery. Training identities show every outfit from random cameras.
:func:`render_cached` (reuse, refusal, render into a hidden folder then rename) also makes
the video benchmark (:mod:`ccreid.data.synthetic_video`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccreid.config import DataConfig
from ccreid.data.manifest import int_cell, read_rows
from ccreid.data.records import EvalSplit, ImageRecord, ReIDDataset, relabel
from ccreid.data.registry import DATASETS
from ccreid.data.synthetic_render import NUM_CAMERAS, Identity, Outfit, render, sample_identity, sample_outfit
from ccreid.errors import CCReIDError

FORMAT_VERSION = 1
SPLITS = ("train", "val_gallery", "val_query_sc", "val_query_cc", "gallery", "query_sc", "query_cc")
RENDER_PID = "render.pid"  # inside a render folder: the rendering process
FIELDS = ("path", "pid", "camid", "clothes_id", "split", "parsing_path")


def split_identities(ids: int, extra_test_ids: int = 0) -> Tuple[range, range, range]:
    """Train, val and test person ids (disjoint, contiguous; test ends at ``ids + extra_test_ids``)."""
    if ids < 6:
        raise CCReIDError(f"option --ids: {ids} is too few (at least 6: train, val and test identities)")
    if extra_test_ids < 0:
        raise CCReIDError(f"option --extra-test-ids: {extra_test_ids} is negative; use 0 or more")
    n_train, n_val = ids // 2, max(2, ids // 10)
    return range(n_train), range(n_train, n_train + n_val), range(n_train + n_val, ids + extra_test_ids)


def training_cameras(seed: int, pid: int, count: int) -> np.ndarray:
    """The random cameras of a training identity's ``count`` images (or tracklets), outfit after outfit."""
    return np.random.default_rng([seed, pid, 31337]).integers(0, NUM_CAMERAS, count)


def cast(seed: int, people: int, outfits: int) -> Tuple[List[Identity], List[List[Outfit]]]:
    """Persons ``0..people-1`` of ``seed`` and their ``outfits`` outfits each."""
    pids = range(people)
    return ([sample_identity(np.random.default_rng([seed, pid, 1])) for pid in pids],
            [[sample_outfit(np.random.default_rng([seed, pid, 2, o])) for o in range(outfits)] for pid in pids])


def plan(ids: int, outfits: int, images_per_outfit: int, seed: int,
         extra_test_ids: int = 0) -> Iterator[Tuple[int, int, int, int, str]]:
    """Every image to render as ``(pid, outfit, camera, n, split)``."""
    train, val, test = split_identities(ids, extra_test_ids)
    n_query = max(1, images_per_outfit // 2)
    for pid in range(test.stop):
        if pid in train:
            cams = training_cameras(seed, pid, outfits * images_per_outfit)
            for o in range(outfits):
                for n in range(images_per_outfit):
                    yield pid, o, int(cams[o * images_per_outfit + n]), n, "train"
            continue
        prefix = "val_" if pid in val else ""
        for n in range(images_per_outfit):
            yield pid, 0, n % 2, n, prefix + "gallery"
        for n in range(n_query):
            yield pid, 0, 2, images_per_outfit + n, prefix + "query_sc"
        for o in range(1, outfits):
            for n in range(n_query):
                yield pid, o, 3, n, prefix + "query_cc"


def _options(ids: int, outfits: int, images_per_outfit: int, height: int, width: int, seed: int,
             extra_test_ids: int) -> dict:
    options = {"format": FORMAT_VERSION, "ids": ids, "outfits": outfits, "images_per_outfit": images_per_outfit,
               "height": height, "width": width, "seed": seed}
    if extra_test_ids:  # absent when 0, so folders made before the option existed stay valid
        options["extra_test_ids"] = extra_test_ids
    return options


def generate(root: str | Path, ids: int = 120, outfits: int = 3, images_per_outfit: int = 6, height: int = 128,
             width: int = 64, seed: int = 0, progress: bool = False, extra_test_ids: int = 0) -> Path:
    """Render the dataset into ``root`` (reused when it exists with the same options)."""
    root = Path(root)
    split_identities(ids, extra_test_ids)
    options = _options(ids, outfits, images_per_outfit, height, width, seed, extra_test_ids)
    if outfits < 2:
        raise CCReIDError(f"option --outfits: {outfits} is too few (clothes changing needs at least 2)")
    if images_per_outfit < 1 or height < 32 or width < 16:
        raise CCReIDError("options --images-per-outfit >= 1 and --size at least 32x16 are required")
    return render_cached(root, options, lambda out: _render_all(out, options, progress))


def render_cached(root: Path, options: dict, render: Callable[[Path], None]) -> Path:
    """``root`` as a synthetic dataset made with ``options``: reused when its ``meta.json`` records
    them, refused when it records others or ``root`` holds anything else; otherwise ``render(folder)``
    fills a hidden sibling folder, ``meta.json`` is written and the folder renamed to ``root``."""
    if root.is_file():
        raise CCReIDError(f"{root} is a file, not a folder; choose a folder for the synthetic dataset (ccreid synth "
                          "--out, or the config key data.root)")
    meta = root / "meta.json"
    if meta.is_file():
        if _made_with(meta, options):
            return root
        raise CCReIDError(f"{root} holds a synthetic dataset made with other options ({meta}); "
                          f"choose another folder (ccreid synth --out, or the config key data.root) or delete it")
    if root.exists() and any(root.iterdir()):
        raise CCReIDError(f"{root} exists and is not a synthetic dataset (no meta.json); choose an empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_renders(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    (tmp / RENDER_PID).write_text(f"{os.getpid()}\n")
    try:
        render(tmp)
        (tmp / "meta.json").write_text(json.dumps(options, indent=2) + "\n")
        (tmp / RENDER_PID).unlink()
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
    except OSError:
        if not (meta.is_file() and _made_with(meta, options)):
            raise
        # another process rendered the same dataset meanwhile (renders are deterministic)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def _remove_stale_renders(root: Path) -> None:
    """Hidden render folders of ``root`` left by killed processes (their pid is gone)."""
    for folder in root.parent.glob(f".{root.name}.*"):
        try:
            pid = int((folder / RENDER_PID).read_text())
            os.kill(pid, 0)
            continue  # still rendering
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        except (OSError, ValueError):
            pass  # no readable pid file: not a render in progress
        shutil.rmtree(folder, ignore_errors=True)


def read_json(meta: Path) -> object:
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise CCReIDError(f"{meta} is damaged ({type(err).__name__}); delete {meta.parent} to generate it again")


def read_meta(meta: Path) -> dict:
    """The generation options recorded in a dataset's ``meta.json`` (one-line error when damaged)."""
    options = read_json(meta)
    if not isinstance(options, dict) or not {"ids", "outfits", "images_per_outfit", "height", "width",
                                             "seed"} <= set(options):
        raise CCReIDError(f"{meta} lacks the image benchmark's generation options (another dataset, such as the "
                          f"video benchmark, or a damaged one); set data.root to another folder, or delete "
                          f"{meta.parent} to generate it again")
    return options


def _made_with(meta: Path, options: dict) -> bool:
    """Whether the dataset whose ``meta.json`` is ``meta`` was generated with ``options``."""
    return read_json(meta) == options


def _render_all(out: Path, options: dict, progress: bool) -> None:
    ids, outfits, seed = options["ids"], options["outfits"], options["seed"]
    extra, height, width = options.get("extra_test_ids", 0), options["height"], options["width"]
    people, wardrobe = cast(seed, ids + extra, outfits)
    rows: List[Dict[str, object]] = []
    jobs = list(plan(ids, outfits, options["images_per_outfit"], seed, extra))
    for pid, o, cam, n, split in tqdm(jobs, desc="synth", disable=not progress, unit="img"):
        clothes = pid * outfits + o
        stem = f"{pid:04d}/{pid:04d}_{clothes:05d}_c{cam}_{n:03d}"
        rng = np.random.default_rng([seed, pid, o, cam, n])
        rgb, labels = render(people[pid], wardrobe[pid][o], cam, rng, height, width, seed)
        if n == 0 and o == 0:
            (out / "images" / stem).parent.mkdir(parents=True, exist_ok=True)
            (out / "parsing" / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(out / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(labels).save(out / "parsing" / f"{stem}.png", compress_level=1)
        rows.append({"path": f"images/{stem}.jpg", "pid": pid, "camid": cam, "clothes_id": clothes, "split": split,
                     "parsing_path": f"parsing/{stem}.png"})
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(root: str | Path) -> Dict[str, List[ImageRecord]]:
    """Records per split from ``root/manifest.csv`` (absolute paths, files checked)."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise CCReIDError(f"no manifest.csv in {root}; run `ccreid synth --out {root}` or fix data.root")
    splits: Dict[str, List[ImageRecord]] = {name: [] for name in SPLITS}
    for line, row in read_rows(manifest, FIELDS, ",".join(FIELDS)):
        if row.get("split") not in splits:
            raise CCReIDError(f"{manifest} line {line}: malformed row (expected columns {', '.join(FIELDS)})")
        path, parsing = root / row["path"], root / row["parsing_path"]
        record = ImageRecord(str(path), int_cell(row, "pid", line, manifest), int_cell(row, "camid", line, manifest),
                             int_cell(row, "clothes_id", line, manifest), str(parsing))
        splits[row["split"]].append(record)
        for file in (path, parsing):
            if not file.is_file():
                raise CCReIDError(f"{manifest} line {line}: file {file} not found; delete {root} to regenerate")
    return splits


def _protocols(splits: Dict[str, List[ImageRecord]], prefix: str) -> Dict[str, EvalSplit]:
    gallery, sc, cc = splits[prefix + "gallery"], splits[prefix + "query_sc"], splits[prefix + "query_cc"]
    return {"general": EvalSplit(sc + cc, gallery, "general"), "sc": EvalSplit(sc, gallery, "sc"),
            "cc": EvalSplit(cc, gallery, "cc")}


@DATASETS.register("synthetic")
def load_synthetic(cfg: DataConfig) -> ReIDDataset:
    """The synthetic dataset at ``cfg.root``: a folder that holds one is used as it is (its
    ``meta.json`` is the truth, copied into ``cfg.synthetic`` so the run's config records it);
    only a missing one is generated from ``cfg.synthetic``."""
    s = cfg.synthetic
    meta = Path(cfg.root) / "meta.json"
    if meta.is_file():
        made = read_meta(meta)
        s.ids, s.outfits, s.images_per_outfit = made["ids"], made["outfits"], made["images_per_outfit"]
        s.height, s.width, s.seed = made["height"], made["width"], made["seed"]
        s.extra_test_ids = made.get("extra_test_ids", 0)
    generate(cfg.root, s.ids, s.outfits, s.images_per_outfit, s.height, s.width, s.seed,
             extra_test_ids=s.extra_test_ids)
    splits = read_manifest(cfg.root)
    return ReIDDataset("synthetic", relabel(splits["train"]), _protocols(splits, ""), _protocols(splits, "val_"), "lip")
