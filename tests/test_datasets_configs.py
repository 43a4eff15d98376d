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
