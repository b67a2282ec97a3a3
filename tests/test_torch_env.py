"""Mixed precision picks bfloat16 only where the chosen CUDA device has it natively."""

import contextlib

import pytest
import torch

from seglab import torch_env


def _fake_cuda(monkeypatch, native: dict[int, bool], emulated: bool = True, current: int = 0):
    """GPUs by index: ``native[i]`` says whether GPU i computes bfloat16 natively; older ones
    emulate it (what ``is_bf16_supported()`` reports as supported by default)."""
    state = {"current": current}

    @contextlib.contextmanager
    def device(index):
        before, state["current"] = state["current"], int(index)
        try:
            yield
        finally:
            state["current"] = before

    def is_bf16_supported(including_emulation: bool = True):
        return native[state["current"]] or (including_emulation and emulated)

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])


def test_emulated_bf16_on_a_pre_ampere_gpu_uses_float16(monkeypatch):
    _fake_cuda(monkeypatch, {0: False})
    assert torch.cuda.is_bf16_supported()  # what torch says by default: emulation counts
    assert not torch_env.cuda_bf16(torch.device("cuda"))
    assert torch_env.autocast_dtype(torch.device("cuda")) == torch.float16
    assert torch_env.autocast_dtype(torch.device("cuda:0")) == torch.float16


def test_the_chosen_device_is_asked_not_the_current_one(monkeypatch):
    _fake_cuda(monkeypatch, {0: True, 1: False}, emulated=False, current=0)
    assert torch_env.autocast_dtype(torch.device("cuda:1")) == torch.float16
    assert torch_env.autocast_dtype(torch.device("cuda:0")) == torch.bfloat16
    assert torch_env.autocast_dtype(torch.device("cuda")) == torch.bfloat16  # current device 0


def _fake_cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    torch_env.cpu_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


@pytest.fixture(autouse=True)
def _fresh_cpu_check():
    torch_env.cpu_bf16.cache_clear()
    yield
    torch_env.cpu_bf16.cache_clear()


def test_cpu_autocast_is_bfloat16_and_off_when_disabled(monkeypatch):
    _fake_cpu(monkeypatch, avx512_bf16=True, amx=False)
    assert torch_env.autocast_dtype(torch.device("cpu")) == torch.bfloat16
    with torch_env.autocast(torch.device("cpu")):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with torch_env.autocast(torch.device("cpu"), enabled=False):
        assert not torch.is_autocast_enabled("cpu")


def test_cpus_without_native_bfloat16_compute_in_float32(monkeypatch):
    """On AVX2-only CPUs bfloat16 is emulated (about 10x slower than float32 here): no autocast."""
    _fake_cpu(monkeypatch, avx512_bf16=False, amx=False)
    assert not torch_env.cpu_bf16()
    assert torch_env.autocast_dtype(torch.device("cpu")) == torch.float32
    with torch_env.autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    _fake_cpu(monkeypatch, avx512_bf16=False, amx=True)  # AMX alone is enough
    assert torch_env.cpu_bf16()


def test_a_onednn_isa_limit_below_bf16_turns_cpu_autocast_off(monkeypatch):
    _fake_cpu(monkeypatch, avx512_bf16=True, amx=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not torch_env.cpu_bf16()
    torch_env.cpu_bf16.cache_clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert torch_env.cpu_bf16()
