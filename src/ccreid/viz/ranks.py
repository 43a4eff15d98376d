"""Ranked retrieval lists: a query and its top-k gallery images, per protocol.

The gallery images each protocol's rule removes (same identity and camera; for ``cc``
also same clothes, for ``sc`` other clothes) are left out, so the lists show what the
metrics score. Borders: green = same identity as the query, red = another identity;
the corner mark: filled dot = same clothes id as the query, ring = other clothes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from PIL import Image, ImageDraw

from ccreid.config import Config
from ccreid.data.manager import DataManager
from ccreid.data.records import EvalSplit, ImageRecord, Record, TrackletRecord
from ccreid.deploy import load_model
from ccreid.errors import CCReIDError
from ccreid.evaluation import evaluate, pairwise_distance
from ccreid.evaluation.ranking import valid_match
from ccreid.inference.backends import check_backend, prepare
from ccreid.inference.evaluator import extract_features, require_valid_queries
from ccreid.viz.canvas import BLUE, GREEN, RED, captioned, framed, grid, load_tile, save_png, tile_size

YELLOW = (250, 204, 21)
LEGEND = "border green/red: same/other identity; dot: same clothes, ring: other clothes"


@dataclass
class ProtocolFeatures:
    """One protocol's split with its query and gallery features."""

    name: str
    split: EvalSplit
    qf: torch.Tensor
    gf: torch.Tensor


def split_labels(records: List[ImageRecord]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pids, camids, clothes ids)`` of ``records``."""
    return (torch.tensor([r.pid for r in records]), torch.tensor([r.camid for r in records]),
            torch.tensor([r.clothes_id for r in records]))


def excluded(query: Tuple[torch.Tensor, ...], gallery: Tuple[torch.Tensor, ...], rule: str) -> torch.Tensor:
    """``[Q,G]``: gallery images the rule removes for each query (METHOD.md): same identity
    and camera; for ``cc`` also same identity and clothes, for ``sc`` same identity, other clothes."""
    (qp, qc, qcl), (gp, gc, gcl) = ((t[:, None] for t in query), (t[None, :] for t in gallery))
    return (qp == gp) & ~valid_match(rule, qc == gc, qcl == gcl)


def protocol_features(model: nn.Module, cfg: Config, device: torch.device | str,
                      protocols: Optional[Sequence[str]] = None, progress: bool = False,
                      known: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, ProtocolFeatures]:
    """Features of every test protocol's query and gallery (each distinct image extracted once by
    ``model``, a model or a network from :func:`ccreid.inference.backends.prepare`; none when
    ``known``, image path -> feature, holds them all: a run's final test features)."""
    manager = DataManager(cfg, need_parsing=False)
    splits = manager.eval_splits("test")
    unknown = [p for p in protocols or () if p not in splits]
    if unknown:
        raise CCReIDError(f"option --protocol: {', '.join(unknown)} not defined by dataset {cfg.data.name!r} "
                          f"(available: {', '.join(splits)})")
    names = [n for n in splits if protocols is None or n in protocols]
    unique: Dict[str, ImageRecord] = {}
    for name in names:
        for rec in splits[name].query + splits[name].gallery:
            unique.setdefault(rec.path, rec)
    index = {path: i for i, path in enumerate(unique)}
    if known is not None and all(path in known for path in unique):
        feats = torch.stack([known[path] for path in unique])
    else:
        feats = extract_features(model, manager.loader(list(unique.values())), device, cfg.test.flip, progress)
    out = {}
    for name in names:
        split = splits[name]
        q = feats[torch.tensor([index[r.path] for r in split.query], dtype=torch.long)]
        g = feats[torch.tensor([index[r.path] for r in split.gallery], dtype=torch.long)]
        out[name] = ProtocolFeatures(name, split, q, g)
    return out


def protocol_metrics(pf: ProtocolFeatures, ap_mode: str = "noninterp") -> dict:
    """:func:`ccreid.evaluation.evaluate` of the protocol: top-k, mAP, ``cmc`` curve, query counts
    (an error saying why when no query has a valid match)."""
    qp, qc, qcl = split_labels(pf.split.query)
    gp, gc, gcl = split_labels(pf.split.gallery)
    metrics = evaluate(pf.qf, pf.gf, qp, gp, qc, gc, qcl, gcl, rule=pf.split.rule, ap_mode=ap_mode)
    require_valid_queries(metrics, pf.name, pf.split)
    return metrics


def pick_queries(split: EvalSplit, num: int, seed: int = 0, queries: Optional[Sequence[str]] = None) -> List[int]:
    """Indices of the chosen query paths, or of ``num`` random queries (seeded, sorted) that
    have at least one true match in the gallery under the protocol's rule."""
    if queries:
        where = {str(Path(r.path).resolve()): i for i, r in enumerate(split.query)}
        missing = [q for q in queries if str(Path(q).resolve()) not in where]
        if missing:
            raise CCReIDError(f"option --queries: {missing[0]} is not a query image of this protocol")
        return [where[str(Path(q).resolve())] for q in queries]
    query, gallery = split_labels(split.query), split_labels(split.gallery)
    picked: List[int] = []
    for i in random.Random(seed).sample(range(len(split.query)), len(split.query)):
        one = tuple(t[i:i + 1] for t in query)
        if ((one[0][:, None] == gallery[0][None, :]) & ~excluded(one, gallery, split.rule)).any():
            picked.append(i)
            if len(picked) == num:
                break
    return sorted(picked)


def top_k(pf: ProtocolFeatures, query_indices: Sequence[int], k: int) -> List[List[Tuple[int, float]]]:
    """Per query, ``(gallery index, cosine distance)`` of the ``k`` nearest kept gallery images."""
    q_idx = torch.tensor(list(query_indices), dtype=torch.long)
    junk = excluded(tuple(t[q_idx] for t in split_labels(pf.split.query)), split_labels(pf.split.gallery),
                    pf.split.rule)
    dist = pairwise_distance(pf.qf[q_idx].float(), pf.gf.float())
    order = torch.sort(dist.masked_fill(junk, float("inf")), dim=1, stable=True).indices
    lists = []
    for row, ranked in enumerate(order.tolist()):
        kept = [g for g in ranked if not junk[row, g]][:k]
        lists.append([(g, float(dist[row, g])) for g in kept])
    return lists


#: frames a tracklet shows in a ranked list (evenly spaced, first and last included)
STRIP_FRAMES = 4


def record_tile(record: Record, size: Tuple[int, int]) -> np.ndarray:
    """An image's tile, or a tracklet's strip of :data:`STRIP_FRAMES` evenly spaced frames."""
    if not isinstance(record, TrackletRecord):
        return load_tile(record.path, size)
    last = record.num_frames - 1
    picks = sorted({round(i * last / (STRIP_FRAMES - 1)) for i in range(STRIP_FRAMES)})
    return np.concatenate([load_tile(record.frames[i], size) for i in picks], axis=1)


def _mark(img: Image.Image, same_clothes: bool) -> Image.Image:
    """Yellow dot (same clothes as the query) or ring (other clothes), outlined in black."""
    draw = ImageDraw.Draw(img)
    draw.ellipse((5, 5, 17, 17), outline=(0, 0, 0), width=4)
    draw.ellipse((6, 6, 16, 16), fill=YELLOW if same_clothes else None, outline=YELLOW, width=2)
    return img


def render_ranks(pf: ProtocolFeatures, query_indices: Sequence[int], k: int, size: Tuple[int, int],
                 title: str) -> Image.Image:
    """A row per query: the query (blue), then its top-k with identity borders and clothes marks."""
    rows = []
    for qi, ranked in zip(query_indices, top_k(pf, query_indices, k)):
        query = pf.split.query[qi]
        row = [captioned(framed(record_tile(query, size), BLUE), f"id {query.pid}")]
        for rank, (gi, dist) in enumerate(ranked, 1):
            gallery = pf.split.gallery[gi]
            cell = framed(record_tile(gallery, size), GREEN if gallery.pid == query.pid else RED)
            row.append(captioned(_mark(cell, gallery.clothes_id == query.clothes_id), f"{rank}: {dist:.2f}"))
        rows.append(row)
    return grid(rows, ["query", *(f"rank {r}" for r in range(1, k + 1))], f"{title} - {LEGEND}")


def viz_ranks(weights: str | Path, out_dir: str | Path, protocol: Optional[str] = None, num_queries: int = 8,
              k: int = 10, seed: int = 0, device: str | torch.device = "cpu",
              queries: Optional[Sequence[str]] = None, progress: bool = False, backend: str = "auto",
              precision: str = "fp32") -> List[Path]:
    """``ranks_<protocol>.png`` for ``protocol`` (default: every test protocol of the dataset);
    ``backend`` / ``precision``: how the network runs (:func:`ccreid.inference.backends.prepare`)."""
    if k < 1 or num_queries < 1:
        raise CCReIDError("options -k and --num-queries must be >= 1")
    check_backend(backend, precision, torch.device(device))
    model, cfg = load_model(weights, device)
    features = protocol_features(prepare(model, device, backend, precision), cfg, device,
                                 [protocol] if protocol else None, progress)
    size = tile_size(cfg.data.height, cfg.data.width)
    written = []
    for name, pf in features.items():
        picked = pick_queries(pf.split, num_queries, seed, queries)
        image = render_ranks(pf, picked, k, size, f"{cfg.model.preset}, {name.upper()} protocol")
        written.append(save_png(image, Path(out_dir) / f"ranks_{name}.png"))
    return written


def viz_cmc(weights_list: Sequence[str | Path], out_dir: str | Path, labels: Optional[Sequence[str]] = None,
            device: torch.device | str = "cpu", progress: bool = False, backend: str = "auto",
            precision: str = "fp32") -> List[Path]:
    """``cmc.png``: one panel per test protocol, one curve per checkpoint (``labels`` or presets);
    ``backend`` / ``precision`` as for :func:`viz_ranks`."""
    from ccreid.viz.plots import plot_cmc  # matplotlib: the viz extra

    if labels is not None and len(labels) != len(weights_list):
        raise CCReIDError(f"option --labels: {len(labels)} labels for {len(weights_list)} checkpoints")
    check_backend(backend, precision, torch.device(device))
    curves: Dict[str, Dict[str, List[float]]] = {}
    for i, weights in enumerate(weights_list):
        model, cfg = load_model(weights, device)
        label = labels[i] if labels else cfg.model.preset
        net = prepare(model, device, backend, precision)
        for name, pf in protocol_features(net, cfg, device, cfg.test.protocols, progress).items():
            curves.setdefault(label, {})[name] = protocol_metrics(pf, cfg.test.ap_mode)["cmc"]
    return [plot_cmc(curves, Path(out_dir) / "cmc.png")]
