"""Ranking metrics: pure functions of features and labels (no models, no files)."""

from ccreid.evaluation.ranking import evaluate, match_masks, pairwise_distance, rank_distmat

__all__ = ["evaluate", "match_masks", "pairwise_distance", "rank_distmat"]
