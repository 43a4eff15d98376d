"""Config sections registered by method files and plug-ins (``register_section``), the value
checks kept with the fields (``setting``), and config.py's imports (issue 22)."""

from __future__ import annotations

import ast
import copy
import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import ccreid
from ccreid import config
from ccreid.config import Config, ModelConfig, load_config, register_section, setting, to_yaml
from ccreid.errors import CCReIDError

ROOT = Path(__file__).resolve().parents[1]
#: the packages config.py must not import (they import it)
UPPER = ("ccreid.engine", "ccreid.methods", "ccreid.models", "ccreid.data", "ccreid.losses", "ccreid.evaluation")


def _doc_plugin() -> str:
    """The plug-in of docs/EXTENDING.md's section "A plug-in's own config section"."""
    text = (ROOT / "docs" / "EXTENDING.md").read_text()
    section = text[text.index("### A plug-in's own config section"):]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def registry(monkeypatch):
    """Sections registered in the test are forgotten after it (other tests' config.yaml stay as they are)."""
    config.schema()  # the built-in sections first
    monkeypatch.setattr(config, "SECTIONS", dict(config.SECTIONS))
    monkeypatch.setattr(config, "_schemas", {})
    return config.SECTIONS


@pytest.fixture
def center(tmp_path, registry) -> Path:
    plugin = tmp_path / "center.py"
    plugin.write_text(_doc_plugin() + '\n@dataclass\nclass Extra:\n    kind: str = setting("l2", choices=("l2", "cos"))'
                      '\n\n\nregister_section("loss.center.extra", Extra)\n')
    return plugin


def test_config_py_imports_no_package_that_imports_it() -> None:
    tree = ast.parse((ROOT / "src" / "ccreid" / "config.py").read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    names += [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              for alias in node.names if node.module == "ccreid"]
    assert names and not [n for n in names if any(n == p or n.startswith(p + ".") for p in UPPER)]


def test_method_files_register_their_sections() -> None:
    from ccreid.methods import cal, paper, vit

    config.schema()
    assert config.SECTIONS["loss.cal"] is cal.CALConfig and config.SECTIONS["model.vit"] is vit.ViTConfig
    assert config.SECTIONS["model.cre"] is paper.CREConfig and config.SECTIONS["model.bsga"] is paper.BSGAConfig
    assert config.SECTIONS["loss.bctri"] is paper.BCTriConfig
    cfg = load_config(None, ["loss.cal.scale=8", "model.vit.sie=true", "loss.bctri.metric=cosine"])
    assert (cfg.loss.cal.scale, cfg.model.vit.sie, cfg.loss.bctri.metric) == (8.0, True, "cosine")
    assert isinstance(cfg.model, ModelConfig)
    with pytest.raises(CCReIDError, match=r"^config key 'loss.cal.start_epoch': -1 must be >= 0 \(0: from the start\)$"):
        load_config(None, ["loss.cal.start_epoch=-1"])
    with pytest.raises(CCReIDError, match=r"^config key 'model.cre.p': 1.5 must be in \[0, 1\]$"):
        load_config(None, ["model.cre.p=1.5"])
    with pytest.raises(CCReIDError, match=r"^config key 'model.bsga.loss': 'l1' is not one of bce, mse$"):
        load_config(None, ["model.bsga.loss=l1"])
    with pytest.raises(CCReIDError, match=r"^config key 'model.vit.sie_cameras': -2 must be >= 0"):
        load_config(None, ["model.vit.sie_cameras=-2"])


def test_sections_of_configs_built_directly_copies_and_pickles() -> None:
    assert ModelConfig(preset="ours").cre.p == 1.0 and Config().loss.cal.start_epoch == 25
    assert to_yaml(Config()) == to_yaml(load_config())
    cfg = load_config(None, ["loss.cal.scale=4"])
    for twin in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert twin == cfg and twin.loss.cal.scale == 4.0 and twin is not cfg
    with pytest.raises(AttributeError):
        ModelConfig().nope


def test_plugin_section_in_the_same_command_yaml_and_round_trip(center, tmp_path) -> None:
    cfg = load_config(None, [f"plugins=[{center}]", "loss.center.weight=0.01", "loss.center.extra.kind=cos"])
    assert cfg.loss.center.weight == 0.01 and cfg.loss.center.alpha == 0.5 and cfg.loss.center.extra.kind == "cos"
    assert cfg.plugins == [str(center)]
    saved = to_yaml(cfg)
    assert "  center:\n    weight: 0.01\n    alpha: 0.5\n    extra:\n      kind: cos\n" in saved
    (tmp_path / "config.yaml").write_text(saved)
    again = load_config(str(tmp_path / "config.yaml"))
    assert to_yaml(again) == saved and again.loss.center.weight == 0.01
    child = tmp_path / "child.yaml"
    child.write_text("_base_: config.yaml\nloss:\n  center:\n    alpha: 0.25\n")
    assert load_config(str(child), ["loss.center.weight=0.5"]).loss.center.alpha == 0.25
    yaml_plugin = tmp_path / "plugin.yaml"  # the plug-in named in the file, its values in the same file
    yaml_plugin.write_text(f"plugins: [{center}]\nloss:\n  center:\n    weight: 0.02\n")
    assert load_config(str(yaml_plugin)).loss.center.weight == 0.02


@pytest.mark.parametrize("override, message", [
    ("loss.center.weight=-1", r"config key 'loss.center.weight': -1.0 must be >= 0 \(0: off\)"),
    ("loss.center.alpha=2", r"config key 'loss.center.alpha': 2.0 must be in \[0, 1\]"),
    ("loss.center.extra.kind=l1", r"config key 'loss.center.extra.kind': 'l1' is not one of l2, cos"),
    ("loss.center.nope=1", r"config key 'loss.center.nope': Key 'nope' not in 'CenterConfig'"),
    ("loss.center.weight=abc", r"config key 'loss.center.weight': Value 'abc' (of type 'str' )?could not be converted"),
    ("loss.center.weight=[1,2]", r"override 'loss.center.weight=\[1,2\]': config key 'loss.center.weight' takes one "
                                 r"float value"),
    ("loss.center=3", r"override 'loss.center=3': config key 'loss.center' is a section of keys"),
])
def test_plugin_section_errors_are_one_line(center, override, message) -> None:
    with pytest.raises(CCReIDError, match=f"^{message}") as err:
        load_config(None, [f"plugins=[{center}]", override])
    assert "\n" not in str(err.value)


def test_plugin_yaml_shape_errors_name_the_file(center, tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"plugins: [{center}]\nloss:\n  center:\n    weight: [1, 2]\n")
    with pytest.raises(CCReIDError, match=f"^config file {path}: config key 'loss.center.weight' takes one float"):
        load_config(str(path))


def test_without_the_plugin_its_keys_are_unknown(registry) -> None:
    with pytest.raises(CCReIDError, match=r"^config key 'loss.center': Key 'center' not in 'LossConfig'"):
        load_config(None, ["loss.center.weight=0.01"])


def test_registration_errors(registry) -> None:
    from ccreid.methods.cal import CALConfig

    assert register_section("loss.cal", CALConfig) is CALConfig  # a re-import: fine

    @dataclass
    class Other:
        x: int = 1

    with pytest.raises(CCReIDError, match=r"config section 'loss.cal' is registered twice: by "
                                          r"ccreid.methods.cal.CALConfig and by .*Other"):
        register_section("loss.cal", Other)
    with pytest.raises(CCReIDError, match="loss already has a key 'w_ce'"):
        register_section("loss.w_ce", Other)
    with pytest.raises(CCReIDError, match="no section 'nope' to put it in"):
        register_section("nope.x", Other)
    with pytest.raises(CCReIDError, match="name a new key inside a section"):
        register_section("other", Other)
    with pytest.raises(CCReIDError, match="is not a dataclass"):
        register_section("loss.other", dict)

    @dataclass
    class Required:
        x: int

    with pytest.raises(CCReIDError, match=r"fields \['x'\] .* need defaults"):
        register_section("loss.required", Required)
    with pytest.raises(TypeError, match="unknown constraint"):
        setting(1, maximum=3)
    before = load_config(None, ["loss.cal.scale=2"])
    assert "loss.other" not in registry and register_section("loss.other")(Other) is Other
    assert load_config(None, ["loss.other.x=3"]).loss.other.x == 3
    assert before.loss.other.x == 1 and "  other:\n    x: 1\n" in to_yaml(before)  # loaded before: the default


def test_registered_checks_run_after_the_field_checks(registry, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(config, "CHECKS", list(config.CHECKS))
    config.register_check(lambda cfg: calls.append(cfg.seed))
    load_config(None, ["seed=7"])
    assert calls == [7]


def test_a_fresh_interpreter_checks_presets_from_ccreid_config() -> None:
    """``from ccreid.config import load_config`` alone: the built-in methods register before the first load."""
    code = ("from ccreid.config import load_config\n"
            "try:\n    load_config(None, ['model.preset=nope'])\nexcept Exception as err:\n    print(err)\n"
            "print(load_config(None, ['loss.cal.w_tri=1']).loss.cal.w_tri)\n")
    first = textwrap.dedent("""
        from dataclasses import dataclass
        from ccreid.config import load_config, register_section

        @register_section("model.cre.extra")  # a plug-in's section inside a method's, before any config
        @dataclass
        class Extra:
            k: int = 1

        print(load_config(None, ["model.cre.extra.k=3"]).model.cre.extra.k)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(ccreid.__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for script in (code, first)]  # two interpreters at once
    (out, err), (out_first, err_first) = (proc.communicate(timeout=600) for proc in procs)
    assert [proc.returncode for proc in procs] == [0, 0], err + err_first
    assert out.startswith("config key 'model.preset': unknown preset 'nope'; choose one of: baseline") and \
        out.endswith("\n1.0\n")
    assert out_first == "3\n"
