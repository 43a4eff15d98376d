"""Losses: label-smoothed CE, batch-hard triplet, BCTri and the total objective."""

from ccreid.losses.bctri import BCTriLoss, bctri_loss
from ccreid.losses.cross_entropy import CrossEntropyLabelSmooth
from ccreid.losses.objective import TERM_NAMES, ReIDObjective
from ccreid.losses.triplet import BatchHardTripletLoss, batch_hard_triplet_loss, pairwise_distance

__all__ = [
    "BCTriLoss",
    "BatchHardTripletLoss",
    "CrossEntropyLabelSmooth",
    "ReIDObjective",
    "TERM_NAMES",
    "batch_hard_triplet_loss",
    "bctri_loss",
    "pairwise_distance",
]
