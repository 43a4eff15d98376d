"""Feature extraction and protocol evaluation of a model on a dataset's splits."""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccreid.data.records import EvalSplit, ImageRecord
from ccreid.evaluation import evaluate

METRIC_KEYS = ("rank1", "rank5", "rank10", "mAP", "queries", "queries_without_match")


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    flip: bool = True,
    progress: bool = False,
    desc: str = "extract",
) -> torch.Tensor:
    """Features of every image in ``loader`` order (flip-averaged when ``flip``), on CPU."""
    model.eval()
    chunks: List[torch.Tensor] = []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        images = batch["image"].to(device, non_blocking=True)
        feats = model(images).float()
        if flip:
            feats = (feats + model(torch.flip(images, dims=[3])).float()) / 2
        chunks.append(feats.cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def _labels(records: List[ImageRecord]) -> Dict[str, torch.Tensor]:
    return {
        "pids": torch.tensor([r.pid for r in records]),
        "camids": torch.tensor([r.camid for r in records]),
        "clothes": torch.tensor([r.clothes_id for r in records]),
    }


def evaluate_splits(
    model: nn.Module,
    splits: Dict[str, EvalSplit],
    make_loader: Callable[[List[ImageRecord]], DataLoader],
    device: torch.device,
    flip: bool = True,
    ap_mode: str = "noninterp",
    protocols: Optional[Iterable[str]] = None,
    progress: bool = False,
) -> Dict[str, dict]:
    """Score ``model`` on each protocol; every distinct image is extracted once."""
    names = [n for n in splits if protocols is None or n in set(protocols)]
    unique: Dict[str, int] = {}
    records: List[ImageRecord] = []
    for name in names:
        for rec in splits[name].query + splits[name].gallery:
            if rec.path not in unique:
                unique[rec.path] = len(records)
                records.append(rec)
    if not records:
        return {}
    feats = extract_features(model, make_loader(records), device, flip, progress)
    results: Dict[str, dict] = {}
    for name in names:
        split = splits[name]
        q_idx = torch.tensor([unique[r.path] for r in split.query], dtype=torch.long)
        g_idx = torch.tensor([unique[r.path] for r in split.gallery], dtype=torch.long)
        q, g = _labels(split.query), _labels(split.gallery)
        metrics = evaluate(
            feats[q_idx], feats[g_idx], q["pids"], g["pids"], q["camids"], g["camids"],
            q["clothes"], g["clothes"], rule=split.rule, ap_mode=ap_mode,
        )
        results[name] = {key: metrics[key] for key in METRIC_KEYS} | {"cmc": metrics.get("cmc")}
    return results
