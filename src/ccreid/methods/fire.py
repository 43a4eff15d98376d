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

The preset ``fire`` (:class:`FireMethod`) trains them as ``train_fire.py`` does: the identity
loss alone before ``loss.fire.start_epoch``; from it on, at the start of every epoch the
training set is clustered afresh (:class:`FineClustering`, a trainer hook), a new classifier of
the clusters joins, Adam is rebuilt (its moments reset unless ``loss.fire.keep_moments``) and
the triplet loss (on the BNNeck feature), FFM and FAR join the identity loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccreid.config import register_section, setting
from ccreid.errors import CCReIDError
from ccreid.evaluation.rerank import jaccard_distance
from ccreid.inference.evaluator import extract_all
from ccreid.losses.triplet import batch_hard_triplet_loss
from ccreid.methods.base import Method, Optimizers, register_preset
from ccreid.methods.cal import CosineClassifier
from ccreid.models import ReIDModel
from ccreid.models.heads import BNNeckHead
from ccreid.training.hooks import HookBase
from ccreid.training.step import TrainStep, average_gradients, broadcast_parameters

logger = logging.getLogger(__name__)


@dataclass
class FireConfig:
    """FIRe² (preset ``fire``; the official code's defaults, ``utils/arguments.py``)."""

    start_epoch: int = setting(25, min=0, meaning="0: from the start")  # first clustered epoch (0-based)
    far_weight: float = setting(0.3, min=0, meaning="0: no FAR")  # weight of FAR's identity loss
    eps: float = setting(0.4, above=0.0)  # DBSCAN radius on the Jaccard distance
    min_samples: int = setting(1, min=1)  # DBSCAN core-point size
    k1: int = setting(20, min=1)  # k-reciprocal neighbours of the Jaccard distance
    k2: int = setting(6, min=1)  # its query-expansion neighbours
    scale: float = setting(16.0, above=0.0)  # cosine-logit scale of the classifier of the clusters
    epsilon: float = setting(0.1, range=(0, 1))  # attribute-aware loss: mass spread over the identity's clusters
    keep_moments: bool = False  # keep Adam's moments when clustering rebuilds it (official: reset)


register_section("loss.fire", FireConfig)

#: Horizontal parts of the feature map recomposed by FAR (official ``P_parts``); one donor per part (``K_times``).
PARTS = 2
#: Added to the variance before its square root (official ``var + 1e-6``).
STAT_EPS = 1e-6


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


class FireModel(ReIDModel):
    """The baseline network whose training outputs also hold the last feature map ``fmap`` (FAR's
    input); in eval mode it is :class:`~ccreid.models.ReIDModel` (same weights, same features)."""

    def forward(self, images: torch.Tensor, return_attention: bool = False):
        if not self.training:
            return super().forward(images, return_attention)
        fmap, attention = self.feature_map(images)
        return dict(self.head(fmap)) | {"attention": attention, "fmap": fmap}


@dataclass(kw_only=True)
class FireStep(TrainStep):
    """The trainer's step plus FIRe²'s terms in the clustered epochs: the triplet loss on the BNNeck
    feature, FFM's attribute-aware loss and FAR's identity loss (logged as 0 before)."""

    method: "FireMethod"

    def extra_terms(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor,
                    clothes: torch.Tensor) -> Dict[str, Tuple[float, torch.Tensor]]:
        method, fire = self.method, self.method.cfg.loss.fire
        if method.clusters is None:
            zero = outputs["bn_feat"].new_zeros(())
            return {"fire_tri": (0.0, zero), "ffm": (0.0, zero), "far": (0.0, zero)}
        fine = method.clusters.labels.to(pids.device)[self.index]
        bn_feat = outputs["bn_feat"]
        tri = batch_hard_triplet_loss(bn_feat, pids, method.cfg.loss.triplet_margin)
        ffm = attribute_aware_loss(method.fine_classifier(bn_feat), fine, method.clusters.positive(pids),
                                   fire.scale, fire.epsilon)
        far = self.objective.ce(method.far(outputs["fmap"], fine, self.generator), pids)
        return {"fire_tri": (method.cfg.loss.w_tri, tri), "ffm": (1.0, ffm), "far": (fire.far_weight, far)}

    def after_backward(self) -> None:
        if self.method.clusters is not None:
            average_gradients([self.method.far, self.method.fine_classifier])


class FireMethod(Method):
    """FIRe² (docs/METHOD.md): the baseline network with average+max pooling, the identity loss,
    and from ``loss.fire.start_epoch`` on the per-epoch clustering, FFM, FAR and the triplet loss."""

    runs_on_clips = False  # FAR and the clustering work on image features

    @classmethod
    def build_network(cls, cfg, preset, num_classes: int) -> nn.Module:
        base = super().build_network(cfg, preset, num_classes)
        return FireModel(base.backbone, num_classes, pooling=cfg.model.pooling)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        super().setup(model, device)
        self.device = device
        self._check_map_size(model, device)
        self.far = FARBranch(model.backbone.out_channels, self.data.num_pids, self.cfg.model.pooling).to(device)
        broadcast_parameters([self.far])  # every process starts from rank 0's branch
        self.clusters: Optional[FineClusters] = None
        self.fine_classifier: Optional[CosineClassifier] = None
        self.clustered_epoch: Optional[int] = None  # the epoch the clusters were made for
        self.step: Optional[FireStep] = None

    def _check_map_size(self, model: nn.Module, device: torch.device) -> None:
        """FAR needs max pooling (averaged, a recomposed part is its donor's mean: no trace of the sample)
        and two cells or more in each of its parts of the last feature map (a standard deviation)."""
        if "max" not in self.cfg.model.pooling:
            raise CCReIDError(f"preset fire: config key 'model.pooling' is {self.cfg.model.pooling!r}; FAR needs max "
                              "pooling (average pooling of a recomposed part gives its donor's mean): use "
                              "model.pooling=avgmax, as FIRe² does")
        data, was_training = self.cfg.data, model.training
        model.eval()
        with torch.no_grad():
            height, width = model.feature_map(torch.zeros(1, 3, data.height, data.width, device=device))[0].shape[2:]
        model.train(was_training)
        if (height // PARTS) * width < 2:
            raise CCReIDError(f"preset fire: the last feature map is {height}x{width} at data.height={data.height}, "
                              f"data.width={data.width}: FAR needs 2 cells or more in each of its {PARTS} parts; "
                              "use larger images or model.last_stride=1")

    def build_objective(self) -> nn.Module:
        objective = super().build_objective()
        objective.weights["tri"] = 0.0  # FIRe²'s triplet loss: on the BNNeck feature, clustered epochs only
        return objective

    def trained_parameters(self) -> List[nn.Parameter]:
        """The model's and loss modules', FAR's branch's and (once clustered) the cluster classifier's."""
        extra = [self.far] + ([self.fine_classifier] if self.fine_classifier is not None else [])
        return super().trained_parameters() + [p for m in extra for p in m.parameters()]

    def optimizers(self) -> Optimizers:
        self._optimizers = super().optimizers()  # kept: clustering replaces its main optimizer
        return self._optimizers

    def _rebuilt_main(self) -> Tuple[torch.optim.Optimizer, Any]:
        """A new main Adam over :meth:`trained_parameters` (the classifier of the clusters included) at
        the old one's learning rate, its schedule continued; Adam's moments carried over with
        ``loss.fire.keep_moments``."""
        previous, schedule = self._optimizers["main"]
        optimizer, scheduler = self.main_optimizer()
        if self.cfg.loss.fire.keep_moments:
            optimizer.state.update(previous.state)
        scheduler.load_state_dict(schedule.state_dict())
        for group in optimizer.param_groups:
            group["lr"] = previous.param_groups[0]["lr"]
        return optimizer, scheduler

    def use_clusters(self, clusters: FineClusters, epoch: int) -> None:
        """Train on ``clusters`` from now on: a classifier of their centres and a new Adam."""
        self.clusters, self.clustered_epoch = clusters, epoch
        self.fine_classifier = fine_classifier(clusters.centres).to(self.device)
        self._optimizers["main"] = self._rebuilt_main()
        if self.step is not None:
            self.step.optimizer = self._optimizers["main"][0]

    def make_step(self, net: nn.Module, optimizers: Optimizers, *args: Any, **kwargs: Any) -> TrainStep:
        base = super().make_step(net, optimizers, *args, **kwargs)
        self.step = FireStep(**base.fields(), method=self)
        return self.step

    def hooks(self) -> List[HookBase]:
        return super().hooks() + [FineClustering(self)]

    def epoch_gates(self) -> Dict[str, Tuple[int, str]]:
        start = (self.cfg.loss.fire.start_epoch, "FIRe²'s clustering, FFM, FAR and the triplet loss start")
        return super().epoch_gates() | {"loss.fire.start_epoch": start}

    def state_dict(self) -> Dict[str, Any]:
        if self.clusters is None:
            return {"far": self.far.state_dict()}
        c = self.clusters
        return {"far": self.far.state_dict(), "clustered_epoch": self.clustered_epoch,
                "clusters": {"labels": c.labels, "centres": c.centres, "pids": c.pids},
                "fine_classifier": self.fine_classifier.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.far.load_state_dict(state["far"])
        if "clusters" in state:
            self.use_clusters(FineClusters(**state["clusters"]), state["clustered_epoch"])
            self.fine_classifier.load_state_dict(state["fine_classifier"])


class FineClustering(HookBase):
    """Before every epoch from ``loss.fire.start_epoch`` on: the training set's features (test
    transform, no flip, the BNNeck feature) clustered per identity (process 0, sent to the others),
    then :meth:`FireMethod.use_clusters`. A run resumed inside an epoch keeps that epoch's clusters."""

    def __init__(self, method: FireMethod) -> None:
        self.method = method

    def before_epoch(self) -> None:
        t, method = self.trainer, self.method
        epoch = t.state.epoch
        if not method.gate_open("loss.fire.start_epoch") or method.clustered_epoch == epoch:
            return
        fire, records = method.cfg.loss.fire, t.manager.dataset.train
        with torch.random.fork_rng(devices=[]):  # the training's random numbers as without clustering
            features = extract_all(t.training.model, records, t.manager.loader, t.info.device, flip=False)
        clusters = None
        if t.info.is_main:
            pids = torch.tensor([r.pid for r in records])
            clusters = cluster_identities(features, pids, fire.eps, fire.min_samples, fire.k1, fire.k2)
        clusters = t.info.all_gather_object(clusters)[0]  # process 0's clusters on every process
        method.use_clusters(clusters, epoch)
        if t.info.is_main:
            logger.info("epoch %d: FIRe² clustered %d images of %d identities into %d fine-grained classes",
                        epoch + 1, len(records), len(clusters.pids.unique()), len(clusters.centres))


register_preset("fire", FireMethod)
