"""Device choice: CUDA, then Apple MPS, then CPU, or what the user names."""

from __future__ import annotations

import torch

from seglab.errors import SeglabError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a usable torch device; a clear error when the named one is missing."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SeglabError("device 'cuda' was asked for, but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SeglabError("device 'mps' was asked for, but Apple MPS is not available")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise SeglabError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
