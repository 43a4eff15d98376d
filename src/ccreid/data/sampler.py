"""Clothes-aware P x K batch sampler (METHOD.md): P identities, K images each, the K
images spread round-robin over the identity's outfits.

Identities are taken from a stream of random permutations, so over an epoch every
identity appears about equally often. Images of one outfit are taken from a per-epoch
shuffled cycle, so an epoch walks through all of an outfit's images before repeating
one. With ``world_size > 1`` each global step draws ``P * world_size`` distinct
identities and rank ``r`` gets the ``r``-th group of ``P``: ranks never share an
identity within a step. Everything is a function of ``(seed, epoch)``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterator, List, Sequence

import numpy as np
from torch.utils.data import Sampler

from ccreid.errors import CCReIDError


class _Cycle:
    """Endless shuffled walk through a list of indices, reshuffled after each pass."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator) -> None:
        self.items = items
        self.rng = rng
        self.order = rng.permutation(items)
        self.pos = 0

    def take(self, n: int) -> List[int]:
        """``n <= len(items)`` distinct items."""
        out = self.order[self.pos : self.pos + n].tolist()
        if len(out) < n:  # new pass; the items just taken go last so none repeats
            taken = np.array(out, dtype=self.items.dtype)
            rest = np.setdiff1d(self.items, taken)
            self.order = np.concatenate([self.rng.permutation(rest), self.rng.permutation(taken)])
            self.pos = n - len(out)
            out += self.order[: self.pos].tolist()
        else:
            self.pos += n
        return out


class ClothesAwarePKSampler(Sampler[List[int]]):
    """Yields lists of ``p * k`` dataset indices; call :meth:`set_epoch` each epoch."""

    def __init__(
        self,
        pids: Sequence[int],
        clothes: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(pids) != len(clothes):
            raise ValueError("pids and clothes must have the same length")
        if p < 1 or k < 1:
            raise ValueError("p and k must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        outfits: Dict[int, Dict[int, List[int]]] = defaultdict(lambda: defaultdict(list))
        for index, (pid, cid) in enumerate(zip(pids, clothes)):
            outfits[int(pid)][int(cid)].append(index)
        needed = p * world_size
        if len(outfits) < needed:
            processes = f" x {world_size} processes" if world_size > 1 else ""
            raise CCReIDError(
                f"the training set has {len(outfits)} identities, fewer than the {needed} a batch needs "
                f"(data.ids_per_batch={p}{processes}); lower data.ids_per_batch"
            )
        self.pids = sorted(outfits)
        self.outfits = {pid: [np.array(v) for _, v in sorted(outfits[pid].items())] for pid in self.pids}
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.num_batches = max(1, len(pids) // (p * k * world_size))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _draw(self, pid: int, cycles: Dict[tuple, _Cycle], rng: np.random.Generator) -> List[int]:
        """K images of ``pid``, round-robin over its outfits in a random order."""
        outfits = self.outfits[pid]
        sizes = [len(o) for o in outfits]
        repeats = sum(sizes) < self.k  # with replacement only when there are too few images
        counts = [0] * len(outfits)
        order = rng.permutation(len(outfits))
        total = 0
        while total < self.k:
            for o in order:
                if total < self.k and (repeats or counts[o] < sizes[o]):
                    counts[o] += 1
                    total += 1
        groups = []
        for o in order:
            key = (pid, int(o))
            if key not in cycles:
                cycles[key] = _Cycle(outfits[o], rng)
            group: List[int] = []
            for start in range(0, counts[o], sizes[o]):  # several passes only when repeating
                group += cycles[key].take(min(sizes[o], counts[o] - start))
            groups.append(group)
        return [g[i] for i in range(max(counts)) for g in groups if i < len(g)]

    def _identity_steps(self, rng: np.random.Generator) -> Iterator[List[int]]:
        """``num_batches`` groups of ``p * world_size`` distinct identities."""
        needed = self.p * self.world_size
        stream: List[int] = []
        for _ in range(self.num_batches):
            while len(set(stream)) < needed:
                stream += rng.permutation(self.pids).tolist()
            step: List[int] = []
            used = set()
            for position, pid in enumerate(stream):
                if pid not in step:
                    step.append(pid)
                    used.add(position)
                    if len(step) == needed:
                        break
            stream = [pid for position, pid in enumerate(stream) if position not in used]
            yield step

    def __iter__(self) -> Iterator[List[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        cycles: Dict[tuple, _Cycle] = {}
        for step in self._identity_steps(rng):
            batches = [self._draw(pid, cycles, rng) for pid in step]
            mine = batches[self.rank * self.p : (self.rank + 1) * self.p]
            yield [index for images in mine for index in images]
