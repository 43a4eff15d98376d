"""Typed configuration: dataclasses, YAML files and dotted command-line overrides.

``load_config("configs/synthetic.yaml", ["train.epochs=3"])`` merges, in order, the
dataclass defaults (METHOD.md's paper settings), the YAML file and the overrides, and
checks keys and types (omegaconf structured configs). No global state: every run gets
its own :class:`Config` object.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ccreid.errors import CCReIDError, first_line

PACKAGED_CONFIGS = Path(__file__).parent / "configs"


@dataclass
class SyntheticConfig:
    """Options of the procedural dataset (used when ``data.name=synthetic``)."""

    ids: int = 120
    extra_test_ids: int = 0
    outfits: int = 3
    images_per_outfit: int = 6
    height: int = 128
    width: int = 64
    seed: int = 0


@dataclass
class ParsingConfig:
    """Human-parsing maps: tree root (mirrors the image tree), label set, and the SCHP
    checkpoint that makes the missing maps before training."""

    root: Optional[str] = None
    labels: str = "lip"  # lip | atr | pascal | path to a table
    missing: str = "auto"  # auto (error when CRE/BSGA need maps) | error | skip
    weights: Optional[str] = None  # SCHP .pth: `ccreid train` parses missing maps into `root` first


@dataclass
class DataConfig:
    name: str = "synthetic"
    root: str = "data/synthetic"
    height: int = 384
    width: int = 192
    ids_per_batch: int = 8  # P
    images_per_id: int = 8  # K
    workers: int = 2
    flip_p: float = 0.5
    pad: int = 10
    erasing_p: float = 0.5
    cache_mb: int = 0  # decoded training images + maps kept in memory when all fit in this many MB; 0: off
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class CREConfig:
    """Clothes-Relevant information Erasure (METHOD.md)."""

    enabled: Optional[bool] = None  # None: follow model.preset
    p: float = 1.0
    fill: str = "mean"  # mean | noise | random_color | black
    clothes_labels: Optional[List[int]] = None  # None: from data.parsing.labels
    losses: List[str] = field(default_factory=lambda: ["ce", "tri", "bctri"])


@dataclass
class BSGAConfig:
    """Body Shape-Guided Attention (METHOD.md)."""

    enabled: Optional[bool] = None  # None: follow model.preset
    stages: List[str] = field(default_factory=lambda: ["layer4"])
    loss: str = "bce"  # bce | mse


@dataclass
class ViTConfig:
    """The transformer of preset ``vit`` (TransReID-style)."""

    name: str = "vit_base_patch16_224"  # any timm vit_* model
    patch_stride: Optional[int] = None  # None: the patch size; smaller: overlapping patches (TransReID: 12)
    sie: bool = False  # TransReID's camera embedding (side information embedding) added to every token
    sie_coef: float = 3.0  # its weight (TransReID's SIE_COE)
    sie_cameras: int = 0  # rows of the camera table; 0: from the data (max camera id + 1), saved in config.yaml


@dataclass
class ModelConfig:
    preset: str = "baseline"
    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101 | timm:<timm model name>
    pretrained: str = "imagenet"  # imagenet | none | path to a local .safetensors/.pth weight file
    width_mult: float = 1.0
    last_stride: int = 1
    pooling: str = "avg"  # avg | max | gem | avgmax
    cre: CREConfig = field(default_factory=CREConfig)
    bsga: BSGAConfig = field(default_factory=BSGAConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)


@dataclass
class BCTriConfig:
    """Batch cross-clothes triplet loss (METHOD.md)."""

    enabled: Optional[bool] = None  # None: follow model.preset
    margin: float = 0.3
    metric: str = "euclidean"  # euclidean | cosine
    reduction: str = "mean"  # mean | sum


@dataclass
class CALConfig:
    """Clothes-based Adversarial Loss (presets ``cal`` and ``ours+cal``; Simple-CCReID's defaults)."""

    start_epoch: int = 25  # first epoch (0-based) with classifier updates and the adversarial loss
    scale: float = 16.0  # cosine-logit scale of the clothes classifier (margin 0)
    epsilon: float = 0.1  # target mass spread over the identity's outfits
    w_tri: float = 0.0  # triplet weight of preset `cal` (Simple-CCReID trains CAL without it)


@dataclass
class FireConfig:
    """FIRe² (preset ``fire``; the official code's defaults, ``utils/arguments.py``)."""

    start_epoch: int = 25  # first clustered epoch (0-based; official fg_start_epoch: 1-based epochs after it)
    far_weight: float = 0.3  # weight of FAR's identity loss
    eps: float = 0.4  # DBSCAN radius on the Jaccard distance
    min_samples: int = 1  # DBSCAN core-point size
    k1: int = 20  # k-reciprocal neighbours of the Jaccard distance
    k2: int = 6  # its query-expansion neighbours
    scale: float = 16.0  # cosine-logit scale of the classifier of the clusters
    epsilon: float = 0.1  # attribute-aware loss: target mass spread over the identity's clusters
    keep_moments: bool = False  # keep Adam's moments when clustering rebuilds it (official: reset)


@dataclass
class LossConfig:
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    w_ce: float = 1.0
    w_tri: float = 1.0
    w_bctri: float = 1.0
    w_bsga: float = 1.0
    bctri: BCTriConfig = field(default_factory=BCTriConfig)
    cal: CALConfig = field(default_factory=CALConfig)
    fire: FireConfig = field(default_factory=FireConfig)


@dataclass
class TrainConfig:
    epochs: int = 60
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    milestones: List[int] = field(default_factory=lambda: [20, 40])
    gamma: float = 0.1
    warmup_epochs: int = 10
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: str = "auto"  # auto (bf16 on CUDA, and on bf16 CPUs where engine/precision.py passes) | off | bf16 | fp16
    log_every: int = 20
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 1  # epochs between resumable checkpoints (0: only the final weights)
    checkpoint_every_iters: int = 0  # also every N iterations, mid-epoch (0: off); --resume continues exactly
    keep_checkpoints: int = 1  # the last N resumable checkpoints are kept (each holds weights + optimizer state)
    select_on: str = "last"  # last | val (never the test split)
    threads: int = 0  # CPU threads for torch (0: torch default)
    sync_bn: bool = False  # SyncBatchNorm across torchrun processes (CUDA only)
    tensorboard: bool = False  # scalars to <out>/tensorboard (needs `pip install tensorboard`)
    channels_last: Optional[bool] = None  # None: on for CUDA and CPU, off elsewhere (mps)
    compile: bool = False  # torch.compile the model for training


@dataclass
class TestConfig:
    flip: bool = True
    batch_size: int = 128
    feature: str = "bn"  # bn (after BNNeck) | pre (before BNNeck)
    ap_mode: str = "noninterp"  # noninterp | market1501
    protocols: Optional[List[str]] = None  # None: all the dataset defines
    rerank: bool = False  # k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)
    aqe: bool = False  # alpha query expansion first (fast-reid's defaults: one round, k 5, alpha 3)
    single_shot: int = 0  # N > 0: mean over N one-image-per-identity galleries (PRCC single-shot: 10)


@dataclass
class Config:
    seed: int = 0
    plugins: List[str] = field(default_factory=list)  # modules or .py files imported first (methods, datasets, ...)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


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


def yaml_layers(path: Path, children: tuple = ()) -> list:
    """The YAML file at ``path`` after the files it inherits from: ``_base_: FILE`` (relative to
    its folder, or a packaged config name), so a config says only what differs."""
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
        return [layer]
    base_path = _base_path(path, base)
    if base_path.resolve() in (*children, path.resolve()):
        raise CCReIDError(f"config file {path}: {BASE_KEY} {base} inherits from itself")
    return yaml_layers(base_path, (*children, path.resolve())) + [layer]


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


def _expected(hint: Any) -> Any:
    """The type of a config field, ``Optional`` removed."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else "one value"


def check_shapes(values: Any, where: str, schema: Optional[type] = None, prefix: str = "") -> None:
    """Lists where the schema has lists, single values where it has values, sections where it
    has sections: one-line errors (``where`` names the file or override) instead of omegaconf's
    ("AnyNode is not a ListConfig", "Cannot merge incompatible container types", nested lists
    taken as numbers). Unknown keys are left to omegaconf, which names them."""
    hints = typing.get_type_hints(schema or Config)
    for name, value in (values.items() if isinstance(values, dict) else ()):
        if name not in hints or value is None:
            continue
        key, expected = f"{prefix}{name}", _expected(hints[name])
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
                                  f"as [a,b] (e.g. {key}=[{_list_example(schema or Config, name, item)}])")
        elif isinstance(value, (list, dict)):
            quote = "; quote text holding ': ', brackets or braces" if expected is str else ""
            raise CCReIDError(f"{where}config key {key!r} takes one {expected.__name__} value, "
                              f"got {_kind(value)} ({value!r}){quote}")


def _list_example(schema: type, name: str, item: str) -> str:
    """``a,b``: the field's default list, or two items of its type (messages)."""
    default = next(f for f in fields(schema) if f.name == name).default_factory
    values = default() if default is not MISSING else None
    return ",".join(map(str, values or {"int": (1, 2), "float": (0.5, 1.0)}.get(item, ("a", "b"))))


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides."""
    schema = OmegaConf.structured(Config)
    layers = [] if path is None else yaml_layers(resolve_config_path(path))
    layers += [_override_layer(item) for item in overrides]
    try:
        merged = OmegaConf.merge(schema, *map(_renamed, layers))
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        msg = first_line(err, 200)
        raise CCReIDError(f"config key {key!r}: {msg}" if key else f"config: {msg}")
    from ccreid.plugins import import_plugins  # here: plug-ins may import this module

    cfg.plugins = import_plugins(cfg.plugins)
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


def _choices() -> dict:
    """Config key -> its allowed values, read from the modules that use them (imported here:
    they import this module)."""
    from ccreid.data.manager import MISSING_MODES
    from ccreid.engine.runtime import AMP_MODES
    from ccreid.engine.trainer import SELECT_ON
    from ccreid.evaluation.ranking import AP_MODES
    from ccreid.losses.bctri import REDUCTIONS
    from ccreid.losses.triplet import METRICS
    from ccreid.models.bsga import LOSS_KINDS
    from ccreid.models.cre import FILLS
    from ccreid.models.heads import POOLINGS
    from ccreid.models.reid import FEATURES

    return {
        "data.parsing.missing": MISSING_MODES, "model.cre.fill": FILLS, "model.bsga.loss": LOSS_KINDS,
        "model.pooling": POOLINGS, "loss.bctri.metric": METRICS, "loss.bctri.reduction": REDUCTIONS,
        "train.amp": AMP_MODES, "train.select_on": SELECT_ON, "test.feature": FEATURES, "test.ap_mode": AP_MODES,
    }


#: counts and sizes that must be positive, or non-negative (with what 0 means), and probabilities
AT_LEAST_ONE = ("data.ids_per_batch", "data.images_per_id", "data.height", "data.width", "train.epochs",
                "train.log_every", "train.keep_checkpoints", "test.batch_size", "data.synthetic.ids",
                "data.synthetic.outfits", "data.synthetic.images_per_outfit", "data.synthetic.height",
                "data.synthetic.width")
AT_LEAST_ZERO = {"data.workers": "0: load in the main process", "data.pad": "0: no padding", "data.cache_mb": "0: off",
                 "train.warmup_epochs": "0: no warm-up", "train.eval_every": "0: only at the end",
                 "train.checkpoint_every": "0: only the final weights", "train.checkpoint_every_iters": "0: off",
                 "train.threads": "0: torch's default", "test.single_shot": "0: the whole gallery",
                 "data.synthetic.extra_test_ids": "0: none", "loss.cal.start_epoch": "0: from the start",
                 "model.vit.sie_cameras": "0: from the data"}
PROBABILITIES = ("model.cre.p", "data.flip_p", "data.erasing_p")


def _get(cfg: Config, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _set(cfg: Config, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    setattr(_get(cfg, ".".join(parents)), last, value)


def validate(cfg: Config) -> None:
    """Value checks that types alone cannot express; one-line errors naming the key."""
    for key, choices in _choices().items():
        value = _get(cfg, key)
        if value == "False" and "off" in choices:  # YAML 1.1 reads a bare `off` as false
            value = "off"
            _set(cfg, key, value)
        if value not in choices:
            raise CCReIDError(f"config key {key!r}: {value!r} is not one of {', '.join(choices)}")
    bad = set(cfg.model.cre.losses) - {"ce", "tri", "bctri"}
    if bad:
        raise CCReIDError(f"config key 'model.cre.losses': unknown terms {sorted(bad)} (use ce, tri, bctri)")
    from ccreid.models.backbones import check_backbone_name  # here: ccreid.models imports this module

    check_backbone_name(cfg.model.backbone)
    from ccreid.methods import PRESETS

    if cfg.model.preset not in PRESETS:
        raise CCReIDError(f"config key 'model.preset': unknown preset {cfg.model.preset!r}; "
                          f"choose one of: {', '.join(PRESETS)}")
    for key in AT_LEAST_ONE:
        if _get(cfg, key) < 1:
            raise CCReIDError(f"config key {key!r}: {_get(cfg, key)} must be >= 1")
    for key, meaning in AT_LEAST_ZERO.items():
        if _get(cfg, key) < 0:
            raise CCReIDError(f"config key {key!r}: {_get(cfg, key)} must be >= 0 ({meaning})")
    for key in PROBABILITIES:
        if not 0.0 <= _get(cfg, key) <= 1.0:
            raise CCReIDError(f"config key {key!r}: {_get(cfg, key)} must be in [0, 1]")
    if not cfg.train.lr > 0:
        raise CCReIDError(f"config key 'train.lr': {cfg.train.lr} must be > 0")


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (saved beside every run's outputs)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
