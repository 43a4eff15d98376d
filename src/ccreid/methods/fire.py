"""FIRe² building blocks (Wang et al., TIFS 2024; code QizaoWang/FIRe-CCReID), as the official code computes them.

- **FAR** (fine-grained attribute recomposition): the backbone's last feature map is cut into
  :data:`PARTS` horizontal parts; each part's per-channel mean and standard deviation
  (detached) are swapped for those of a sample drawn from another fine-grained class
  (:func:`far_donors`, :func:`recompose`); the recomposed map goes through its own pooling,
  BNNeck and identity classifier (:class:`FARBranch`).
- **FFM** (fine-grained feature mining): at the start of each clustered epoch the training
  features are clustered per identity (:func:`cluster_identities`: DBSCAN on the k-reciprocal
  Jaccard distance), a cosine classifier starts from the cluster centres
  (:func:`fine_classifier`) and is trained with :func:`attribute_aware_loss`.

These are pure parts: the trainer hooks that run them per epoch are not wired yet, so no
``fire`` preset is registered (docs/METHOD.md, "FIRe²").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.evaluation.rerank import jaccard_distance
from ccreid.methods.cal import CosineClassifier
from ccreid.models.heads import BNNeckHead

#: Horizontal parts of the feature map recomposed by FAR (official ``P_parts``); one donor per part (``K_times``).
PARTS = 2
#: Added to the variance before its square root (official ``var + 1e-6``).
STAT_EPS = 1e-6


def is_clustered_epoch(epoch: int, start_epoch: int = 25) -> bool:
    """Whether 0-based ``epoch`` clusters and trains FFM, FAR and the triplet loss. The official
    ``train(args, epoch + 1, ...)`` tests ``epoch + 1 > fg_start_epoch``: 0-based ``epoch >= start``."""
    return epoch >= start_epoch


def far_donors(fine_labels: torch.Tensor, parts: int = PARTS,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``[parts, B]`` donor of each sample, drawn afresh for every part, uniformly among the
    batch's samples of another fine-grained class (``torch.multinomial`` over that mask, as
    the official code draws it, from ``generator`` or the default one)."""
    other = (fine_labels[:, None] != fine_labels[None, :]).float()
    if not bool(other.any(1).all()):
        raise CCReIDError("FIRe² FAR: every sample needs another fine-grained class in its batch")
    return torch.stack([torch.multinomial(other, 1, generator=generator).flatten() for _ in range(parts)])


def recompose(fmap: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """FAR on ``fmap`` ``[B, C, H, W]``: part k (rows ``k h .. (k + 1) h - 1``, ``h = H // parts``)
    normalised by its own per-channel mean and std (unbiased variance + :data:`STAT_EPS`,
    detached), then scaled and shifted by those of sample ``donors[k, b]``. Returns
    ``[B, C, parts * h, W]`` (rows beyond ``parts * h`` dropped, as the official code)."""
    h = fmap.shape[2] // len(donors)
    out = []
    for k, donor in enumerate(donors):
        part = fmap[:, :, k * h:(k + 1) * h]
        mu = part.mean(dim=(2, 3), keepdim=True).detach()
        sig = (part.var(dim=(2, 3), keepdim=True) + STAT_EPS).sqrt().detach()
        out.append((part - mu) / sig * sig[donor] + mu[donor])
    return torch.cat(out, dim=2)


class FARBranch(nn.Module):
    """FAR's head: recomposed map -> pooling -> its own BNNeck -> identity logits (trained with
    the identity loss, weight ``far_weight`` 0.3 in the official code)."""

    def __init__(self, in_channels: int, num_pids: int, pooling: str = "avgmax") -> None:
        super().__init__()
        self.head = BNNeckHead(in_channels, num_pids, pooling)

    def forward(self, fmap: torch.Tensor, fine_labels: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.head(recompose(fmap, far_donors(fine_labels, PARTS, generator)))["logits"]


@dataclass(frozen=True)
class FineClusters:
    """Fine-grained pseudo-classes of the training set: identity blocks in ascending pid order."""

    labels: torch.Tensor  # long [N]: each sample's class
    centres: torch.Tensor  # [C, D]: each class's mean L2-normalised feature
    pids: torch.Tensor  # long [C]: each class's identity

    def positive(self, pids: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, C]``: the classes of each sample's identity (official ``pid2fgids[pid]``)."""
        return self.pids.to(pids.device)[None, :] == pids[:, None]


def _dbscan(dist: torch.Tensor, eps: float, min_samples: int) -> torch.Tensor:
    """scikit-learn DBSCAN labels on the precomputed float32 distances; each outlier becomes a
    class of its own, numbered after the clusters in sample order."""
    try:
        from sklearn.cluster import DBSCAN
    except ImportError:
        raise CCReIDError("FIRe² clustering needs scikit-learn: pip install 'ccreid[fire]'") from None
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dist.float().numpy())
    outlier = labels == -1
    labels[outlier] = labels.max(initial=-1) + 1 + np.arange(int(outlier.sum()))
    return torch.from_numpy(labels).long()


def _cluster_identity(features: torch.Tensor, eps: float, min_samples: int, k1: int,
                      k2: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One identity's classes (``0..C-1``, one per image) and their centres ``[C, D]`` (mean
    L2-normalised feature)."""
    feats = F.normalize(features.float(), dim=1)
    local = _dbscan(jaccard_distance(feats, k1, k2), eps, min_samples)
    num = int(local.max()) + 1
    sums = torch.zeros(num, feats.shape[1]).index_add_(0, local, feats)
    return local, sums / torch.bincount(local, minlength=num)[:, None]


def cluster_identities(features: torch.Tensor, pids: torch.Tensor, eps: float = 0.4, min_samples: int = 1,
                       k1: int = 20, k2: int = 6) -> FineClusters:
    """FFM's clustering of the training ``features`` ``[N, D]`` (dataset order) with identities
    ``pids``: per identity, DBSCAN on the k-reciprocal Jaccard distance
    (:func:`~ccreid.evaluation.rerank.jaccard_distance`) of its L2-normalised features. Memory
    and time grow with the sum of the squared identity sizes, not with ``N^2``."""
    features, pids = features.detach().cpu(), pids.cpu()
    order = torch.argsort(pids, stable=True)
    ids, counts = torch.unique_consecutive(pids[order], return_counts=True)
    labels = torch.empty(len(features), dtype=torch.long)
    centres, owners, first = [], [], 0
    for pid, idx in zip(ids.tolist(), torch.split(order, counts.tolist())):
        local, centre = _cluster_identity(features[idx], eps, min_samples, k1, k2)
        labels[idx] = first + local
        first += len(centre)
        centres.append(centre)
        owners.append(torch.full((len(centre),), pid, dtype=torch.long))
    return FineClusters(labels, torch.cat(centres), torch.cat(owners))


def fine_classifier(centres: torch.Tensor) -> CosineClassifier:
    """FFM's cosine classifier (official ``FgClassifier``), its rows the cluster ``centres``."""
    return CosineClassifier(centres.shape[1], len(centres), weight=centres.detach().clone())


def attribute_aware_loss(cosine: torch.Tensor, fine_labels: torch.Tensor, positive: torch.Tensor,
                         scale: float = 16.0, epsilon: float = 0.1) -> torch.Tensor:
    """FFM's attribute-aware loss (official ``AttrAwareLoss``) on cosine logits ``[B, C]``:
    cross-entropy of ``softmax(scale * cosine)`` against ``1 - epsilon`` on the sample's own
    class plus ``epsilon`` spread evenly over its identity's classes (``positive``, bool
    ``[B, C]``, the own class included), averaged over the batch."""
    positive = positive.to(cosine.dtype)
    own = F.one_hot(fine_labels, cosine.shape[1]).to(cosine.dtype)
    target = (1 - epsilon) * own + epsilon * positive / positive.sum(1, keepdim=True)
    return -(target * F.log_softmax(scale * cosine, dim=1)).sum(1).mean()
