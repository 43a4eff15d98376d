"""The total training loss of METHOD.md, every term reported separately.

``L = w_ce * (CE(orig) + CE(erased)) + w_tri * Tri + w_bctri * BCTri + w_bsga * L_bsga``.
``erased_terms`` picks which terms see CRE's erased copies (``is_erased``): ``ce`` adds
the CE(erased) term, ``tri`` / ``bctri`` compute that triplet term over originals and
copies together (otherwise over the originals only). CE(orig) never sees the copies.
BSGA supervision covers every image with a mask (copies carry their original's map).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.losses.bctri import bctri_loss
from ccreid.losses.cross_entropy import CrossEntropyLabelSmooth
from ccreid.losses.triplet import batch_hard_triplet_loss

ERASED_TERMS = ("ce", "tri", "bctri")
#: ``loss(attention_maps, body_mask, valid=rows_with_a_map)``: BSGA's supervision (``ccreid.models.bsga.bsga_loss``)
AttentionLoss = Callable[..., torch.Tensor]
TERM_NAMES = ("ce_orig", "ce_erased", "tri", "bctri", "bsga", "num_bctri_no_positive")


class ReIDObjective(nn.Module):
    """Computes the total loss and a dict of its terms (unweighted, detached).

    ``terms`` always holds every name of :data:`TERM_NAMES`; a term that is switched
    off (BCTri without ``use_bctri``, BSGA without attention maps, CE(erased) without
    copies or without ``ce`` in ``erased_terms``) is 0. ``num_bctri_no_positive`` counts the
    anchors without a cross-clothes positive in the batch BCTri saw.
    """

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.1,
        triplet_margin: Optional[float] = 0.3,
        w_ce: float = 1.0,
        w_tri: float = 1.0,
        w_bctri: float = 1.0,
        w_bsga: float = 1.0,
        use_bctri: bool = False,
        bctri_margin: float = 0.3,
        bctri_metric: str = "euclidean",
        bctri_reduction: str = "mean",
        attention_loss: Optional[AttentionLoss] = None,
        erased_terms: Sequence[str] = ERASED_TERMS,
        triplet_metric: str = "euclidean",
    ) -> None:
        super().__init__()
        unknown = sorted(set(erased_terms) - set(ERASED_TERMS))
        if unknown:
            raise CCReIDError(f"config key 'model.cre.losses': unknown terms {unknown} (use ce, tri, bctri)")
        self.ce = CrossEntropyLabelSmooth(num_classes, label_smoothing)
        self.triplet_margin = triplet_margin
        self.triplet_metric = triplet_metric
        self.weights = {"ce": w_ce, "tri": w_tri, "bctri": w_bctri, "bsga": w_bsga}
        self.use_bctri = use_bctri
        self.bctri_margin = bctri_margin
        self.bctri_metric = bctri_metric
        self.bctri_reduction = bctri_reduction
        self.attention_loss = attention_loss
        self.erased_terms = frozenset(erased_terms)

    def forward(
        self,
        outputs: Dict[str, object],
        pids: torch.Tensor,
        clothes: torch.Tensor,
        is_erased: torch.Tensor,
        body_mask: Optional[torch.Tensor] = None,
        has_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``outputs`` is the model's training dict; ``body_mask`` ``[B, H, W]`` is only
        needed when ``outputs["attention"]`` is non-empty."""
        feat, logits = outputs["feat"], outputs["logits"]
        originals = ~is_erased
        zero = feat.new_zeros((), dtype=torch.float32)
        ce_orig = self.ce(logits, pids, originals)
        ce_erased = self.ce(logits, pids, is_erased) if "ce" in self.erased_terms else zero

        tri_rows = slice(None) if "tri" in self.erased_terms else originals
        tri = batch_hard_triplet_loss(feat[tri_rows], pids[tri_rows], self.triplet_margin, self.triplet_metric)

        bctri, no_positive = zero, zero
        if self.use_bctri:
            rows = slice(None) if "bctri" in self.erased_terms else originals
            bctri, no_positive = bctri_loss(
                feat[rows], pids[rows], clothes[rows], self.bctri_margin, self.bctri_metric, self.bctri_reduction
            )

        attention = outputs.get("attention") or []
        bsga = zero
        if attention:
            if body_mask is None or self.attention_loss is None:
                raise ValueError("BSGA attention maps need attention_loss and body_mask (parsing > 0)")
            bsga = self.attention_loss(attention, body_mask, valid=has_mask)

        w = self.weights
        total = w["ce"] * (ce_orig + ce_erased) + w["tri"] * tri + w["bctri"] * bctri + w["bsga"] * bsga
        values = (ce_orig, ce_erased, tri, bctri, bsga, no_positive)
        terms = {name: v.detach().float() for name, v in zip(TERM_NAMES, values)}
        return total, terms
