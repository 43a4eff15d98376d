"""Metrics of a stored features file (``ccreid eval --features``)."""

from __future__ import annotations

from pathlib import Path

from ccreid.engine.evaluator import METRIC_KEYS
from ccreid.engine.features_io import load_features
from ccreid.evaluation import evaluate, evaluate_reranked
from ccreid.evaluation.aqe import alpha_query_expansion


def evaluate_feature_file(
    path: str | Path,
    protocol: str = "general",
    metric: str = "cosine",
    ap_mode: str = "noninterp",
    rerank: bool = False,
    memory_mb: float = 512,
    aqe: bool = False,
    rerank_params: tuple = (20, 6, 0.3),
) -> dict:
    """``rank1/5/10``, ``mAP``, ``mINP`` (percent), ``queries``, ``queries_without_match`` and
    ``cmc`` (the CMC curve to rank 50, percent) of the file.

    The metrics are streamed in chunks fitted to ``memory_mb``; ``rerank`` (k-reciprocal,
    default parameters) needs the full distance matrices and so suits galleries up to ~20k;
    ``aqe`` applies alpha query expansion (fast-reid's defaults) first; ``rerank_params`` are
    re-ranking's ``(k1, k2, lambda)``.
    """
    arrays = load_features(path, require_clothes=protocol != "general")
    qf, gf = arrays["qf"], arrays["gf"]
    if aqe:
        qf, gf = alpha_query_expansion(qf, gf)
    labels = {key: arrays.get(key) for key in ("q_pids", "g_pids", "q_camids", "g_camids", "q_clothes", "g_clothes")}
    if rerank:
        k1, k2, lambda_value = rerank_params
        metrics = evaluate_reranked(qf, gf, **labels, rule=protocol, metric=metric, ap_mode=ap_mode,
                                    memory_mb=memory_mb, k1=k1, k2=k2, lambda_value=lambda_value)
    else:
        metrics = evaluate(qf, gf, **labels, rule=protocol, metric=metric, ap_mode=ap_mode, memory_mb=memory_mb)
    return {key: metrics[key] for key in METRIC_KEYS} | {"cmc": metrics["cmc"]}
