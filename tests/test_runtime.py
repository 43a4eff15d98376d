"""Atomic writes: nothing half-written, usual file permissions."""

import os
import stat

import pytest

from ccreid.runtime.io import atomic_path, write_text


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


@pytest.mark.parametrize("native, expected", [(False, "off"), (True, "bf16")])
def test_amp_auto_on_cpu_follows_bf16_instructions_and_explicit_modes_pass_through(monkeypatch, native, expected):
    import torch

    from ccreid.runtime import amp

    monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert amp.resolve_amp(cpu, "auto") == expected
    assert [amp.resolve_amp(cpu, m) for m in ("off", "bf16", "fp16")] == ["off", "bf16", "fp16"]
    assert amp.use_channels_last(cpu, None) is True  # NHWC on CPU, fp32 and bf16 alike
    assert amp.use_channels_last(torch.device("meta"), None) is False  # e.g. mps: NCHW
    assert amp.use_channels_last(cpu, False) is False


def test_bf16_instructions_are_read_from_cpuinfo_flags():
    from ccreid.runtime.device import cpuinfo_has_bf16

    assert cpuinfo_has_bf16("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert cpuinfo_has_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert cpuinfo_has_bf16("Features\t: fp asimd bf16 i8mm\n")  # Arm
    assert not cpuinfo_has_bf16("flags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert not cpuinfo_has_bf16("model name\t: bf16 in a name is not a flag\n")
