"""`ccreid parse --dataset`: the mirrored tree is found by every adapter with data.parsing.root=<out>;
training refuses or fills missing maps with a one-line message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

import ccreid.data  # noqa: F401  (registers the adapters)
from ccreid.config import load_config
from ccreid.data.datasets.common import LOADERS
from ccreid.data.manager import DataManager
from ccreid.methods.paper import check_cre_labels
from ccreid.errors import CCReIDError
from ccreid.parsing import dataset_items
from test_datasets_common import TRICKY, load, write_png_map, write_tree
from test_datasets_custom import ROWS, write_manifest
from test_datasets_deepchange import SPLITS as DEEPCHANGE
from test_datasets_ltcc import FILES as LTCC
from test_datasets_market1501 import FILES as MARKET
from test_datasets_nkup import MARKET as NKUP_MARKET
from test_datasets_nkup import PLUS, plus_name
from test_datasets_prcc import TEST as PRCC_TEST
from test_datasets_prcc import TRAIN as PRCC_TRAIN
from test_datasets_prcc import VAL as PRCC_VAL
from test_datasets_vcclothes import FILES as VC
from test_datasets_celebreid import FILES as CELEB
from test_datasets_ccvid import write_ccvid
from test_datasets_last import FILES as LAST
from test_datasets_mevid import write_mevid
from ccreid.data.records import frame_records
from tiny_run import TINY


def _deepchange(root: Path) -> None:
    base = root / "DeepChangeDataset"
    for folder, files in DEEPCHANGE.items():
        write_tree(base, [f"{folder}/{name}" for name in files])
        lines = ["image_name,tracklet_id"] + [f"{name},{tracklet}" for name, tracklet in files.items()]
        (base / f"{folder}-bbox.txt").write_text("\n".join(lines) + "\n")


def _custom(root: Path) -> Path:
    write_tree(root, [row[0] for row in ROWS])
    return write_manifest(root, ROWS)


TREES = {
    "prcc": lambda root: write_tree(root / "rgb", PRCC_TRAIN + PRCC_VAL + PRCC_TEST),
    "vcclothes": lambda root: write_tree(root / "VC-Clothes", VC),
    "ltcc": lambda root: write_tree(root / "LTCC_ReID", LTCC),
    "market1501": lambda root: write_tree(root / "Market-1501-v15.09.15", MARKET),
    "celebreid": lambda root: write_tree(root / "Celeb-reID", CELEB),
    "nkup": lambda root: [write_tree(root / "NKUP2_0126/NKUP2", [f"{split}/{p:04d}/app{a}/{plus_name(p, a, f, c)}"
                                                                 for p, a, f, c in rows])
                          for split, rows in PLUS.items()],
    "nkup_market_style": lambda root: write_tree(root / "NKUP", NKUP_MARKET),
    "deepchange": _deepchange,
    "custom": _custom,
    "last": lambda root: write_tree(root / "last", LAST),
    "ccvid": write_ccvid,
    "mevid": lambda root: write_mevid(root / "mevid"),
}


def test_every_registered_real_dataset_has_a_tree_here():
    assert set(LOADERS) - {"celebreid_light"} <= {name.split("_market")[0] for name in TREES}


@pytest.mark.parametrize("case", sorted(TREES))
def test_mirrored_maps_are_found_by_the_adapter(tmp_path, case):
    name = case.split("_market")[0]
    root = tmp_path / TRICKY / "data"
    made = TREES[case](root)
    data_root = made if isinstance(made, Path) else root  # custom: the CSV file itself
    out = tmp_path / "maps"
    items = dataset_items(name, data_root, out)
    for item in items:
        write_png_map(item.png)  # what ccreid parse writes there
    dataset = load(name, data_root, parsing=out)
    splits = [*dataset.protocols.values(), *dataset.val.values()]
    records = frame_records([*dataset.train, *(r for s in splits for r in (*s.query, *s.gallery))])
    by_image = {str(item.image): str(item.png) for item in items}
    assert records and {r.path for r in records} == set(by_image)
    assert all(r.parsing_path == by_image[r.path] for r in records)


#: the folder inside the dataset folder that data.root may name instead (the loader accepts both)
INNER = {"prcc": "rgb", "vcclothes": "VC-Clothes", "ltcc": "LTCC_ReID", "market1501": "Market-1501-v15.09.15",
         "celebreid": "Celeb-reID", "nkup": "NKUP2_0126/NKUP2", "nkup_market_style": "NKUP",
         "deepchange": "DeepChangeDataset", "last": "last"}


@pytest.mark.parametrize("case", sorted(INNER))
def test_maps_are_found_whichever_accepted_root_data_root_names(tmp_path, case):
    """Maps mirrored from the dataset folder, and one mirrored from the inner folder (as an earlier
    ``ccreid parse --root <inner>`` wrote it): both roots find every map and leave nothing to parse."""
    name = case.split("_market")[0]
    root = tmp_path / "data"
    TREES[case](root)
    inner, out = root / INNER[case], tmp_path / "maps"
    items = dataset_items(name, root, out)
    first = items[0].image
    for item in items[1:]:
        write_png_map(item.png, size=Image.open(item.image).size)
    write_png_map(out / first.relative_to(inner).with_suffix(".png"), size=Image.open(first).size)
    for data_root in (root, inner):
        assert all(r.parsing_path for r in load(name, data_root, parsing=out).all_records())
        assert not [item for item in dataset_items(name, data_root, out) if not item.png.is_file()]


def test_out_inside_the_dataset_is_refused(tmp_path):
    root = tmp_path / "prcc"
    TREES["prcc"](root)
    with pytest.raises(CCReIDError, match="inside the input folder"):
        dataset_items("prcc", root, root / "rgb" / "parsing")


def _config(manifest: Path, *extra: str):
    return load_config(None, TINY + ["data.name=custom", f"data.root={manifest}", "data.height=32", "data.width=16",
                                     "data.ids_per_batch=2", "data.images_per_id=2", *extra])


def test_missing_maps_error_names_the_parse_command(tmp_path):
    manifest = _custom(tmp_path / "mydata")
    with pytest.raises(CCReIDError) as err:
        DataManager(_config(manifest), need_parsing=True)
    message = str(err.value)
    assert f"ccreid parse --weights <SCHP .pth> --dataset custom --root {manifest} --out {manifest}-parsing" \
        in message and f"set data.parsing.root={manifest}-parsing" in message
    with pytest.raises(CCReIDError) as err:  # a parsing root that does not exist yet
        DataManager(_config(manifest, f"data.parsing.root={tmp_path / 'maps'}"), need_parsing=True)
    assert f"--out {tmp_path / 'maps'}`" in str(err.value) and "does not exist" in str(err.value)


def test_pascal_maps_are_refused_for_cre_only(tmp_path):
    cfg = _config(tmp_path / "x.csv", "data.parsing.labels=pascal", "model.preset=ours")
    with pytest.raises(CCReIDError, match="no clothes classes.*LIP or ATR"):
        check_cre_labels(cfg)
    cfg = _config(tmp_path / "x.csv", "data.parsing.labels=pascal", "model.cre.clothes_labels=[2]")
    check_cre_labels(cfg)  # an explicit clothes list is the user's choice


def _people(folder: Path) -> Path:
    """A custom dataset of 3 identities x 2 outfits x 2 cameras (train) and 2 test identities."""
    rows = [(f"train/{p}_{c}_{cam}.png", p, cam, c, "train") for p in range(3) for c in range(2) for cam in range(2)]
    rows += [(f"test/{p}_q.png", p, 0, 0, "query") for p in (7, 8)]
    rows += [(f"test/{p}_g{c}.png", p, 1, c, "gallery") for p in (7, 8) for c in range(2)]
    write_tree(folder, [row[0] for row in rows])
    return write_manifest(folder, rows, header="path,pid,camid,clothes_id,split")


def parse_train_args(root: Path, *extra: str) -> list:
    """``ccreid train`` of :func:`_people` in ``root/people`` (made here) into ``root/run``, with
    ``data.parsing.root=root/maps``: a tiny run of a method that reads maps (``ours``)."""
    manifest = _people(root / "people")
    return ["train", "-c", "synthetic", "--out", str(root / "run"), "--quiet", "--no-report", *TINY,
            "data.name=custom", f"data.root={manifest}", "data.height=32", "data.width=16", "data.ids_per_batch=2",
            "data.images_per_id=2", "model.preset=ours", f"data.parsing.root={root / 'maps'}", *extra]


def test_train_parses_missing_maps_first(schp_checkpoint, parsed_run, tmp_path, capsys, monkeypatch):
    """``parsed_run`` (conftest) is the parsing run: ``parse_train_args`` with the LIP weights, no maps before."""
    from ccreid.cli import main

    maps = tmp_path / "maps"
    base = parse_train_args(tmp_path)
    assert main(base + [f"data.parsing.weights={schp_checkpoint('atr')}"]) == 2  # labels stay lip
    assert "is an SCHP atr checkpoint but data.parsing.labels=lip; set data.parsing.labels=atr" in capsys.readouterr().err
    assert not maps.exists()
    assert len(list((parsed_run / "maps").rglob("*.png"))) == 18
    assert (parsed_run / "run" / "model.safetensors").is_file()
    for name in ("maps", "run"):  # that run and its maps here: every map exists
        shutil.copytree(parsed_run / name, tmp_path / name)
    from ccreid.parsing import HumanParser

    def not_needed(*args, **kwargs):
        raise AssertionError("the parser was built although every map exists")

    monkeypatch.setattr(HumanParser, "load", not_needed)
    assert main(base + [f"data.parsing.weights={schp_checkpoint('lip')}", "--overwrite"]) == 0


def test_data_check_parses_missing_maps_first(schp_checkpoint, tmp_path, capsys):
    from ccreid.cli import main

    manifest = _custom(tmp_path / "mydata")
    maps = tmp_path / "maps"
    args = ["data", "check", "--dataset", "custom", "--root", str(manifest), "--parsing", str(maps), "--quiet"]
    assert main(args + ["--weights", str(schp_checkpoint("lip")), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parsing"] == {"found": len(ROWS), "missing": 0, "resized": 0}
    assert main(["data", "check", "--dataset", "custom", "--root", str(manifest), "--weights", "x.pth"]) == 2
    assert "--weights needs --parsing" in capsys.readouterr().err
