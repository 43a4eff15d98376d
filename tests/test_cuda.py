"""Checks that need a CUDA GPU (run by benchmarks/gpu_check.sh; skipped elsewhere, with the reason)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")]


def test_train_step_on_cuda_in_bf16_and_fp16(tmp_path):
    from ccreid.cli import main
    from tiny_run import TINY

    for amp in ("bf16", "fp16"):
        assert main(["train", "-c", "synthetic", "--out", str(tmp_path / amp), "--quiet", "--no-report",
                     f"data.root={tmp_path / 'data'}", *TINY, "model.preset=ours", "train.device=cuda",
                     f"train.amp={amp}"]) == 0


def test_parser_on_cuda_matches_cpu(schp_data, schp_checkpoint):
    import numpy as np

    from ccreid.parsing import HumanParser
    from ccreid.parsing.warp import read_bgr

    image = read_bgr(schp_data / "images" / "person_128x64.png")
    cpu = HumanParser.from_checkpoint(schp_checkpoint("lip"), device="cpu", amp="off").labels([image])[0]
    gpu = HumanParser.from_checkpoint(schp_checkpoint("lip"), device="cuda", amp="off").labels([image])[0]
    assert (cpu == gpu).mean() >= 0.995
