"""Atomic writes: nothing half-written, usual file permissions."""

import os
import stat

import pytest

from ccreid.engine.runtime import atomic_path, write_text


def test_atomic_write_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_amp_auto_is_off_on_cpu_and_explicit_modes_pass_through():
    import torch

    from ccreid.engine.runtime import resolve_amp

    cpu = torch.device("cpu")
    assert resolve_amp(cpu, "auto") == "off"
    assert [resolve_amp(cpu, m) for m in ("off", "bf16", "fp16")] == ["off", "bf16", "fp16"]
