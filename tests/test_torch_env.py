"""Mixed precision picks bfloat16 only where the chosen CUDA device has it natively."""

import contextlib

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


def test_cpu_autocast_is_bfloat16_and_off_when_disabled():
    assert torch_env.autocast_dtype(torch.device("cpu")) == torch.bfloat16
    with torch_env.autocast(torch.device("cpu")):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with torch_env.autocast(torch.device("cpu"), enabled=False):
        assert not torch.is_autocast_enabled("cpu")
