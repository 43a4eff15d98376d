"""Batched feature extraction to a features file (``ccreid extract``).

Sources:

- a folder: every image below it (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``), sorted by
  path; no labels, so every image is a gallery row;
- a CSV with a ``path`` column (relative to the CSV's folder) and optionally ``pid``,
  ``camid``, ``clothes_id`` and ``split``: rows with ``split=query`` become query rows,
  ``gallery`` (or no split column) gallery rows, other splits are left out;
- a protocol of the checkpoint's dataset (``protocol="cc"`` ...): its query and gallery
  with every label and the protocol's rule, so ``ccreid eval`` on the file reproduces
  ``ccreid test``; of a video checkpoint, one row per tracklet (the mean of its test clips'
  features), its first frame as its path and its frame count in ``q_frames`` / ``g_frames``.

Features are L2-normalised (flip-averaged unless ``flip=False``), float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ccreid.data.dataset import ReIDImageDataset
from ccreid.data.manager import DataManager
from ccreid.data.manifest import int_cell, read_rows
from ccreid.data.records import ImageRecord, is_video
from ccreid.data.transforms import build_test_transform
from ccreid.deploy import load_model
from ccreid.errors import CCReIDError
from ccreid.inference.backends import check_backend, prepare
from ccreid.inference.evaluator import extract_all
from ccreid.runs.features_io import PROTOCOL_KEY, save_features
from ccreid.runtime.distributed import DistInfo, setup

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
LABEL_COLUMNS = {"pid": "pids", "camid": "camids", "clothes_id": "clothes"}
UNKNOWN = -1


@dataclass
class ImageTable:
    """Image paths per side (``q``/``g``) and the label columns the source knows."""

    paths: Dict[str, List[str]] = field(default_factory=lambda: {"q": [], "g": []})
    labels: Dict[str, Dict[str, List[int]]] = field(default_factory=lambda: {"q": {}, "g": {}})

    def records(self, side: str) -> List[ImageRecord]:
        """Records of one side; unknown labels are ``-1``."""
        paths, cols = self.paths[side], self.labels[side]
        pids, camids, clothes = (cols.get(key, [UNKNOWN] * len(paths)) for key in LABEL_COLUMNS.values())
        return [ImageRecord(*row) for row in zip(paths, pids, camids, clothes)]


def images_in_folder(folder: Path) -> ImageTable:
    """Every image below ``folder``, sorted, as gallery rows."""
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CCReIDError(f"--images: no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    table = ImageTable()
    table.paths["g"] = paths
    return table


def images_in_csv(path: Path) -> ImageTable:
    """Rows of a CSV manifest (see the module docstring)."""
    table = ImageTable()
    for line, row in read_rows(path, ["path"], "path[,pid,camid,clothes_id,split]"):
        side = {"query": "q", "gallery": "g"}.get(row.get("split") or "gallery")
        if side is None:
            continue
        image = path.parent / row["path"]
        if not image.is_file():
            raise CCReIDError(f"{path} line {line}: image {image} does not exist")
        table.paths[side].append(str(image))
        for column in LABEL_COLUMNS:
            if column in row:
                table.labels[side].setdefault(LABEL_COLUMNS[column], []).append(int_cell(row, column, line, path))
    if not table.paths["g"]:
        raise CCReIDError(f"{path} has no gallery rows (split=gallery, or no split column)")
    return table


def image_table(source: str | Path) -> ImageTable:
    """The images of a folder or a CSV file."""
    source = Path(source)
    if source.is_dir():
        return images_in_folder(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return images_in_csv(source)
    raise CCReIDError(f"--images: {source} is neither a folder of images nor a .csv file")


def extract_to_file(
    weights: str | Path,
    out: str | Path,
    images: Optional[str | Path] = None,
    protocol: Optional[str] = None,
    overrides: Sequence[str] = (),
    flip: Optional[bool] = None,
    batch_size: Optional[int] = None,
    workers: int = 0,
    device: str = "auto",
    progress: bool = False,
    backend: str = "auto",
    precision: str = "fp32",
) -> Dict[str, int]:
    """Extract the features of ``images`` or of the dataset's ``protocol`` into ``out`` (.npz).

    ``backend`` / ``precision``: how the network runs (:func:`ccreid.inference.backends.prepare`).
    Under ``torchrun`` each process extracts a share of the images (or tracklets) and process 0
    writes the file. Returns the number of query and gallery rows written.
    """
    if (images is None) == (protocol is None):
        raise CCReIDError("pass exactly one of --images DIR|CSV and --protocol NAME")
    info = setup(device, option="--device")
    try:
        return _extract(info, weights, out, images, protocol, overrides, flip, batch_size, workers, progress,
                        backend, precision)
    finally:
        info.close()


def _extract(info: DistInfo, weights: str | Path, out: str | Path, images: Optional[str | Path],
             protocol: Optional[str], overrides: Sequence[str], flip: Optional[bool], batch_size: Optional[int],
             workers: int, progress: bool, backend: str, precision: str) -> Dict[str, int]:
    resolved = info.device
    check_backend(backend, precision, resolved)
    model, cfg = load_model(weights, resolved, overrides)
    flip = cfg.test.flip if flip is None else flip
    if images is not None and cfg.model.video is not None:
        raise CCReIDError(f"weights file {weights} is a video model: it extracts tracklets of its dataset "
                          "(--protocol NAME), or use ccreid.load(weights).embed_tracklet(frames)")
    cfg.data.workers = workers
    manager = DataManager(cfg, need_parsing=False) if protocol is not None else None
    if manager is not None:
        splits = manager.eval_splits("test")
        if protocol not in splits:
            raise CCReIDError(f"--protocol: dataset {cfg.data.name!r} defines {', '.join(splits)}, not {protocol!r}")
        sides = {"q": splits[protocol].query, "g": splits[protocol].gallery}
        known = {side: set(LABEL_COLUMNS.values()) for side in sides}
        recorded = {PROTOCOL_KEY: np.array(splits[protocol].rule)}
    else:
        table = image_table(images)
        sides = {side: table.records(side) for side in ("q", "g") if table.paths[side]}
        known = {side: set(table.labels[side]) for side in sides}
        recorded = {}
    transform = build_test_transform(cfg.data.height, cfg.data.width)
    net = prepare(model, resolved, backend, precision)
    arrays: Dict[str, np.ndarray] = dict(recorded)
    size = batch_size or cfg.test.batch_size
    make_loader = (lambda shard: manager.loader(shard, size)) if manager is not None else (
        lambda shard: torch.utils.data.DataLoader(ReIDImageDataset(shard, transform, need_parsing=False),
                                                  batch_size=size, num_workers=workers))
    for side, records in sides.items():
        feats = extract_all(net, records, make_loader, resolved, flip, progress and info.is_main)
        arrays[f"{side}f"] = F.normalize(feats, dim=1).numpy().astype(np.float32)
        arrays[f"{side}_paths"] = np.array([r.path for r in records])  # a tracklet: its first frame
        if is_video(records):
            arrays[f"{side}_frames"] = np.array([r.num_frames for r in records], dtype=np.int64)
        for attr, key in LABEL_COLUMNS.items():  # the CSV columns are ImageRecord's attribute names
            if key in known[side]:
                arrays[f"{side}_{key}"] = np.array([getattr(r, attr) for r in records], dtype=np.int64)
    if info.is_main:
        save_features(out, **arrays)
    return {"query": len(sides.get("q", ())), "gallery": len(sides["g"])}
