"""Alpha query expansion (alpha-QE, Radenovic et al.; fast-reid's ``aqe``).

Query and gallery features together: each one is replaced by the mean of its ``k`` most
similar features (itself included, cosine similarity), each weighted by its similarity to
the power ``alpha``; repeated ``rounds`` times. fast-reid's defaults: one round, k 5, alpha 3.
The result is not normalised (cosine distance normalises it).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from ccreid.errors import CCReIDError
from ccreid.evaluation.distance import as_tensor

#: rows of the similarity matrix computed at once (memory: ROWS x (queries + gallery))
ROWS = 2048


def alpha_query_expansion(qf, gf, k: int = 5, alpha: float = 3.0, rounds: int = 1
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expanded ``(query, gallery)`` features (float32, on the features' device)."""
    if k < 1 or rounds < 1:
        raise CCReIDError(f"option aqe: k ({k}) and rounds ({rounds}) must be >= 1")
    qf, gf = as_tensor(qf).float(), as_tensor(gf).float()
    feats = torch.cat([qf, gf])
    k = min(k, len(feats))
    for _ in range(rounds):
        unit = F.normalize(feats, dim=1)
        expanded = []
        for start in range(0, len(feats), ROWS):
            sims, index = (unit[start:start + ROWS] @ unit.T).topk(k, dim=1)
            weights = sims.pow(alpha).unsqueeze(2)
            expanded.append((feats[index] * weights).mean(1))
        feats = torch.cat(expanded)
    return feats[:len(qf)], feats[len(qf):]
