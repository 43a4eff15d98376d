"""Ranking metrics, distances, re-ranking and search: pure functions of features and labels."""

from ccreid.evaluation.distance import pairwise_distance
from ccreid.evaluation.ranking import AP_MODES, RULES, evaluate, evaluate_distmat
from ccreid.evaluation.rerank import evaluate_reranked, re_rank, rerank_features
from ccreid.evaluation.search import build_index
from ccreid.evaluation.single_shot import single_gallery_shot, single_gallery_shot_distmat
from ccreid.evaluation.verification import verification_rates, verification_rates_distmat

__all__ = [
    "AP_MODES", "RULES", "build_index", "evaluate", "evaluate_distmat", "evaluate_reranked", "pairwise_distance",
    "re_rank", "rerank_features", "single_gallery_shot", "single_gallery_shot_distmat", "verification_rates",
    "verification_rates_distmat",
]
