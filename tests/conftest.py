"""Session fixtures: SCHP test checkpoints rebuilt from ../shared/schp's recipe (made once)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

#: the SCHP parity data (checkpoint recipe, images, golden outputs); CCREID_SCHP_DATA overrides
SCHP_DATA = Path(os.environ.get("CCREID_SCHP_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "schp"))


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory):
    """The user's cache (ONNX models of ``--backend auto``) in a temporary folder, never ~/.cache/ccreid."""
    from ccreid.inference.onnx_cache import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("user-cache")
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """``tiny_data(*overrides)``: a folder holding the synthetic dataset of tiny_run.TINY with ``overrides``
    (``data.synthetic.*`` keys, e.g. ``data.synthetic.ids=16``), rendered once a session per distinct
    dataset. Only for tests that read their data: never one that changes, corrupts or renders its folder."""
    from ccreid.config import load_config
    from ccreid.data.synthetic import generate
    from tiny_run import TINY

    made = {}

    def get(*overrides: str) -> Path:
        s = load_config("synthetic", [*TINY, *overrides]).data.synthetic
        options = dict(ids=s.ids, outfits=s.outfits, images_per_outfit=s.images_per_outfit, height=s.height,
                       width=s.width, seed=s.seed, extra_test_ids=s.extra_test_ids)
        key = tuple(options.values())
        if key not in made:
            made[key] = generate(tmp_path_factory.mktemp("tiny_data") / "synthetic", **options)
        return made[key]

    return get


@pytest.fixture(scope="session")
def schp_data() -> Path:
    if not (SCHP_DATA / "make_checkpoint.py").is_file():
        pytest.skip(f"SCHP parity data not found at {SCHP_DATA} (set CCREID_SCHP_DATA)")
    return SCHP_DATA


@pytest.fixture(scope="session")
def schp_checkpoint(schp_data, tmp_path_factory):
    """``schp_checkpoint(labels)``: the seed-1 test checkpoint of ``lip`` or ``atr`` in the official
    format; ATR is saved in torch's legacy (pre-1.6) format, as the released files are."""
    import torch

    sys.path.insert(0, str(schp_data))
    from make_checkpoint import make_state_dict

    folder = tmp_path_factory.mktemp("schp")
    made = {}

    def get(labels: str) -> Path:
        if labels not in made:
            path = folder / f"{labels}-seed1.pth"
            torch.save({"state_dict": make_state_dict(labels, 1), "epoch": 150}, path,
                       _use_new_zipfile_serialization=labels != "atr")
            made[labels] = path
        return made[labels]

    return get


@pytest.fixture(scope="session")
def parsed_run(schp_checkpoint, tmp_path_factory) -> Path:
    """A folder where ``ccreid train`` of test_parsing_datasets' 18 people images, with no maps yet and
    ``data.parsing.weights`` (LIP), parsed them (``maps/``; SCHP at 473x473: ~1 s an image on a CPU) and
    trained (``run/``). Read, never changed, by the tests of that run (copy it to change it)."""
    from ccreid.cli import main
    from test_parsing_datasets import parse_train_args

    root = tmp_path_factory.mktemp("parsed_run")
    assert main(parse_train_args(root, f"data.parsing.weights={schp_checkpoint('lip')}")) == 0
    return root
