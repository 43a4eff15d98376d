"""PS against transcriptions of its official code (shuxjweb/pixel_sampling): the sampling rule of
``engine/trainer.py`` ``do_train_prcc_pix_mse`` on identical tensors and permutations, its statistics,
and ``layers.make_loss_with_triplet_entropy_mse`` (one CE and one triplet over the 2B rows, FeatLoss)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ccreid.config import load_config
from ccreid.errors import CCReIDError
from ccreid.losses import ReIDObjective
from ccreid.methods.ps import (GARMENT_GROUPS, PixelSampling, PSObjective, sample_pixels,
                               sample_pixels_same_position, sampling_feature_loss)
from ccreid.training.step import TrainBatch
from test_cre import person_maps

UPPER, LOWER = GARMENT_GROUPS["lip"]


# -- transcriptions of the official code -----------------------------------------------------------------

def official_sampling(img, mask, perms):
    """``do_train_prcc_pix_mse``'s sampling; ``mask`` [B, H, W] holds 2 (upper clothes) and 3 (pants),
    ``perms`` the two ``np.random.permutation(b)`` draws."""
    mask_i = mask.unsqueeze(dim=1)
    mask_i = mask_i.expand_as(img)
    img_a = copy.deepcopy(img)
    index = perms[0]
    img_r = img[index]
    msk_r = mask_i[index]
    img_a[mask_i == 2] = img_r[msk_r == 2]
    index = perms[1]
    img_r = img[index]
    msk_r = mask_i[index]
    img_a[mask_i == 3] = img_r[msk_r == 3]
    return img_a


def official_euclidean_dist(x, y):
    m, n = x.size(0), y.size(0)
    xx = torch.pow(x, 2).sum(1, keepdim=True).expand(m, n)
    yy = torch.pow(y, 2).sum(1, keepdim=True).expand(n, m).t()
    dist = xx + yy
    dist = dist - 2 * torch.mm(x, y.t())
    return dist.clamp(min=1e-12).sqrt()


def official_triplet(global_feat, labels, margin=0.3):
    dist_mat = official_euclidean_dist(global_feat, global_feat)
    N = dist_mat.size(0)
    is_pos = labels.expand(N, N).eq(labels.expand(N, N).t())
    is_neg = labels.expand(N, N).ne(labels.expand(N, N).t())
    dist_ap, _ = torch.max(dist_mat[is_pos].contiguous().view(N, -1), 1, keepdim=True)
    dist_an, _ = torch.min(dist_mat[is_neg].contiguous().view(N, -1), 1, keepdim=True)
    dist_ap, dist_an = dist_ap.squeeze(1), dist_an.squeeze(1)
    y = dist_an.new().resize_as_(dist_an).fill_(1)
    return nn.MarginRankingLoss(margin=margin)(dist_an, dist_ap, y)


def official_xent(inputs, targets, num_classes, epsilon=0.1):
    log_probs = nn.LogSoftmax(dim=1)(inputs)
    targets = torch.zeros(log_probs.size()).scatter_(1, targets.unsqueeze(1).data.cpu(), 1)
    targets = (1 - epsilon) * targets + epsilon / num_classes
    return (- targets * log_probs).mean(0).sum()


def official_feat_loss(feat1, feat2):
    dist = torch.pow(torch.abs(feat1 - feat2), 2).sum(dim=-1)
    return (1. / (1. + torch.exp(-dist))).mean()


def official_loss(score, feat, target, num_classes):
    """``make_loss_with_triplet_entropy_mse``'s loss_func on ``model(cat([img, img_a]))``."""
    B = int(score.shape[0] / 2)
    return official_xent(score, target, num_classes) + official_triplet(feat, target) + \
        official_feat_loss(feat[0: B], feat[B:])


# -- the sampling rule -----------------------------------------------------------------------------------

def group_map(parsing):
    """ccreid's LIP map -> the official code's group indices (2: upper clothes, 3: lower clothes)."""
    mask = torch.zeros_like(parsing)
    mask[torch.isin(parsing, torch.tensor(UPPER))] = 2
    mask[torch.isin(parsing, torch.tensor(LOWER))] = 3
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sample_pixels_is_the_official_rule_on_identical_tensors_and_permutations(seed):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(6, 3, 64, 32, generator=gen)
    parsing = person_maps(6, seed=seed)
    parsing[2, 30:54] = 12  # a skirt: same lower group as pants
    parsing[4, 10:30] = 0  # an image without upper clothes
    state = gen.get_state()
    perms = [torch.randperm(6, generator=gen) for _ in range(2)]
    gen.set_state(state)
    ours = sample_pixels(images, parsing, GARMENT_GROUPS["lip"], gen)
    assert torch.equal(ours, official_sampling(images, group_map(parsing), perms))
    assert not torch.equal(ours, images)


def test_batch_raster_statistics_replace_nearly_all_garment_pixels_from_elsewhere():
    """Values are their own source index: the official rule replaces nearly every garment value with one
    from another position (rarely its own), filling each garment from several images; same_position
    copies from one other image, only at the same positions."""
    batch, shape = 16, (16, 3, 64, 32)
    parsing = person_maps(batch, seed=3)
    images = torch.arange(torch.Size(shape).numel(), dtype=torch.float64).view(shape)
    garment = torch.isin(parsing, torch.tensor(UPPER + LOWER))[:, None].expand(shape)
    gen = torch.Generator().manual_seed(0)
    for rule in (sample_pixels, sample_pixels_same_position):
        out = rule(images, parsing, GARMENT_GROUPS["lip"], gen)
        assert torch.equal(out[~garment], images[~garment])
        source = out.long()[garment]
        own = images.long()[garment]
        replaced = (source != own).double().mean().item()
        same_position = (source % (3 * 64 * 32) == own % (3 * 64 * 32)).double().mean().item()
        images_per_garment = [len(set((out[b][garment[b]].long() // (3 * 64 * 32)).tolist())) for b in range(batch)]
        if rule is sample_pixels:
            assert replaced > 0.9 and same_position < 0.1 and min(images_per_garment) >= 2
        else:
            assert same_position == 1.0 and max(images_per_garment) <= 3  # own + one image per group
            assert 0.3 < replaced < 1.0  # only where the other image has the garment too


def test_pixel_sampling_copies_only_images_with_a_map_with_the_chosen_rule():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 64, 32, generator=gen)
    parsing = person_maps(4)
    parsing[2] = -1
    batch = TrainBatch(images=images, pids=torch.arange(4), clothes=torch.arange(4), index=torch.arange(10, 14),
                       has_parsing=torch.tensor([True, True, False, True]), is_copy=torch.zeros(4, dtype=torch.bool),
                       parsing=parsing)
    for rule in (sample_pixels, sample_pixels_same_position):
        state = gen.get_state()
        result = PixelSampling(GARMENT_GROUPS["lip"], rule)(batch, gen)
        gen.set_state(state)
        assert torch.equal(result.images[4:], rule(images, parsing, GARMENT_GROUPS["lip"], gen)[[0, 1, 3]])
        assert result.is_copy.tolist() == [False] * 4 + [True] * 3 and result.index.tolist() == [10, 11, 12, 13, 10, 11, 13]
        assert result.pids.tolist() == [0, 1, 2, 3, 0, 1, 3] and result.counts == {"num_erased": 3, "num_without_map": 1}


# -- the objective ---------------------------------------------------------------------------------------

def test_ps_objective_equals_the_official_loss_and_its_gradients():
    """One CE and one triplet over the 2B rows (not CE(orig) + CE(copies)) plus FeatLoss on the pooled features."""
    torch.manual_seed(0)
    classes, b = 5, 8
    feat = torch.randn(2 * b, 12, requires_grad=True)
    score = torch.randn(2 * b, classes, requires_grad=True)
    target = torch.arange(b) // 2
    target_c = torch.cat([target, target])
    expected = official_loss(score, feat, target_c, classes)
    grads = torch.autograd.grad(expected, [feat, score])
    is_copy = torch.arange(2 * b) >= b
    objective = PSObjective(ReIDObjective(classes, label_smoothing=0.1, triplet_margin=0.3), w_feat=1.0)
    loss, terms = objective({"feat": feat, "logits": score, "attention": []}, target_c, target_c, is_copy,
                            None, torch.ones(2 * b, dtype=torch.bool))
    torch.testing.assert_close(loss, expected)
    for ours, theirs in zip(torch.autograd.grad(loss, [feat, score]), grads):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(terms["ce_orig"], official_xent(score, target_c, classes).detach())
    assert terms["ce_erased"] == 0
    torch.testing.assert_close(terms["ps_feat"], official_feat_loss(feat[:b], feat[b:]).detach())


def test_feature_loss_pairs_each_copy_with_its_original():
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(sampling_feature_loss(a, b), official_feat_loss(a, b))
    assert sampling_feature_loss(a[:0], b[:0]).item() == 0.0
    # row 1 has no map: no copy; the copies (rows 5..8) follow originals 0, 2, 3, 4
    feat = torch.cat([a, b[[0, 2, 3, 4]]])
    has_mask = torch.tensor([True, False, True, True, True] + [True] * 4)
    is_copy = torch.arange(9) >= 5
    pids = torch.tensor([0, 0, 1, 1, 2, 0, 1, 1, 2])
    objective = PSObjective(ReIDObjective(3), w_feat=2.0)
    _, terms = objective({"feat": feat, "logits": torch.randn(9, 3), "attention": []}, pids, pids, is_copy, None,
                         has_mask)
    torch.testing.assert_close(terms["ps_feat"], official_feat_loss(a[[0, 2, 3, 4]], b[[0, 2, 3, 4]]))


def test_ps_options_are_checked():
    cfg = load_config(None, ["model.preset=ps"])
    assert (cfg.model.ps.sampling, cfg.loss.ps.w_feat) == ("batch_raster", 1.0)
    assert load_config(None, ["model.ps.sampling=same_position"]).model.ps.sampling == "same_position"
    with pytest.raises(CCReIDError, match="model.ps.sampling"):
        load_config(None, ["model.ps.sampling=random"])
    with pytest.raises(CCReIDError, match="loss.ps.w_feat"):
        load_config(None, ["loss.ps.w_feat=-1"])
