"""One optimisation step of the METHOD.md objective, and the NaN/inf guard."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.models.cre import ClothesErasure
from ccreid.runs.resume import latest_checkpoint
from ccreid.runtime.amp import autocast


@dataclass(kw_only=True)
class TrainStep:
    """One optimisation step: CRE on the batch, forward, the objective, backward, update.

    ``net`` runs the forward: the model itself, its DistributedDataParallel wrapper
    (gradients all-reduced in backward) or its ``torch.compile`` form. A method that adds
    loss terms or updates other modules overrides :meth:`extra_terms`.
    """

    net: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: str = "off"
    cre: Optional[ClothesErasure] = None
    num_clothes: int = 0
    generator: Optional[torch.Generator] = None
    channels_last: bool = False
    uses_parsing: bool = True  # CRE or BSGA need the parsing maps on the device
    uses_camids: bool = False  # the network takes the camera ids (``net(images, camids=...)``)

    def __call__(self, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """The loss and its terms as floats (possibly NaN: the caller checks), the CRE
        counts, and ``images`` (the batch size after CRE). One host read per step."""
        device = self.device
        images = batch["image"].to(device, non_blocking=True)
        parsing = batch["parsing"].to(device, non_blocking=True) if self.uses_parsing else None
        pids = batch["pid"].to(device)
        clothes = batch["clothes"].to(device)
        camids = batch["camid"].to(device) if self.uses_camids else None
        is_erased = torch.zeros(len(pids), dtype=torch.bool, device=device)
        counts: Dict[str, torch.Tensor] = {}
        if self.cre is not None:
            erased = self.cre(images, parsing, batch["has_parsing"].to(device), pids, clothes, self.num_clothes,
                              generator=self.generator)
            images, pids, clothes, parsing, is_erased = (erased.images, erased.pids, erased.clothes,
                                                         erased.parsing, erased.is_erased)
            camids = camids[erased.source] if camids is not None else None
            counts = {"num_erased": erased.num_erased, "num_without_map": erased.num_without_map}
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        body_mask, has_mask = (parsing > 0, (parsing >= 0).flatten(1).any(1)) if parsing is not None else (None, None)
        with autocast(device, self.amp):
            outputs = self.net(images, camids=camids) if self.uses_camids else self.net(images)
        outputs = {k: (v.float() if torch.is_tensor(v) else [a.float() for a in v]) for k, v in outputs.items()}
        loss, terms = self.objective(outputs, pids, clothes, is_erased, body_mask, has_mask)
        for name, (weight, value) in self.extra_terms(outputs, pids, clothes).items():
            if weight != 0:  # a weight-0 term is only logged (its graph may be spent already)
                loss = loss + weight * value
            terms[name] = value.detach().float()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        named = {"loss": loss.detach()} | terms | counts
        values = torch.stack([torch.as_tensor(v, device=device).float().reshape(()) for v in named.values()]).tolist()
        floats = {k: int(v) if k.startswith("num_") else v for k, v in zip(named, values)}
        return floats | {"images": len(pids)}

    def fields(self) -> Dict[str, object]:
        """This step's settings by name: ``MyStep(**base.fields(), extra=...)`` extends a built step."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def extra_terms(self, outputs: Dict[str, torch.Tensor], pids: torch.Tensor,
                    clothes: torch.Tensor) -> Dict[str, Tuple[float, torch.Tensor]]:
        """Name -> (weight, loss term) added to the objective and logged (after CRE: copies included)."""
        return {}


def check_finite(terms: Dict[str, float], epoch: int, iteration: int, out: Path) -> None:
    """Stop with the iteration and the loss terms that are NaN/inf; checkpoints on disk stay good."""
    if math.isfinite(terms["loss"]):
        return
    bad = [k for k, v in terms.items() if isinstance(v, float) and not math.isfinite(v) and k != "loss"]
    last = latest_checkpoint(out)
    kept = f"the last good checkpoint is {last}" if last is not None else "no checkpoint was written yet"
    raise CCReIDError(f"iteration {iteration} (epoch {epoch}): loss became {terms['loss']} "
                      f"(terms: {', '.join(bad) or 'total'}); {kept}; lower train.lr or use train.amp=off")
