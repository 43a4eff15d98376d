"""Metrics of a stored features file (``ccreid eval --features``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ccreid.errors import CCReIDError
from ccreid.evaluation import evaluate, evaluate_distmat, rerank_features
from ccreid.evaluation.aqe import alpha_query_expansion
from ccreid.evaluation.ranking import no_match_reason
from ccreid.evaluation.single_shot import single_gallery_shot, single_gallery_shot_distmat
from ccreid.evaluation.verification import verification_rates, verification_rates_distmat
from ccreid.inference.evaluator import METRIC_KEYS
from ccreid.runs.features_io import load_features


def evaluate_feature_file(
    path: str | Path,
    protocol: Optional[str] = None,
    metric: str = "cosine",
    ap_mode: str = "noninterp",
    rerank: bool = False,
    memory_mb: float = 512,
    aqe: bool = False,
    rerank_params: tuple = (20, 6, 0.3),
    rerank_impl: str = "auto",
    roc: bool = False,
    single_shot: int = 0,
    seed: int = 0,
) -> dict:
    """``rank1/5/10``, ``mAP``, ``mINP`` (percent), ``queries``, ``queries_without_match``,
    ``cmc`` (the CMC curve to rank 50, percent) and ``protocol`` of the file.

    ``protocol``: the rule; ``None``: the one the file was extracted for, else ``general``
    (:func:`~ccreid.runs.features_io.features_protocol`). No query with a valid match, or
    ``roc`` without negative pairs, is a one-line error saying why.

    The metrics are streamed in chunks fitted to ``memory_mb``. ``rerank``: k-reciprocal
    re-ranking with ``rerank_params`` ``(k1, k2, lambda)``; ``rerank_impl`` ``dense`` holds
    ``(Q+G)^2`` matrices (up to ~20k images, ``rerank.DENSE_LIMIT``), ``sparse`` FAISS k-NN
    lists and one ``Q x G`` matrix (same result), ``auto`` picks by size. ``aqe``: alpha
    query expansion (fast-reid's defaults) first. ``roc`` adds ``tpr@fpr=1e-04/1e-03/1e-02``
    with ``positive_pairs`` and ``negative_pairs``; ``single_shot`` N > 0 replaces the
    rank-k and CMC by CUHK03's single-gallery-shot ones (N draws from ``seed``; mAP and
    mINP stay those of the whole gallery, as in torchreid) and adds ``single_gallery_shot``
    and ``seed``.
    """
    protocol, arrays = load_features(path, protocol)
    qf, gf = arrays["qf"], arrays["gf"]
    if aqe:
        qf, gf = alpha_query_expansion(qf, gf)
    labels = {key: arrays.get(key) for key in ("q_pids", "g_pids", "q_camids", "g_camids", "q_clothes", "g_clothes")}
    common = dict(labels, rule=protocol, memory_mb=memory_mb)
    if rerank:
        dist = rerank_features(qf, gf, metric, *rerank_params, impl=rerank_impl)
        metrics = evaluate_distmat(dist, **common, ap_mode=ap_mode)
        shot = single_gallery_shot_distmat(dist, **common, repeats=single_shot, seed=seed) if single_shot else None
        rates = verification_rates_distmat(dist, **common) if roc else {}
    else:
        metrics = evaluate(qf, gf, **common, metric=metric, ap_mode=ap_mode)
        shot = single_gallery_shot(qf, gf, **common, metric=metric, repeats=single_shot, seed=seed) \
            if single_shot else None
        rates = verification_rates(qf, gf, **common, metric=metric) if roc else {}
    _check_defined(path, protocol, metrics, rates, labels)
    result = {key: metrics[key] for key in METRIC_KEYS} | {"cmc": metrics["cmc"], "protocol": protocol}
    if shot is not None:
        result |= {key: shot[key] for key in ("rank1", "rank5", "rank10", "cmc")}
        result |= {"single_gallery_shot": single_shot, "seed": seed}
    return result | rates


def _check_defined(path: str | Path, protocol: str, metrics: dict, rates: dict, labels: dict) -> None:
    """One-line errors for metrics that do not exist: no query with a valid match (every metric
    would read 0), TPR at a false-positive rate without negative pairs (it would read 100)."""
    if metrics["queries"] == 0:
        raise CCReIDError(f"features file {path}, {protocol} protocol: "
                          f"{no_match_reason(protocol, labels['q_pids'], labels['g_pids'])}; check the file's "
                          "pid/camid/clothes ids, or evaluate with another --protocol")
    if rates and rates["negative_pairs"] == 0:
        raise CCReIDError(f"option --roc: features file {path} has no negative pairs (every gallery image shares "
                          "the query's person id), so no false-positive rate exists; evaluate a gallery with other "
                          "identities, or drop --roc")
