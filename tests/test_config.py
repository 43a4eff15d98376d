"""Config loading: defaults, YAML, dotted overrides, one-line errors naming the key."""

import pytest

from ccreid.config import load_config, to_yaml
from ccreid.errors import CCReIDError
from ccreid.methods import resolve_preset
from ccreid.methods.paper import ABLATION_SWITCHES, Switches


def test_defaults_follow_method_md():
    cfg = load_config()
    assert (cfg.data.height, cfg.data.width) == (384, 192)
    assert cfg.model.backbone == "resnet50" and cfg.model.last_stride == 1
    assert (cfg.data.ids_per_batch, cfg.data.images_per_id) == (8, 8)
    assert cfg.train.lr == pytest.approx(3.5e-4) and cfg.train.milestones == [20, 40]
    assert cfg.loss.label_smoothing == pytest.approx(0.1) and cfg.loss.triplet_margin == pytest.approx(0.3)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\nmodel:\n  backbone: resnet18\n")
    cfg = load_config(str(path), ["train.epochs=3", "model.preset=ours", "train.milestones=[1,2]"])
    assert cfg.train.epochs == 3 and cfg.model.backbone == "resnet18"
    assert cfg.model.preset == "ours" and cfg.train.milestones == [1, 2]


def test_packaged_config_by_name():
    cfg = load_config("synthetic")
    assert cfg.data.name == "synthetic"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochz=3", "train.epochz"),
        ("train.epochs=abc", "train.epochs"),
        ("model.cre.fill=blue", "model.cre.fill"),
        ("model.cre.p=1.5", "model.cre.p"),
        ("model.cre.losses=[ce,foo]", "model.cre.losses"),
        ("data.ids_per_batch=0", "data.ids_per_batch"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, key):
    with pytest.raises(CCReIDError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert key in message and "\n" not in message


def test_missing_file_and_bad_override():
    with pytest.raises(CCReIDError, match="not found"):
        load_config("no/such/file.yaml")
    with pytest.raises(CCReIDError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_bad_yaml_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(CCReIDError) as err:
        load_config(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.preset=ours-wo-bsga", "seed=5"])
    path = tmp_path / "saved.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(str(path)) == cfg


def test_presets_and_overrides():
    assert set(ABLATION_SWITCHES) == {"baseline", "baseline+bsga", "baseline+cre", "baseline+bctri", "ours-wo-bsga",
                                      "ours"}
    switches = lambda *overrides: Switches.of(resolve_preset(load_config(None, list(overrides))))
    assert switches("model.preset=ours") == ABLATION_SWITCHES["ours"]
    assert switches("model.preset=baseline", "model.cre.enabled=true").cre is True
    assert switches("model.preset=ours", "model.bsga.enabled=false").bsga is False
    assert switches("model.preset=baseline", "loss.bctri.enabled=true").bctri is True
    with pytest.raises(CCReIDError, match="model.preset"):
        load_config(None, ["model.preset=mine"])


@pytest.mark.parametrize("preset", ["fire", "ps", "pcb"])
def test_switches_on_a_method_without_them_are_refused(preset):
    with pytest.raises(CCReIDError, match=f"model.cre.enabled.*model.preset={preset} does not take"):
        load_config(None, [f"model.preset={preset}", "model.cre.enabled=true"])
    load_config(None, [f"model.preset={preset}", "model.cre.enabled=false"])  # off is what it does anyway


def test_bare_off_means_off_from_the_command_line_and_yaml(tmp_path):
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n")
    assert load_config(str(path)).train.amp == "off"


def test_base_inheritance_relative_and_packaged(tmp_path):
    (tmp_path / "common.yaml").write_text("_base_: prcc\ntrain:\n  epochs: 7\n")
    (tmp_path / "mine.yaml").write_text("_base_: common.yaml\ndata:\n  root: /data/x\n")
    cfg = load_config(str(tmp_path / "mine.yaml"))
    assert (cfg.data.name, cfg.data.root, cfg.train.epochs, cfg.model.pooling) == ("prcc", "/data/x", 7, "avgmax")
    assert "_base_:" not in to_yaml(cfg)  # a run's config.yaml is self-contained


def test_base_cycles_and_non_mappings_are_one_line_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(CCReIDError, match="inherits from itself"):
        load_config(str(tmp_path / "a.yaml"))
    with pytest.raises(CCReIDError, match="top level must be a mapping"):
        load_config(str(tmp_path / "list.yaml"))


@pytest.mark.parametrize("override,expected", [
    ("model.bsga.stages=[layer2", "cannot parse the value (did not find expected ',' or ']')"),
    ("train.milestones=[1,,2]", "cannot parse the value"),
    ("train.milestones=[[1]]", "config key 'train.milestones' takes a list of int, got [[1]]; write a list as [a,b]"),
    ("model.cre.clothes_labels=[[1,2]]", "takes a list of int"),
    ("model.bsga.stages={a:1}", "config key 'model.bsga.stages' takes a list of str"),
    ("model.bsga.stages=layer3", "write a list as [a,b] (e.g. model.bsga.stages=[layer4])"),
    ("train.milestones=5", "write a list as [a,b] (e.g. train.milestones=[20,40])"),
    ("train.epochs=[1]", "config key 'train.epochs' takes one int value, got a list ([1])"),
    ("data.root=a: b", "quote text"),
    ("model=3", "config key 'model' is a section of keys"),
    ("=3", "must look like key=value"),
])
def test_override_syntax_and_shape_errors_name_the_override(override, expected):
    with pytest.raises(CCReIDError) as err:
        load_config("synthetic", [override])
    message = str(err.value)
    assert expected in message and repr(override) in message and "\n" not in message, message
    assert "AnyNode" not in message and "ListConfig" not in message


def test_yaml_file_shape_errors_name_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  bsga:\n    stages: layer3\n")
    with pytest.raises(CCReIDError, match=f"config file {path}: config key 'model.bsga.stages' takes a list"):
        load_config(str(path))


def test_missing_or_odd_base_names_the_including_file(tmp_path):
    mine = tmp_path / "mine.yaml"
    for base, expected in (("nope.yaml", "_base_ nope.yaml not found: neither"), (".", "is a folder"),
                           ("[a, b]", "_base_ must name one config file")):
        mine.write_text(f"_base_: {base}\n")
        with pytest.raises(CCReIDError) as err:
            load_config(str(mine))
        assert f"config file {mine}: " in str(err.value) and expected in str(err.value), str(err.value)
