"""The packaged real-dataset configs load, name their dataset and keep the paper settings."""

from __future__ import annotations

import pytest

from ccreid.config import PACKAGED_CONFIGS, load_config
from ccreid.data.registry import DATASETS
import ccreid.data  # noqa: F401  (registers the adapters)

NAMES = ["prcc", "vcclothes", "nkup", "ltcc", "celebreid", "deepchange", "market1501"]


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_with_paper_settings(name):
    text = (PACKAGED_CONFIGS / f"{name}.yaml").read_text()
    assert text.startswith("# ") and "Expected layout" in text  # documented published numbers and layout
    cfg = load_config(name)
    assert cfg.data.name == name and cfg.data.name in DATASETS
    assert (cfg.data.height, cfg.data.width, cfg.data.ids_per_batch, cfg.data.images_per_id) == (384, 192, 8, 8)
    assert (cfg.model.backbone, cfg.model.last_stride, cfg.model.pooling, cfg.model.preset) == ("resnet50", 1, "avgmax", "ours")
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.weight_decay, cfg.train.milestones) == (60, 3.5e-4, 5e-4, [20, 40])
    assert cfg.train.select_on == "last" and cfg.data.parsing.labels == "lip"
    assert (cfg.loss.label_smoothing, cfg.loss.triplet_margin) == (0.1, 0.3)


FIRE_RECIPES = {"ltcc": (80, 25, 4, 8), "prcc": (30, 25, 4, 8), "celebreid": (80, 25, 8, 4), "deepchange": (80, 45, 8, 8)}


@pytest.mark.parametrize("name", sorted(FIRE_RECIPES))
def test_fire_configs_name_the_official_recipe(name):
    """configs/methods/fire_<dataset>.yaml: FIRe-CCReID's README and utils/arguments.py settings."""
    cfg = load_config(str(PACKAGED_CONFIGS / "methods" / f"fire_{name}.yaml"))
    epochs, start, ids, per_id = FIRE_RECIPES[name]
    assert cfg.data.name == name and cfg.model.preset == "fire" and cfg.model.pooling == "avgmax"
    assert (cfg.train.epochs, cfg.loss.fire.start_epoch, cfg.data.ids_per_batch, cfg.data.images_per_id) == (
        epochs, start, ids, per_id)
    assert (cfg.data.height, cfg.data.width, cfg.train.lr, cfg.train.weight_decay) == (384, 192, 3.5e-4, 5e-4)
    assert cfg.train.milestones == [20, 40, 60] and cfg.model.last_stride == 1
    fire = cfg.loss.fire
    assert (fire.eps, fire.k1, fire.k2, fire.far_weight, fire.scale, fire.epsilon) == (0.4, 20, 6, 0.3, 16.0, 0.1)


METHOD_CONFIGS = sorted(p.name for p in (PACKAGED_CONFIGS / "methods").glob("*.yaml"))


@pytest.mark.parametrize("name", METHOD_CONFIGS)
def test_every_method_config_loads_validates_and_names_its_sources(name):
    text = (PACKAGED_CONFIGS / "methods" / name).read_text()
    assert text.startswith("# ")
    cfg = load_config(str(PACKAGED_CONFIGS / "methods" / name))
    assert cfg.model.preset == name.split("_")[0].removesuffix(".yaml") and cfg.train.select_on == "last"
    if "_" in name:  # a dataset's recipe
        assert cfg.data.name in DATASETS


@pytest.mark.parametrize("name", ["cal_prcc", "cal_ltcc", "ps_prcc", "pcb_market1501", "vit_market1501"])
def test_comparison_recipes_quote_the_published_numbers(name):
    assert "Published" in (PACKAGED_CONFIGS / "methods" / f"{name}.yaml").read_text()


def recipe(name):
    return load_config(str(PACKAGED_CONFIGS / "methods" / f"{name}.yaml"))


@pytest.mark.parametrize("name", ["cal_prcc", "cal_ltcc"])
def test_cal_configs_are_simple_ccreids_recipe(name):
    cfg = recipe(name)
    assert (cfg.data.height, cfg.data.width, cfg.data.ids_per_batch, cfg.data.images_per_id) == (384, 192, 8, 8)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.milestones, cfg.train.warmup_epochs) == (
        3.5e-4, 5e-4, 60, [20, 40], 0)
    assert (cfg.model.pooling, cfg.loss.cal.start_epoch, cfg.loss.cal.w_tri, cfg.loss.label_smoothing) == (
        "avgmax", 25, 0.0, 0.1)


def test_ps_config_is_the_official_recipe():
    cfg = recipe("ps_prcc")
    assert (cfg.data.height, cfg.data.width, cfg.data.ids_per_batch, cfg.data.images_per_id) == (256, 128, 16, 4)
    assert (cfg.data.flip_p, cfg.data.pad, cfg.data.erasing_p, cfg.data.color_jitter, cfg.model.pooling) == (
        0.0, 10, 0.0, 0.1, "avg")
    optim = cfg.train.optim
    assert (optim.name, optim.momentum, optim.warmup_factor, cfg.train.warmup_epochs) == ("sgd", 0.9, 0.01, 10)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.milestones) == (3.5e-4, 5e-4, 60, [40, 80])
    assert (cfg.model.ps.sampling, cfg.loss.ps.w_feat, cfg.test.flip, cfg.test.feature) == ("batch_raster", 1.0, True, "bn")


def test_pcb_config_is_the_papers_recipe():
    cfg = recipe("pcb_market1501")
    assert (cfg.data.height, cfg.data.width, cfg.data.erasing_p, cfg.data.pad) == (384, 128, 0.0, 0)
    assert (cfg.train.optim.name, cfg.train.lr, cfg.train.epochs, cfg.train.milestones) == ("sgd", 0.1, 60, [40])
    assert cfg.train.warmup_epochs == 0 and cfg.train.optim.pretrained_lr_factor == 0.1 and not cfg.test.flip


def test_vit_config_is_transreids_recipe():
    cfg = recipe("vit_market1501")
    optim = cfg.train.optim
    assert (optim.name, optim.schedule, optim.warmup_factor, optim.min_factor) == ("sgd", "cosine", 0.01, 0.002)
    assert (optim.bias_lr_factor, optim.weight_decay_bias) == (2.0, 1e-4)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.warmup_epochs) == (0.008, 1e-4, 120, 5)
    assert (cfg.data.height, cfg.data.width, cfg.data.ids_per_batch, cfg.data.images_per_id) == (256, 128, 16, 4)
    assert (cfg.loss.label_smoothing, cfg.loss.vit.soft_margin, cfg.model.vit.drop_path) == (0.0, True, 0.1)
    assert (cfg.test.feature, cfg.test.flip) == ("pre", False)
