from collections import Counter

import numpy as np
import pytest

from ccreid.data.sampler import ClothesAwarePKSampler
from ccreid.errors import CCReIDError


def make_labels(seed=0, ids=12):
    """Identities with 1-4 outfits of 1-6 images each; clothes ids unique across ids."""
    rng = np.random.default_rng(seed)
    pids, clothes = [], []
    for pid in range(ids):
        for outfit in range(rng.integers(1, 5)):
            n = int(rng.integers(1, 7))
            pids += [pid] * n
            clothes += [pid * 10 + outfit] * n
    order = rng.permutation(len(pids))  # dataset order must not matter
    return [pids[i] for i in order], [clothes[i] for i in order]


def outfits_of(pids, clothes):
    out = {}
    for p, c in zip(pids, clothes):
        out.setdefault(p, set()).add(c)
    return out


@pytest.mark.parametrize("p,k", [(4, 4), (3, 8), (2, 1)])
def test_pk_structure_and_outfit_coverage(p, k):
    pids, clothes = make_labels()
    sampler = ClothesAwarePKSampler(pids, clothes, p=p, k=k, seed=1)
    outfits = outfits_of(pids, clothes)
    sizes = Counter(pids)
    batches = list(sampler)
    assert len(batches) == len(sampler) == max(1, len(pids) // (p * k))
    for batch in batches:
        assert len(batch) == p * k
        groups = [batch[i * k : (i + 1) * k] for i in range(p)]
        ids = [pids[g[0]] for g in groups]
        assert len(set(ids)) == p
        for pid, group in zip(ids, groups):
            assert all(pids[i] == pid for i in group)
            if sizes[pid] >= k:
                assert len(set(group)) == k  # no replacement when the identity has enough images
            else:
                assert set(group) == {i for i in range(len(pids)) if pids[i] == pid}
            seen = {clothes[i] for i in group}
            assert len(seen) == min(k, len(outfits[pid]))  # as many outfits as exist


def test_outfits_are_balanced_round_robin():
    # one identity-level check against a brute-force count: outfit counts differ by <= 1
    # unless an outfit runs out of images
    pids = [0] * 9 + [1] * 9
    clothes = [0] * 2 + [1] * 7 + [2] * 3 + [3] * 3 + [4] * 3
    sampler = ClothesAwarePKSampler(pids, clothes, p=2, k=8, seed=3)
    for batch in sampler:
        first = Counter(clothes[i] for i in batch if pids[i] == 0)
        second = Counter(clothes[i] for i in batch if pids[i] == 1)
        assert first == {0: 2, 1: 6}
        assert sorted(second.values()) == [2, 3, 3]


def test_epoch_covers_identities_evenly_and_walks_outfit_images():
    pids, clothes = make_labels(seed=5, ids=20)
    sampler = ClothesAwarePKSampler(pids, clothes, p=4, k=2, seed=0)
    sampler.set_epoch(2)
    counts = Counter(pids[b[i]] for b in sampler for i in range(0, len(b), 2))
    assert set(counts) == set(pids)
    assert max(counts.values()) - min(counts.values()) <= 2


def test_outfit_images_are_not_repeated_before_all_were_used():
    pids, clothes = make_labels(seed=2, ids=8)
    sizes = Counter(clothes)
    sampler = ClothesAwarePKSampler(pids, clothes, p=2, k=3, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        walks = {}
        for batch in sampler:
            for i in batch:
                walks.setdefault(clothes[i], []).append(i)
        for outfit, walk in walks.items():
            n = sizes[outfit]
            if Counter(pids)[pids[walk[0]]] < 3:
                continue  # identities with fewer than K images are drawn with replacement
            for start in range(0, len(walk), n):
                window = walk[start : start + n]
                assert len(set(window)) == len(window)


def test_deterministic_per_seed_and_epoch():
    pids, clothes = make_labels()
    a = ClothesAwarePKSampler(pids, clothes, p=4, k=4, seed=7)
    b = ClothesAwarePKSampler(pids, clothes, p=4, k=4, seed=7)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(ClothesAwarePKSampler(pids, clothes, p=4, k=4, seed=8)) != list(b)


def test_too_few_identities():
    pids, clothes = make_labels(ids=3)
    with pytest.raises(CCReIDError, match="3 identities.*ids_per_batch"):
        ClothesAwarePKSampler(pids, clothes, p=4, k=2, seed=0)
    with pytest.raises(CCReIDError, match="x 2 processes"):
        ClothesAwarePKSampler(pids, clothes, p=2, k=2, seed=0, rank=0, world_size=2)


def test_distributed_ranks_get_disjoint_identities():
    pids, clothes = make_labels(ids=16)
    world = 3
    ranks = [ClothesAwarePKSampler(pids, clothes, p=4, k=2, seed=2, rank=r, world_size=world) for r in range(world)]
    for s in ranks:
        s.set_epoch(4)
    assert len({len(s) for s in ranks}) == 1 and len(ranks[0]) == max(1, len(pids) // (4 * 2 * world))
    for step in zip(*ranks):
        ids = [{pids[i] for i in batch} for batch in step]
        assert all(len(s) == 4 for s in ids)
        assert len(set().union(*ids)) == 4 * world
    # the single-process sampler with the same seed is unaffected by the distributed option
    single = ClothesAwarePKSampler(pids, clothes, p=4, k=2, seed=2)
    assert len(single) == len(pids) // 8
