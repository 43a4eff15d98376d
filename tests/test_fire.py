"""FIRe²'s parts against direct transcriptions of the official code (QizaoWang/FIRe-CCReID)."""

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ccreid.errors import CCReIDError
from ccreid.evaluation.rerank import jaccard_distance
from ccreid.cli import main
from ccreid.config import load_config
from ccreid.methods import resolve_preset
from ccreid.methods.fire import (FARBranch, FireMethod, attribute_aware_loss, cluster_identities, far_donors,
                                 fine_classifier, recompose)
from test_distributed import _torchrun
from test_resume import assert_kill_and_resume_equals_full, data, train_args  # noqa: F401  (data: a fixture)
from tiny_run import TINY


def official_jaccard(feats: np.ndarray, k1: int, k2: int, faiss_padding: bool = True) -> np.ndarray:
    """``compute_jaccard_distance`` of train_fire.py line by line, with an exact k-NN search
    (the k1 nearest by L2, self included; lists of fewer items padded with -1 as faiss pads them)."""
    n = len(feats)
    dist_all = 2 - 2 * feats @ feats.T
    initial_rank = np.argsort(dist_all, axis=1, kind="stable")[:, :k1]
    if faiss_padding and n < k1:
        initial_rank = np.concatenate([initial_rank, np.full((n, k1 - n), -1)], axis=1)

    def k_reciprocal_neigh(i, k):
        forward = initial_rank[i, :k + 1]
        backward = initial_rank[forward, :k + 1]
        return forward[np.where(backward == i)[0]]

    nn_k1 = [k_reciprocal_neigh(i, k1) for i in range(n)]
    nn_k1_half = [k_reciprocal_neigh(i, int(np.around(k1 / 2))) for i in range(n)]
    v = np.zeros((n, n))
    for i in range(n):
        expansion = nn_k1[i]
        for candidate in nn_k1[i]:
            cand = nn_k1_half[candidate]
            if len(np.intersect1d(cand, nn_k1[i])) > 2 / 3 * len(cand):
                expansion = np.append(expansion, cand)
        expansion = np.unique(expansion)
        w = np.exp(-(2 - 2 * feats[i] @ feats[expansion].T))
        v[i, expansion] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[initial_rank[i, :k2]].mean(0) for i in range(n)])
    inv_index = [np.where(v[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros((n, n))
    for i in range(n):
        temp_min = np.zeros(n)
        for k in np.where(v[i] != 0)[0]:
            temp_min[inv_index[k]] += np.minimum(v[i, k], v[inv_index[k], k])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    return np.maximum(jaccard, 0)


def _unit(seed: int, n: int, dim: int = 8) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


@pytest.mark.parametrize("seed,n,k1,k2", [(0, 30, 20, 6), (1, 45, 20, 6), (2, 12, 5, 3), (3, 9, 20, 6), (4, 15, 4, 1),
                                         (5, 4, 20, 6), (6, 20, 20, 6)])
@pytest.mark.parametrize("faiss_padding", [True, False])
def test_jaccard_matches_official_transcription(seed, n, k1, k2, faiss_padding):
    feats = _unit(seed, n)
    expected = official_jaccard(feats.numpy(), k1, k2, faiss_padding)
    got = jaccard_distance(feats.float(), k1, k2, faiss_padding)
    assert got.shape == (n, n)
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-6)
    assert (expected < 1).sum() > n  # not only the diagonal: the sets overlap


def test_faiss_pads_short_lists_with_minus_one():
    faiss = pytest.importorskip("faiss")
    feats = _unit(3, 9).float().numpy()
    index = faiss.IndexFlatL2(feats.shape[1])
    index.add(feats)
    _, rank = index.search(feats, 20)
    assert (rank[:, 9:] == -1).all() and (np.sort(rank[:, :9], axis=1) == np.arange(9)).all()
    padded = official_jaccard(feats.astype(np.float64), 20, 6)
    assert np.abs(padded - official_jaccard(feats.astype(np.float64), 20, 6, faiss_padding=False)).max() > 0.05


def loop_recompose(fmap: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """FAR per sample, part and channel, as model/fire.py lines 136-154 compute it."""
    b_size, channels, height, _ = fmap.shape
    h = height // len(donors)
    rows = []
    for b in range(b_size):
        parts = []
        for k, donor in enumerate(donors[:, b].tolist()):
            chans = []
            for c in range(channels):
                x, y = fmap[b, c, k * h:(k + 1) * h], fmap[donor, c, k * h:(k + 1) * h]
                mx, sx = x.mean().detach(), (x.var() + 1e-6).sqrt().detach()
                my, sy = y.mean().detach(), (y.var() + 1e-6).sqrt().detach()
                chans.append((x - mx) / sx * sy + my)
            parts.append(torch.stack(chans))
        rows.append(torch.cat(parts, dim=1))
    return torch.stack(rows)


def test_far_recomposition_matches_loop():
    fmap = torch.randn(6, 4, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # H odd
    donors = torch.tensor([[1, 2, 3, 4, 5, 0], [3, 3, 0, 1, 1, 2]])
    a, b = fmap.clone().requires_grad_(), fmap.clone().requires_grad_()
    out, expected = recompose(a, donors), loop_recompose(b, donors)
    assert out.shape == (6, 4, 4, 3)
    torch.testing.assert_close(out, expected)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)  # the statistics are detached


def test_far_donors_official_draws():
    fine = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    torch.manual_seed(7)
    neg_mask = fine.expand(8, 8).ne(fine.expand(8, 8).t()).type(torch.float32)
    expected = [torch.multinomial(neg_mask, num_samples=1, replacement=False).transpose(-1, -2).flatten(0)
                for _ in range(2)]  # one draw per part, in part order
    torch.manual_seed(7)
    donors = far_donors(fine)
    torch.testing.assert_close(donors, torch.stack(expected))
    assert (fine[donors] != fine).all()
    with pytest.raises(CCReIDError, match="another fine-grained class"):
        far_donors(torch.zeros(4, dtype=torch.long))


def test_far_branch_logits_and_gradient():
    branch = FARBranch(4, num_pids=3).train()
    fmap = torch.randn(6, 4, 6, 2, requires_grad=True)
    logits = branch(fmap, torch.tensor([0, 0, 1, 1, 2, 2]), torch.Generator().manual_seed(0))
    assert logits.shape == (6, 3)
    logits.sum().backward()
    assert fmap.grad.abs().sum() > 0


def test_attribute_aware_loss_matches_loop():
    gen = torch.Generator().manual_seed(0)
    cos = torch.rand(5, 7, generator=gen) * 2 - 1
    fine = torch.tensor([0, 2, 3, 5, 6])
    pid_of_class = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    positive = pid_of_class[None] == pid_of_class[fine][:, None]
    total = 0.0
    for b in range(5):
        logp = torch.log_softmax(16 * cos[b].double(), 0)
        mask = [(0.9 if c == fine[b] else 0.0) + 0.1 / int(positive[b].sum()) * float(positive[b, c]) for c in range(7)]
        total += -sum(m * lp for m, lp in zip(mask, logp.tolist()))
    got = attribute_aware_loss(cos.double(), fine, positive, scale=16, epsilon=0.1)
    assert got.item() == pytest.approx(total / 5, rel=1e-12)


def test_fine_classifier_starts_at_centres():
    centres = torch.randn(4, 6)
    clf = fine_classifier(centres)
    torch.testing.assert_close(clf.weight.data, centres)
    x = torch.randn(3, 6)
    torch.testing.assert_close(clf(x), F.normalize(x, dim=1) @ F.normalize(centres, dim=1).T)


def test_clustered_epochs_follow_official_gate():
    # main.py calls train(epoch + 1) and train_fire.py clusters when epoch > fg_start_epoch
    cfg = load_config("synthetic", ["model.preset=fire", "loss.fire.start_epoch=25"])
    method = FireMethod(cfg, resolve_preset(cfg), None)
    clustered = []
    for epoch in range(30):
        method.set_epoch(epoch)
        clustered += [epoch] if method.gate_open("loss.fire.start_epoch") else []
    assert clustered == [e for e in range(30) if e + 1 > 25]


def official_clusters(feats, pids, eps, min_samples, k1, k2):
    """init_fg_cluster of train_fire.py after the feature extraction (pids 0..P-1)."""
    from sklearn.cluster import DBSCAN

    labels, centres, num_fg = np.zeros(len(feats), dtype=np.int64), [], []
    for pid in range(int(pids.max()) + 1):
        idx = np.where(pids == pid)[0]
        fg = feats[idx] / np.linalg.norm(feats[idx], axis=1, keepdims=True)
        dist = official_jaccard(fg, k1, k2).astype(np.float32)
        tmp = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dist)
        n = len(set(tmp)) - (1 if -1 in tmp else 0)
        local = []
        for t in tmp:
            local.append(t if t != -1 else n)
            n += t == -1
        local = np.array(local)
        labels[idx] = sum(num_fg) + local
        centres += [fg[local == c].mean(0) for c in range(n)]
        num_fg.append(n)
    return labels, np.stack(centres), num_fg


def _identities(seed: int, num_pids: int = 4, per_pid: int = 24, dim: int = 16):
    """Features of identities in two or three outfits each, shuffled."""
    gen = torch.Generator().manual_seed(seed)
    pids = torch.arange(num_pids).repeat_interleave(per_pid)
    outfits = torch.randint(0, 3, (len(pids),), generator=gen)
    centre = torch.randn(num_pids, 3, dim, generator=gen)
    feats = centre[pids, outfits] + 0.35 * torch.randn(len(pids), dim, generator=gen)
    perm = torch.randperm(len(pids), generator=gen)
    return feats[perm].double(), pids[perm]


@pytest.mark.parametrize("min_samples,per_pid", [(1, 24), (8, 24), (1, 9)])
def test_clusters_match_official_transcription(min_samples, per_pid):
    pytest.importorskip("sklearn")
    feats, pids = _identities(0, per_pid=per_pid)
    got = cluster_identities(feats, pids, eps=0.4, min_samples=min_samples, k1=20, k2=6)
    labels, centres, num_fg = official_clusters(feats.numpy(), pids.numpy(), 0.4, min_samples, 20, 6)
    np.testing.assert_array_equal(got.labels.numpy(), labels)
    np.testing.assert_allclose(got.centres.numpy(), centres, atol=1e-6)
    assert got.pids.tolist() == [p for p, n in enumerate(num_fg) for _ in range(n)]
    assert len(got.centres) > 4  # the outfits split identities
    pid2fgids = torch.zeros(4, len(centres))
    pid2fgids[got.pids, torch.arange(len(centres))] = 1
    torch.testing.assert_close(got.positive(pids).float(), pid2fgids[pids])


def test_outliers_become_classes_of_their_own():
    pytest.importorskip("sklearn")
    feats, pids = _identities(1, num_pids=2)
    got = cluster_identities(feats, pids, min_samples=8)
    _, counts = torch.unique(got.labels, return_counts=True)
    assert (counts == 1).any() and len(counts) == len(got.centres) == int(got.labels.max()) + 1


def test_clustering_is_deterministic():
    pytest.importorskip("sklearn")
    feats, pids = _identities(2)
    first, second = cluster_identities(feats, pids), cluster_identities(feats.clone(), pids.clone())
    assert torch.equal(first.labels, second.labels) and torch.equal(first.centres, second.centres)


# --- the preset: training, resume, torchrun -------------------------------------------------------------

FIRE = ["model.preset=fire", "loss.fire.start_epoch=1", "model.pooling=avgmax", "model.last_stride=1"]


def _clustered_steps(run) -> list:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "ffm" in x]


@pytest.mark.timeout(300)
def test_fire_trains_identity_loss_first_then_clusters(tmp_path, data):
    """Epoch 1: the identity loss alone (FIRe²'s terms logged as 0); from epoch 2 on: triplet, FFM, FAR."""
    run = tmp_path / "run"
    assert main(train_args(run, data) + FIRE) == 0
    steps = _clustered_steps(run)
    first = [s for s in steps if s["epoch"] == 1]
    later = [s for s in steps if s["epoch"] >= 2]
    assert first and later
    assert all(s["ffm"] == s["far"] == s["fire_tri"] == 0 for s in first)
    assert all(s["ffm"] > 0 and s["far"] > 0 for s in later)
    total = lambda s: s["ce_orig"] + s["fire_tri"] + s["ffm"] + 0.3 * s["far"]
    assert all(s["loss"] == pytest.approx(total(s), rel=1e-4) for s in later)
    state = torch.load(run / "state.pt", weights_only=False)["method"]
    assert state["clustered_epoch"] == 3 and len(state["clusters"]["labels"]) > 0


def test_fire_rebuilds_adam_at_each_clustered_epoch(tmp_path):
    """Adam's moments are reset when the clusters change (official), kept with loss.fire.keep_moments."""
    from ccreid.engine.training import build_training
    from ccreid.methods import DataInfo
    from ccreid.data.labels import get_label_set

    for keep in (False, True):
        cfg = load_config("synthetic", TINY + FIRE + [f"loss.fire.keep_moments={keep}"])
        data = DataInfo(4, 8, torch.ones(4, 8, dtype=torch.bool), (), "lip")
        training = build_training(cfg, data, torch.device("cpu"))
        method, old = training.method, training.main_optimizer
        p = next(training.model.parameters())
        p.grad = torch.ones_like(p)
        old.step()
        lr = old.param_groups[0]["lr"]
        clusters = cluster_identities(_unit(0, 8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        method.use_clusters(clusters, 1)
        new = training.main_optimizer
        assert new is not old and new.param_groups[0]["lr"] == lr
        fine = set(map(id, method.fine_classifier.parameters()))
        assert fine <= {id(q) for q in new.param_groups[0]["params"]}
        assert (p in new.state) == keep


@pytest.mark.timeout(300)
def test_fire_sigkill_then_resume_equals_uninterrupted(tmp_path, data):
    """Killed mid-epoch after the clustering started: clusters, their classifier, FAR and Adam come back."""
    extra = FIRE + ["train.checkpoint_every=0", "train.checkpoint_every_iters=2"]
    assert_kill_and_resume_equals_full(tmp_path, data, extra, "epoch-0002-iter")


@pytest.mark.timeout(300)
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="no torch.distributed gloo backend")
def test_fire_under_torchrun_clusters_once_for_all_processes(tmp_path):
    """Two processes: the clusters come from process 0 (the same on both), training ends and resumes."""
    out, data = tmp_path / "run", tmp_path / "synthetic"
    _torchrun(out, data, *FIRE, "train.epochs=3")
    assert [s["iter"] for s in _clustered_steps(out)] == list(range(1, 10))
    assert all(s["ffm"] > 0 for s in _clustered_steps(out) if s["epoch"] >= 2)


@pytest.mark.parametrize("override, message", [
    ("model.pooling=avg", "FAR needs max pooling"),
    ("model.last_stride=2", "FAR needs 2 cells or more"),
])
def test_fire_refuses_settings_where_far_cannot_work(tmp_path, capsys, override, message):
    """Average pooling (a recomposed part pools to its donor's mean) or a map too small for a standard deviation."""
    assert main(train_args(tmp_path / "run", tmp_path / "synthetic") + FIRE + [override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
