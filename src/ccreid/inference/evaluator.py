"""Feature extraction and protocol evaluation of a model on a dataset's splits.

Under ``torchrun`` every rank extracts the features of a 1/world_size share of the
images and the shares are all-gathered, so each rank computes the same metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccreid.config import TestConfig
from ccreid.data.clips import ReIDClipDataset
from ccreid.data.datasets import single_shot_galleries
from ccreid.data.records import EvalSplit, ImageRecord
from ccreid.errors import CCReIDError
from ccreid.evaluation import evaluate, evaluate_reranked
from ccreid.evaluation.aqe import alpha_query_expansion
from ccreid.evaluation.ranking import no_match_reason
from ccreid.inference.backends import InferenceNet, embed, prepare
from ccreid.runs.features_io import save_test_features
from ccreid.runs.results import METRICS, SINGLE_SHOT_KEY
from ccreid.runtime.distributed import current, gather_rows

METRIC_KEYS = (*METRICS, "queries", "queries_without_match")


def extract_features(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    flip: bool = True,
    progress: bool = False,
    desc: str = "extract",
) -> torch.Tensor:
    """Features of every image in ``loader`` order (flip-averaged when ``flip``), on CPU; of a loader of
    clips (:class:`~ccreid.data.clips.ReIDClipDataset`), one per tracklet: the mean of its clips' features,
    L2-normalised (Simple-CCReID).

    ``model``: a network from :func:`ccreid.inference.backends.prepare`, or a model, which is then
    prepared with the torch backend (an optimised eval copy: the model itself is not changed)."""
    net = model if isinstance(model, InferenceNet) else prepare(model, device)
    clips = isinstance(getattr(loader, "dataset", None), ReIDClipDataset)
    chunks: List[torch.Tensor] = []
    owners: List[torch.Tensor] = []  # clips: each one's tracklet
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        chunks.append(embed(net, batch["image"], flip, batch["camid"] if net.uses_camids else None).cpu())
        owners += [batch["index"]] if clips else []
    feats = torch.cat(chunks) if chunks else torch.empty(0)
    return tracklet_features(feats, torch.cat(owners), len(loader.dataset.records)) if clips else feats


def tracklet_features(clip_feats: torch.Tensor, owners: torch.Tensor, num_tracklets: int) -> torch.Tensor:
    """One feature per tracklet: the mean of the features of its clips (``owners``: each clip's
    tracklet), L2-normalised."""
    sums = clip_feats.new_zeros(num_tracklets, clip_feats.shape[1]).index_add_(0, owners, clip_feats)
    counts = torch.bincount(owners, minlength=num_tracklets).clamp(min=1).to(clip_feats.dtype)
    return F.normalize(sums / counts[:, None], dim=1)


def extract_all(
    model: nn.Module,
    records: List[ImageRecord],
    make_loader: Callable[[List[ImageRecord]], DataLoader],
    device: torch.device,
    flip: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Features of ``records`` in order; shared out over the ranks of a distributed job."""
    info = current()
    if not info.enabled:
        return extract_features(model, make_loader(records), device, flip, progress)
    share = -(-len(records) // info.world_size)
    padded = (records * info.world_size)[: share * info.world_size]  # equal shares for all_gather
    mine = extract_features(model, make_loader(padded[info.rank :: info.world_size]), device, flip,
                            progress and info.is_main)
    return gather_rows(mine, len(records), info)


def _labels(records: List[ImageRecord]) -> Dict[str, torch.Tensor]:
    return {
        "pids": torch.tensor([r.pid for r in records]),
        "camids": torch.tensor([r.camid for r in records]),
        "clothes": torch.tensor([r.clothes_id for r in records]),
    }


def _score(feats: torch.Tensor, unique: Dict[str, int], query: List[ImageRecord], gallery: List[ImageRecord],
           rule: str, test: TestConfig) -> dict:
    q_idx = torch.tensor([unique[r.path] for r in query], dtype=torch.long)
    g_idx = torch.tensor([unique[r.path] for r in gallery], dtype=torch.long)
    q, g = _labels(query), _labels(gallery)
    labels = (q["pids"], g["pids"], q["camids"], g["camids"], q["clothes"], g["clothes"])
    qf, gf = feats[q_idx], feats[g_idx]
    if test.aqe:
        qf, gf = alpha_query_expansion(qf, gf)
    score = evaluate_reranked if test.rerank else evaluate
    return score(qf, gf, *labels, rule=rule, ap_mode=test.ap_mode)


def require_valid_queries(metrics: dict, name: str, split: EvalSplit) -> None:
    """A one-line error saying why when no query of protocol ``name`` has a valid match (every
    metric would read 0)."""
    if metrics["queries"] == 0:
        reason = no_match_reason(split.rule, [r.pid for r in split.query], [r.pid for r in split.gallery])
        raise CCReIDError(f"protocol {name!r} ({split.rule} rule): {reason}; check the dataset's person, camera "
                          f"and clothes ids, or leave the protocol out (test.protocols=[...])")


def _mean(runs: List[dict]) -> dict:
    """Metrics averaged over single-shot galleries (query counts from the first)."""
    out = {key: sum(r[key] for r in runs) / len(runs) for key in METRICS}
    out["cmc"] = torch.tensor([r["cmc"] for r in runs]).mean(0).tolist() if runs[0].get("cmc") else None
    return runs[0] | out


def evaluate_splits(
    model: nn.Module,
    splits: Dict[str, EvalSplit],
    make_loader: Callable[[List[ImageRecord]], DataLoader],
    device: torch.device,
    test: TestConfig,
    protocols: Optional[Iterable[str]] = None,
    progress: bool = False,
    features_out: Optional[Path] = None,
) -> Dict[str, dict]:
    """Score ``model`` on each protocol; every distinct image is extracted once (and, with
    ``features_out``, kept there by the main process: :func:`ccreid.runs.features_io.save_test_features`).

    ``test``: flip averaging, AP mode, k-reciprocal re-ranking (``test.rerank``) and
    ``test.single_shot`` (N > 0: the mean over N galleries of one random image per
    identity, PRCC's original single-shot protocol with N = 10; 0: the whole gallery).
    A protocol whose queries have no valid match is a one-line error saying why.
    """
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
    feats = extract_all(model, records, make_loader, device, test.flip, progress)
    if features_out is not None and current().is_main:
        save_test_features(features_out, list(unique), feats, test.flip)
    results: Dict[str, dict] = {}
    for name in names:
        split = splits[name]
        galleries = single_shot_galleries(split.gallery, test.single_shot) if test.single_shot else [split.gallery]
        metrics = _mean([_score(feats, unique, split.query, gallery, split.rule, test) for gallery in galleries])
        require_valid_queries(metrics, name, split)
        results[name] = {key: metrics[key] for key in METRIC_KEYS} | {"cmc": metrics.get("cmc")} | (
            {SINGLE_SHOT_KEY: test.single_shot} if test.single_shot else {})
    return results
