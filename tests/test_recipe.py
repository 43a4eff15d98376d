"""``train.optim`` (the comparison methods' recipes) against transcriptions of the official schedulers:
BoT's ``WarmupMultiStepLR`` (pixel_sampling ``solver/lr_scheduler.py``) and TransReID's
``CosineLRScheduler`` (``solver/cosine_lr.py`` as ``solver/scheduler_factory.py`` builds it); the
optimizer's parameter groups; the check that refuses it for methods that ignore it."""

from __future__ import annotations

import math
from bisect import bisect_right

import pytest
import torch

from ccreid.config import load_config
from ccreid.errors import CCReIDError
from ccreid.methods import PRESETS, DataInfo, lr_factor, resolve_preset
from ccreid.methods.recipe import recipe_lr_factor


def bot_warmup_multistep(last_epoch, milestones, gamma, warmup_factor, warmup_iters):
    warmup = 1
    if last_epoch < warmup_iters:
        alpha = last_epoch / warmup_iters
        warmup = warmup_factor * (1 - alpha) + alpha
    return warmup * gamma ** bisect_right(milestones, last_epoch)


def transreid_cosine(t, t_initial, warmup_t, base=1.0):
    """``_get_lr`` with lr_min 0.002 base, warmup_lr_init 0.01 base, t_mul 1, decay 0.1, cycle_limit 1."""
    lr_min, warmup_lr_init = 0.002 * base, 0.01 * base
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    i = t // t_initial
    t_curr = t - t_initial * i
    if i < 1:
        return lr_min * 0.1 ** i + 0.5 * (base * 0.1 ** i - lr_min * 0.1 ** i) * (1 + math.cos(math.pi * t_curr / t_initial))
    return lr_min


def test_step_schedule_with_a_warmup_factor_is_bots_warmup_multistep():
    cfg = load_config(None, ["model.preset=ps", "train.epochs=60", "train.milestones=[40,80]", "train.warmup_epochs=10",
                             "train.optim.warmup_factor=0.01", "train.optim.name=sgd"])
    for epoch in range(60):  # the official scheduler steps once per epoch, after it
        assert recipe_lr_factor(epoch, cfg) == pytest.approx(bot_warmup_multistep(epoch, [40, 80], 0.1, 0.01, 10))
    cfg.train.optim.warmup_factor = None  # ccreid's rule
    assert [recipe_lr_factor(e, cfg) for e in range(60)] == [lr_factor(e, cfg) for e in range(60)]


def test_cosine_schedule_is_transreids_stepped_with_the_one_based_epoch():
    cfg = load_config(None, ["model.preset=vit", "train.epochs=120", "train.warmup_epochs=5",
                             "train.optim.schedule=cosine", "train.optim.warmup_factor=0.01"])
    for epoch in range(120):  # TransReID: scheduler.step(epoch) before each epoch = 1..120
        assert recipe_lr_factor(epoch, cfg) == pytest.approx(transreid_cosine(epoch + 1, 120, 5))


def method_for(overrides):
    cfg = load_config(None, ["model.preset=pcb", "model.backbone=resnet18", "model.width_mult=0.25",
                             "model.pretrained=none", *overrides])
    preset = resolve_preset(cfg)
    data = DataInfo(4, 4, torch.eye(4, dtype=torch.bool), (5,))
    method = preset.method(cfg, preset, data)
    method.setup(method.build_model(), torch.device("cpu"))
    return method


def test_sgd_groups_put_bias_parameters_apart_and_defaults_keep_the_trainers_adam():
    optimizer, _ = method_for([]).main_optimizer()
    assert type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1
    method = method_for(["train.optim.name=sgd", "train.optim.bias_lr_factor=2", "train.optim.weight_decay_bias=1e-4",
                         "train.lr=0.008", "train.weight_decay=1e-4"])
    optimizer, scheduler = method.main_optimizer()
    weights, bias = optimizer.param_groups
    names = {id(p): n for n, p in method.model.named_parameters()}
    assert type(optimizer) is torch.optim.SGD and weights["momentum"] == 0.9
    assert all("bias" in names[id(p)] for p in bias["params"]) and bias["params"]
    assert not any("bias" in names[id(p)] for p in weights["params"])
    assert len(weights["params"]) + len(bias["params"]) == len(list(method.model.parameters()))
    assert (bias["lr"], bias["weight_decay"], weights["lr"], weights["weight_decay"]) == pytest.approx(
        (0.016 * lr_factor(0, method.cfg), 1e-4, 0.008 * lr_factor(0, method.cfg), 1e-4))


@pytest.mark.parametrize("preset", ["baseline", "ours", "cal", "fire"])
def test_train_optim_is_refused_for_methods_that_ignore_it(preset):
    assert preset in PRESETS
    with pytest.raises(CCReIDError, match="train.optim"):
        load_config(None, [f"model.preset={preset}", "train.optim.name=sgd"])
    load_config(None, [f"model.preset={preset}"])  # the defaults pass


def test_pretrained_lr_factor_slows_the_backbone_only():
    method = method_for(["train.optim.name=sgd", "train.optim.pretrained_lr_factor=0.1", "train.lr=0.1",
                         "train.warmup_epochs=0"])
    optimizer, _ = method.main_optimizer()
    names = {id(p): n for n, p in method.model.named_parameters()}
    lrs = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lrs and all(lr == pytest.approx(0.01 if n.startswith("backbone.") else 0.1) for n, lr in lrs.items())
    assert {n.split(".")[0] for n, lr in lrs.items() if lr == pytest.approx(0.1)} == {"reduce", "classifiers"}


def test_a_recipe_trains_with_its_schedule(tmp_path):
    """A tiny pcb run with SGD and the cosine schedule: the logged lr (the first group: the backbone's
    weights) follows recipe_lr_factor epoch by epoch."""
    import json

    from ccreid.cli import main
    from tiny_run import TINY

    keys = ["train.optim.name=sgd", "train.optim.schedule=cosine", "train.optim.warmup_factor=0.01",
            "train.warmup_epochs=2", "train.lr=0.01", "train.optim.pretrained_lr_factor=0.1"]
    run = tmp_path / "run"
    assert main(["train", "-c", "synthetic", "--out", str(run), "--quiet", "--no-report", f"data.root={tmp_path / 'd'}",
                 *TINY, "data.synthetic.ids=16", "train.epochs=3", "model.preset=pcb", *keys]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"iter"' in line]
    cfg = load_config(None, ["model.preset=pcb", "train.epochs=3", *keys])
    assert {r["epoch"] for r in records} == {1, 2, 3}
    for r in records:
        assert r["lr"] == pytest.approx(0.01 * 0.1 * recipe_lr_factor(r["epoch"] - 1, cfg))
