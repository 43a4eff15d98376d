"""Typed configuration: dataclasses, YAML files and dotted command-line overrides.

``load_config("configs/synthetic.yaml", ["train.epochs=3"])`` merges, in order, the
dataclass defaults (METHOD.md's paper settings), the YAML file and the overrides, and
checks keys and types (omegaconf structured configs). No global state: every run gets
its own :class:`Config` object.

The core sections are below; a method's own options are a section its file registers
(``register_section("loss.cal", CALConfig)``), a plug-in's too. Value checks live with the
fields (:func:`setting`: choices, bounds), read by :func:`validate` over every section;
checks that need other registries are registered from outside (:func:`register_check`).
This module imports no other part of ccreid but its leaves (``errors``, ``choices``); the
built-in methods register themselves as plug-ins do: :data:`BUILTIN_PLUGINS` are imported by
name before a config is first built, loaded or checked.
"""

from __future__ import annotations

import functools
import importlib
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ccreid.choices import AMP_MODES, AP_MODES, FEATURES, MISSING_MODES, POOLINGS, SELECT_ON
from ccreid.errors import CCReIDError, first_line

PACKAGED_CONFIGS = Path(__file__).parent / "configs"

#: what a field's ``metadata`` may say about its values (:func:`setting`; checked by :func:`validate`)
CONSTRAINTS = ("choices", "items", "min", "meaning", "above", "range")


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, **constraints: Any) -> Any:
    """A config field and the checks of its value, in one place: ``choices`` (allowed values),
    ``items`` (allowed items of a list), ``min`` (lowest value; ``meaning``: what it means, e.g.
    ``"0: off"``), ``above`` (values must be greater), ``range`` (``(low, high)``, inclusive).
    ``None`` passes them all (optional keys left unset)."""
    unknown = sorted(set(constraints) - set(CONSTRAINTS))
    if unknown:
        raise TypeError(f"setting(): unknown constraint(s) {unknown}; use {', '.join(CONSTRAINTS)}")
    return field(default=default, default_factory=default_factory, metadata=constraints)


class _Sections:
    """Core sections built directly (``ModelConfig(...)``, ``Config()``) still have the sections
    registered inside them, with their defaults, as attributes (``cfg.model.vit.name``)."""

    def __getattr__(self, name: str) -> Any:
        section = None if name.startswith("_") else _default_section(type(self), name)
        if section is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.__dict__[name] = section
        return section


@dataclass
class SyntheticConfig(_Sections):
    """Options of the procedural datasets (used when ``data.name=synthetic``); ``frames`` and
    ``tracklets_per_outfit`` are the video benchmark's (``ccreid.data.synthetic_video``)."""

    ids: int = setting(120, min=1)
    extra_test_ids: int = setting(0, min=0, meaning="0: none")
    outfits: int = setting(3, min=1)
    images_per_outfit: int = setting(6, min=1)
    height: int = setting(128, min=1)
    width: int = setting(64, min=1)
    seed: int = 0
    frames: int = setting(16, min=2)  # video: the longest tracklet (each has frames - frames // 4 .. frames)
    tracklets_per_outfit: int = setting(2, min=1)  # video: per person and outfit (training), gallery per person


@dataclass
class ParsingConfig(_Sections):
    """Human-parsing maps: tree root (mirrors the image tree), label set, and the SCHP
    checkpoint that makes the missing maps before training."""

    root: Optional[str] = None
    labels: str = "lip"  # lip | atr | pascal | path to a table
    missing: str = setting("auto", choices=MISSING_MODES)  # auto (error when CRE/BSGA need maps) | error | skip
    weights: Optional[str] = None  # SCHP .pth: `ccreid train` parses missing maps into `root` first


@dataclass
class VideoDataConfig(_Sections):
    """Clips of tracklets (video datasets: ccvid, mevid, synthetic_video), as Simple-CCReID samples them."""

    seq_len: int = setting(8, min=1)  # frames per clip, in training and at test
    stride: int = setting(4, min=1)  # frame step inside a clip
    # training tracklets cut into chunks of this many frames (the last keeps the rest); 0: whole tracklets
    chunk: int = setting(64, min=0, meaning="0: whole tracklets (MEVID's DENSE_SAMPLING False)")


@dataclass
class DataConfig(_Sections):
    name: str = "synthetic"
    root: str = "data/synthetic"
    height: int = setting(384, min=1)
    width: int = setting(192, min=1)
    ids_per_batch: int = setting(8, min=1)  # P
    images_per_id: int = setting(8, min=1)  # K
    workers: int = setting(2, min=0, meaning="0: load in the main process")
    flip_p: float = setting(0.5, range=(0, 1))
    pad: int = setting(10, min=0, meaning="0: no padding")
    erasing_p: float = setting(0.5, range=(0, 1))
    # colour jitter after the crop (image only): brightness, contrast, saturation and hue each by this much; 0: off
    color_jitter: float = setting(0.0, range=(0, 0.5))
    # decoded training images + maps kept in memory when all fit in this many MB; 0: off
    cache_mb: int = setting(0, min=0, meaning="0: off")
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    video: VideoDataConfig = field(default_factory=VideoDataConfig)


@dataclass
class ModelConfig(_Sections):
    """The network; methods register their own sections here (``model.cre``, ``model.bsga``,
    ``model.vit``: ``ccreid.methods.paper`` and ``ccreid.methods.vit``)."""

    preset: str = "baseline"
    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101 | timm:<timm model name>
    pretrained: str = "imagenet"  # imagenet | none | path to a local .safetensors/.pth weight file
    width_mult: float = 1.0
    last_stride: int = 1
    pooling: str = setting("avg", choices=POOLINGS)
    # video backbone around the image one: c2d | i3d | ap3d | nl | ap3dnl; None: an image model (a video
    # dataset sets c2d when it is left unset)
    video: Optional[str] = None


@dataclass
class LossConfig(_Sections):
    """Loss weights; methods register their own sections here (``loss.bctri``, ``loss.cal``)."""

    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    w_ce: float = 1.0
    w_tri: float = 1.0
    w_bctri: float = 1.0
    w_bsga: float = 1.0


@dataclass
class TrainConfig(_Sections):
    epochs: int = setting(60, min=1)
    lr: float = setting(3.5e-4, above=0)
    weight_decay: float = 5e-4
    milestones: List[int] = field(default_factory=lambda: [20, 40])
    gamma: float = 0.1
    warmup_epochs: int = setting(10, min=0, meaning="0: no warm-up")
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto (bf16 on CUDA, and on bf16 CPUs where engine/precision.py passes) | off | bf16 | fp16
    amp: str = setting("auto", choices=AMP_MODES)
    log_every: int = setting(20, min=1)
    eval_every: int = setting(0, min=0, meaning="0: only at the end")
    # epochs between resumable checkpoints (0: only the final weights)
    checkpoint_every: int = setting(1, min=0, meaning="0: only the final weights")
    # also every N iterations, mid-epoch (0: off); --resume continues exactly
    checkpoint_every_iters: int = setting(0, min=0, meaning="0: off")
    # the last N resumable checkpoints are kept (each holds weights + optimizer state)
    keep_checkpoints: int = setting(1, min=1)
    select_on: str = setting("last", choices=SELECT_ON)  # last | val (never the test split)
    threads: int = setting(0, min=0, meaning="0: torch's default")  # CPU threads for torch
    sync_bn: bool = False  # SyncBatchNorm across torchrun processes (CUDA only)
    tensorboard: bool = False  # scalars to <out>/tensorboard (needs `pip install tensorboard`)
    channels_last: Optional[bool] = None  # None: on for CUDA and CPU, off elsewhere (mps)
    compile: bool = False  # torch.compile the model for training


@dataclass
class TestConfig(_Sections):
    flip: bool = True
    batch_size: int = setting(128, min=1)
    feature: str = setting("bn", choices=FEATURES)  # bn (after BNNeck) | pre (before BNNeck)
    ap_mode: str = setting("noninterp", choices=AP_MODES)  # noninterp | market1501
    protocols: Optional[List[str]] = None  # None: all the dataset defines
    rerank: bool = False  # k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)
    aqe: bool = False  # alpha query expansion first (fast-reid's defaults: one round, k 5, alpha 3)
    # N > 0: mean over N one-image-per-identity galleries (PRCC single-shot: 10)
    single_shot: int = setting(0, min=0, meaning="0: the whole gallery")


@dataclass
class Config(_Sections):
    seed: int = 0
    plugins: List[str] = field(default_factory=list)  # modules or .py files imported first (methods, datasets, ...)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


# -- sections registered by methods and plug-ins -------------------------------------------

#: place (``loss.cal``) -> the dataclass of the section registered there
SECTIONS: Dict[str, type] = {}
#: value checks that need more than a field's constraints (registries): ``fn(cfg)`` raises CCReIDError
CHECKS: List[Callable[[Any], None]] = []
_schemas: Dict[str, type] = {}  # place -> its class with the registered sections (cleared on registration)
_setup_state = {"done": False}
#: modules imported by name before the first config (as the plug-ins of the config key ``plugins``): the
#: built-in methods register their sections (``model.cre``, ``loss.cal``, ...) and the checks that need
#: registries (presets, backbones); imported lazily, so that ``import ccreid`` stays light
BUILTIN_PLUGINS = ("ccreid.methods",)


def _expected(hint: Any) -> Any:
    """The type of a config field, ``Optional`` removed."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def _join(place: str, name: str) -> str:
    return f"{place}.{name}" if place else name


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    """Field name -> type (``Optional`` removed) of a dataclass."""
    return {name: _expected(hint) for name, hint in typing.get_type_hints(cls).items()}


def _core_places(cls: type = Config, place: str = "") -> Dict[type, str]:
    places = {cls: place}
    for f in fields(cls):
        hint = _hints(cls)[f.name]
        if is_dataclass(hint):
            places.update(_core_places(hint, _join(place, f.name)))
    return places


#: core section class -> its place (``ModelConfig`` -> ``model``; ``Config`` -> "")
CORE_PLACES = _core_places()


def _setup() -> None:
    """The built-in methods register their sections and checks (once, before a config is used)."""
    if not _setup_state["done"]:
        _setup_state["done"] = True  # first: the methods' import may build configs
        try:
            for name in BUILTIN_PLUGINS:
                importlib.import_module(name)
        except BaseException:
            _setup_state["done"] = False
            raise


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_section(place: str, section: Optional[type] = None) -> Any:
    """Register the dataclass ``section`` as the config section at ``place`` (``"loss.cal"``):
    its fields become config keys (``loss.cal.scale=8``: YAML, overrides, ``config.yaml``), checked
    by type and by their :func:`setting` constraints. Called when a method's file (or a plug-in)
    is imported; registering a place again with the same class is a no-op. Usable as a decorator:
    ``@register_section("loss.center")``."""
    if section is None:
        return lambda cls: register_section(place, cls)
    _setup()  # the built-in sections first, whoever registers first (a no-op while they register)
    parent, _, name = place.rpartition(".")
    if not isinstance(section, type) or not is_dataclass(section):
        raise CCReIDError(f"config section {place!r}: {section!r} is not a dataclass; decorate the class with "
                          "@dataclass")
    if not parent or not name.isidentifier() or name.startswith("_"):
        raise CCReIDError(f"config section {place!r}: name a new key inside a section, e.g. loss.center")
    parent_cls = {p: c for c, p in CORE_PLACES.items()}.get(parent) or SECTIONS.get(parent)
    if parent_cls is None:
        known = ", ".join(sorted(p for p in (*CORE_PLACES.values(), *SECTIONS) if p))
        raise CCReIDError(f"config section {place!r}: no section {parent!r} to put it in (sections: {known})")
    if name in {f.name for f in fields(parent_cls)}:
        raise CCReIDError(f"config section {place!r}: {parent} already has a key {name!r}; choose another name")
    required = [f.name for f in fields(section) if f.default is MISSING and f.default_factory is MISSING]
    if required:
        raise CCReIDError(f"config section {place!r}: fields {required} of {_name(section)} need defaults")
    old = SECTIONS.get(place)
    if old is not None and old is not section and _name(old) != _name(section):
        raise CCReIDError(f"config section {place!r} is registered twice: by {_name(old)} and by "
                          f"{_name(section)}; register each place once (rename one of them)")
    SECTIONS[place] = section
    _schemas.clear()
    return section


def register_check(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Run ``check(cfg)`` after the field checks of every loaded config (it raises CCReIDError);
    for checks that need registries (``ccreid.methods``: presets, backbones). Once per function."""
    if check not in CHECKS:
        CHECKS.append(check)
    return check


def _schema_at(cls: type, place: str) -> type:
    """``cls``, the section at ``place``, with the sections registered inside it and inside its
    sections: a dataclass subclass of the same name (``cls`` itself when nothing is registered)."""
    if place in _schemas:
        return _schemas[place]
    hints = _hints(cls)
    extra = []
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            sub = _schema_at(hints[f.name], _join(place, f.name))
            if sub is not hints[f.name]:
                extra.append((f.name, sub, field(default_factory=sub)))
    for sub_place, section in SECTIONS.items():
        if sub_place.rpartition(".")[0] == place:
            sub = _schema_at(section, sub_place)
            extra.append((sub_place.rpartition(".")[2], sub, field(default_factory=sub)))
    schema_cls = cls
    if extra:
        schema_cls = make_dataclass(cls.__name__, extra, bases=(cls,), frozen=cls.__dataclass_params__.frozen,
                                    namespace={"__reduce__": _reduce, "_place": place, "__doc__": cls.__doc__})
        schema_cls.__module__ = cls.__module__
    _schemas[place] = schema_cls
    return schema_cls


def _reduce(self: Any) -> tuple:
    """Pickling (spawned workers): rebuilt from the sections registered where it is loaded."""
    return _rebuild, (self._place, {f.name: getattr(self, f.name) for f in fields(self)})


def _rebuild(place: str, values: dict) -> Any:
    _setup()
    cls = _schema_at(Config, "")
    for part in place.split(".") if place else ():
        cls = _hints(cls)[part]
    obj = cls.__new__(cls)
    obj.__dict__.update(values)
    return obj


def schema() -> type:
    """The :class:`Config` class with every registered section: what :func:`load_config` fills."""
    _setup()
    return _schema_at(Config, "")


def _default_section(cls: type, name: str) -> Any:
    """The default of the section registered as ``name`` inside the section class ``cls`` (a core
    class, or a schema class built before ``name`` was registered), if any."""
    place = getattr(cls, "_place", CORE_PLACES.get(cls))
    if place is None:
        return None
    _setup()
    section = SECTIONS.get(_join(place, name))
    return None if section is None else _schema_at(section, _join(place, name))()


def _packaged(name: str) -> Optional[Path]:
    """The packaged config of a bare name (``synthetic``, ``prcc.yaml``), if there is one."""
    packaged = PACKAGED_CONFIGS / f"{Path(name).stem}.yaml"
    return packaged if Path(name).suffix in ("", ".yaml") and packaged.is_file() else None


def _packaged_names() -> str:
    return ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))


def resolve_config_path(path: str) -> Path:
    """A file path, or the bare name of a packaged config (``synthetic``)."""
    candidate = Path(path)
    if candidate.is_dir():
        raise CCReIDError(f"config file {path}: a folder, not a file; pass a YAML file (e.g. {path}/config.yaml)")
    if candidate.is_file():
        return candidate
    packaged = _packaged(path)
    if packaged is None:
        raise CCReIDError(f"config file {path} not found (packaged configs: {_packaged_names()})")
    return packaged


BASE_KEY = "_base_"


def yaml_layers(path: Path) -> list:
    """The YAML file at ``path`` after the files it inherits from: ``_base_: FILE`` (relative to
    its folder, or a packaged config name), so a config says only what differs."""
    return [layer for layer, _ in _yaml_layers(path)]


def _yaml_layers(path: Path, children: tuple = ()) -> list:
    """:func:`yaml_layers`, each with the path of its file."""
    try:
        layer = OmegaConf.load(path)
    except UnicodeDecodeError as err:
        raise CCReIDError(f"config file {path}: not UTF-8 text (byte {err.start}); save it as UTF-8")
    except OSError as err:
        raise CCReIDError(f"config file {path}: cannot read it ({err.strerror or err})")
    except Exception as err:  # yaml syntax errors come in many types
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise CCReIDError(f"config file {path}{where}: cannot parse YAML ({_yaml_problem(err)})")
    if not isinstance(layer, DictConfig):
        raise CCReIDError(f"config file {path}: the top level must be a mapping of keys (data:, model:, ...)")
    base = layer.pop(BASE_KEY, None)
    check_shapes(OmegaConf.to_container(layer), f"config file {path}: ")
    if base is None:
        return [(layer, path)]
    base_path = _base_path(path, base)
    if base_path.resolve() in (*children, path.resolve()):
        raise CCReIDError(f"config file {path}: {BASE_KEY} {base} inherits from itself")
    return _yaml_layers(base_path, (*children, path.resolve())) + [(layer, path)]


#: keys renamed since: old name -> new name (configs saved with earlier runs still load)
RENAMED = {"train.keep_last": "train.keep_checkpoints"}


def _renamed(layer: DictConfig) -> DictConfig:
    """``layer`` with every key of :data:`RENAMED` under its new name."""
    for old, new in RENAMED.items():
        parent, _, leaf = old.rpartition(".")
        node = OmegaConf.select(layer, parent)
        if isinstance(node, DictConfig) and leaf in node:
            OmegaConf.update(layer, new, node.pop(leaf))
    return layer


def _yaml_problem(err: Exception) -> str:
    """What a YAML parser error says is wrong, in one line."""
    return getattr(err, "problem", None) or first_line(err)


def _base_path(path: Path, base: Any) -> Path:
    """The file ``_base_: base`` of the config file ``path`` names: beside it, or packaged."""
    if not isinstance(base, str) or not base:
        raise CCReIDError(f"config file {path}: {BASE_KEY} must name one config file (e.g. {BASE_KEY}: prcc.yaml)")
    sibling = path.parent / base
    if sibling.is_dir():
        raise CCReIDError(f"config file {path}: {BASE_KEY} {base} is a folder ({sibling}); name a YAML file")
    found = sibling if sibling.is_file() else _packaged(base)
    if found is None:
        raise CCReIDError(f"config file {path}: {BASE_KEY} {base} not found: neither {sibling} nor a packaged "
                          f"config ({_packaged_names()}); fix the {BASE_KEY} line of {path}")
    return found


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else "one value"


def check_shapes(values: Any, where: str, section: Optional[type] = None, prefix: str = "") -> None:
    """Lists where the schema has lists, single values where it has values, sections where it
    has sections: one-line errors (``where`` names the file or override) instead of omegaconf's
    ("AnyNode is not a ListConfig", "Cannot merge incompatible container types", nested lists
    taken as numbers). Unknown keys are left to omegaconf, which names them. ``section``: the
    class checked (default: the whole schema, registered sections included)."""
    section = section or schema()
    hints = _hints(section)
    for name, value in (values.items() if isinstance(values, dict) else ()):
        if name not in hints or value is None:
            continue
        key, expected = f"{prefix}{name}", hints[name]
        if is_dataclass(expected):
            if not isinstance(value, dict):
                raise CCReIDError(f"{where}config key {key!r} is a section of keys, got {_kind(value)} ({value!r}); "
                                  f"set its keys: {key}.NAME=VALUE")
            check_shapes(value, where, expected, f"{key}.")
        elif typing.get_origin(expected) is list:
            item = typing.get_args(expected)[0].__name__
            nested = [v for v in value if isinstance(v, (list, dict))] if isinstance(value, list) else [value]
            if nested:
                raise CCReIDError(f"{where}config key {key!r} takes a list of {item}, got {value!r}; write a list "
                                  f"as [a,b] (e.g. {key}=[{_list_example(section, name, item)}])")
        elif isinstance(value, (list, dict)):
            quote = "; quote text holding ': ', brackets or braces" if expected is str else ""
            raise CCReIDError(f"{where}config key {key!r} takes one {expected.__name__} value, "
                              f"got {_kind(value)} ({value!r}){quote}")


def _list_example(section: type, name: str, item: str) -> str:
    """``a,b``: the field's default list, or two items of its type (messages)."""
    default = next(f for f in fields(section) if f.name == name).default_factory
    values = default() if default is not MISSING else None
    return ",".join(map(str, values or {"int": (1, 2), "float": (0.5, 1.0)}.get(item, ("a", "b"))))


def _merged(*layers: DictConfig, schema_cls: type) -> Any:
    """``layers`` merged into ``schema_cls``, as objects; omegaconf's errors in one line."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema_cls), *layers))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        msg = first_line(err, 200)
        raise CCReIDError(f"config key {key!r}: {msg}" if key else f"config: {msg}")


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides. The plug-ins the
    layers name are imported first, so the sections they register take values in the same
    command."""
    from ccreid.plugins import import_plugins  # here: plug-ins may import this module

    sources = [] if path is None else [(layer, f"config file {where}: ") for layer, where in
                                       _yaml_layers(resolve_config_path(path))]
    sources += [(_override_layer(item), f"override {item!r}: ") for item in overrides]
    layers = [_renamed(layer) for layer, _ in sources]
    plugins = import_plugins(_merged(*(OmegaConf.masked_copy(layer, ["plugins"]) for layer in layers),
                                     schema_cls=Config).plugins)
    full = schema()
    for layer, where in sources:  # again: the sections the plug-ins registered are known now
        check_shapes(OmegaConf.to_container(layer), where, full)
    cfg = _merged(*layers, schema_cls=full)
    cfg.plugins = plugins
    validate(cfg)
    return cfg


def _override_layer(item: str) -> DictConfig:
    """One ``key=value`` override as a config layer; one-line errors naming it."""
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:
        raise CCReIDError(f"override {item!r} is not valid UTF-8; retype it")
    if not item.partition("=")[0].strip() or "=" not in item:
        raise CCReIDError(f"override {item!r} must look like key=value (e.g. train.epochs=3)")
    try:
        layer = OmegaConf.from_dotlist([item])
    except OmegaConfBaseException as err:
        raise CCReIDError(f"override {item!r}: {first_line(err, 200)}")
    except Exception as err:  # yaml syntax errors come in many types
        raise CCReIDError(f"override {item!r}: cannot parse the value ({_yaml_problem(err)}); write a list as [a,b] "
                          "and quote text holding brackets, braces, commas or colons ('a,b')")
    check_shapes(OmegaConf.to_container(layer), f"override {item!r}: ")
    return layer


def _check_value(owner: Any, name: str, key: str, value: Any, rules: Any) -> None:
    """One value against its field's constraints (:func:`setting`); ``None`` (an optional key
    left unset) passes them all."""
    if value is None:
        return
    choices = rules.get("choices")
    if choices is not None:
        if value == "False" and "off" in choices:  # YAML 1.1 reads a bare `off` as false
            value = "off"
            setattr(owner, name, value)
        if value not in choices:
            raise CCReIDError(f"config key {key!r}: {value!r} is not one of {', '.join(choices)}")
    items = rules.get("items")
    bad = set(value) - set(items) if items is not None else ()
    if bad:
        raise CCReIDError(f"config key {key!r}: unknown terms {sorted(bad)} (use {', '.join(items)})")
    if "min" in rules and value < rules["min"]:
        meaning = f" ({rules['meaning']})" if rules.get("meaning") else ""
        raise CCReIDError(f"config key {key!r}: {value} must be >= {rules['min']}{meaning}")
    if "above" in rules and not value > rules["above"]:
        raise CCReIDError(f"config key {key!r}: {value} must be > {rules['above']}")
    if "range" in rules:
        low, high = rules["range"]
        if not low <= value <= high:
            raise CCReIDError(f"config key {key!r}: {value} must be in [{low}, {high}]")


def _check_section(obj: Any, cls: type, prefix: str) -> None:
    hints = _hints(cls)
    for f in fields(cls):
        value, key = getattr(obj, f.name), _join(prefix, f.name)
        if is_dataclass(hints[f.name]) and value is not None:
            _check_section(value, hints[f.name], key)
        elif f.metadata:
            _check_value(obj, f.name, key, value, f.metadata)


def validate(cfg: Config) -> None:
    """Value checks that types alone cannot express, one-line errors naming the key: every
    field's constraints (:func:`setting`), registered sections included, then the registered
    checks (:func:`register_check`)."""
    _check_section(cfg, schema(), "")
    for check in CHECKS:
        check(cfg)


def _as_schema(obj: Any, cls: type) -> Any:
    """``obj`` (a core section built directly, or a config loaded before more sections were
    registered) as an instance of the schema class ``cls``."""
    if type(obj) is cls:
        return obj
    hints = _hints(cls)
    return cls(**{f.name: _as_schema(getattr(obj, f.name), hints[f.name])
                  if is_dataclass(hints[f.name]) and getattr(obj, f.name) is not None else getattr(obj, f.name)
                  for f in fields(cls)})


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (saved beside every run's outputs), registered sections included."""
    return OmegaConf.to_yaml(OmegaConf.structured(_as_schema(cfg, schema())))
