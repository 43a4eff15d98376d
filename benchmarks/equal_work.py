"""The work a side-by-side benchmark compares: model settings spelled out, FLOPs counted and checked.

A benchmark that reports a ratio between two ways of doing the same work (ccreid's train step vs a
bare loop, an engine vs a bare ONNX Runtime session, the parser vs SCHP's loop) builds both sides
from settings written in the script (:func:`model_config`: never the model keys of a config file,
which change with the experiments) and calls :func:`require_equal_flops` before timing: it refuses,
with exit status 2 and each side's count, to report a ratio for sides whose FLOPs differ
(``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions, forward and backward).
Benchmarks that compare two algorithms for one result (bench_metrics: fast-reid's loop vs ccreid's
metrics; bench_rerank: dense vs sparse re-ranking) do different FLOPs by design: they equalise the
output instead and report its equality beside each ratio. Only torch is needed here.
"""

from __future__ import annotations

import sys
from typing import Callable, Dict

from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def require_equal_flops(flops: Dict[str, int], per: str = "step") -> int:
    """The FLOPs per ``per`` that every side does; exits (status 2) naming each side's count when they differ."""
    if len(set(flops.values())) != 1:
        sides = ", ".join(f"{name} {n / 1e9:.2f} GFLOP" for name, n in flops.items())
        print(f"refusing to report a ratio: the sides do different work per {per} ({sides}); "
              "give them the same model settings", file=sys.stderr)
        sys.exit(2)
    return next(iter(flops.values()))


def model_config(cfg, backbone: str, last_stride: int, preset: str = "baseline", width_mult: float = 1.0):
    """``cfg`` with its model section replaced by ccreid's defaults + these settings, spelled out (none of
    it from ``cfg``'s config file)."""
    from ccreid.config import load_config

    cfg.model = load_config(None, [f"model.preset={preset}", f"model.backbone={backbone}",
                                   f"model.width_mult={width_mult}", f"model.last_stride={last_stride}",
                                   "model.pooling=avg", "model.pretrained=none"]).model
    return cfg


def model_settings(cfg) -> str:
    """The model settings of ``cfg`` in words, for a results file."""
    m = cfg.model
    return f"{m.backbone} x{m.width_mult}, last stride {m.last_stride}, {m.pooling} pooling + BNNeck"
