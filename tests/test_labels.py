import json

import pytest
import torch

from ccreid.data.labels import ATR, LIP, LabelSet, body_shape_mask, clothes_mask, get_label_set
from ccreid.errors import CCReIDError


def test_lip_matches_method():
    lip = get_label_set("lip")
    assert lip is LIP and lip.num_classes == 20
    assert lip.clothes == {1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19}
    assert lip.body == {2, 13, 14, 15, 16, 17}
    assert lip.clothes | lip.body | {0} == set(range(20))


def test_atr_matches_method():
    atr = get_label_set("ATR")
    assert atr is ATR and atr.num_classes == 18
    assert atr.clothes == {1, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17}
    assert atr.body == {2, 11, 12, 13, 14, 15}
    assert atr.clothes | atr.body | {0} == set(range(18))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_user_table(tmp_path, suffix):
    path = tmp_path / f"mine{suffix}"
    table = {"clothes": [3, 1], "body": [2, 4]}
    path.write_text(json.dumps(table) if suffix == ".json" else "clothes: [3, 1]\nbody: [2, 4]\n")
    labels = get_label_set(str(path))
    assert labels == LabelSet("mine", 5, frozenset({1, 3}), frozenset({2, 4}))


@pytest.mark.parametrize(
    "text",
    ["clothes: [1, 2]\n", "clothes: [1]\nbody: [1]\n", "clothes: [a]\nbody: [2]\n", "clothes: [0]\nbody: [2]\n",
     "clothes: [1\n", "- 1\n"],
)
def test_bad_table_is_one_line_error(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CCReIDError) as err:
        get_label_set(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_name_error():
    with pytest.raises(CCReIDError, match="neither a built-in"):
        get_label_set("nope")


def test_masks_any_shape_and_no_map():
    parsing = torch.tensor([[[-1, 0, 5], [2, 13, 18]], [[19, 7, -1], [0, 0, 9]]])
    expected_clothes = torch.tensor([[[0, 0, 1], [0, 0, 1]], [[1, 1, 0], [0, 0, 1]]], dtype=torch.bool)
    assert torch.equal(clothes_mask(parsing, LIP), expected_clothes)
    assert torch.equal(clothes_mask(parsing, [5, 18, 19, 7, 9]), expected_clothes)
    assert torch.equal(body_shape_mask(parsing), parsing > 0)
    assert not body_shape_mask(torch.full((4,), -1)).any()
    brute = torch.tensor([v in LIP.clothes for v in parsing.flatten().tolist()]).view_as(parsing)
    assert torch.equal(clothes_mask(parsing, LIP), brute)
