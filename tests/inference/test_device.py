"""Device choice and the out-of-memory fallback: smaller batches, smaller tiles, then the CPU."""

import numpy as np
import pytest
import torch
from torch import nn

from seglab.errors import SeglabError, SeglabWarning
from seglab.inference.device import MIN_OOM_TILE, resolve_device, retry_on_oom
from seglab.inference.engine import run_to_end, segment
from seglab.models.base import ModelConfig
from seglab.models.unet import UNetModel


class FakeNetwork(nn.Module):
    """Records where it is moved to."""

    def __init__(self):
        super().__init__()
        self.moves = []

    def to(self, *args, **kwargs):
        self.moves.append(args or kwargs)
        return self


class FakeModel:
    def __init__(self):
        self.network = FakeNetwork()


def _run_that_fits(limit_batch, limit_tile, oom_on_gpu, calls):
    def run(*, batch_size, tile_size, device, amp):
        calls.append((batch_size, tile_size, torch.device(device).type))
        yield "event"
        if batch_size > limit_batch or tile_size > limit_tile or (oom_on_gpu and torch.device(device).type == "cuda"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "result"
    return run


def test_out_of_memory_halves_the_batch_then_the_tiles_then_leaves_the_gpu():
    calls = []
    model = FakeModel()
    run = {"batch_size": 4, "tile_size": 1024, "device": torch.device("cuda"), "amp": True}
    with pytest.warns(SeglabWarning) as notes:
        out = run_to_end(retry_on_oom(_run_that_fits(1, 256, True, calls), model, run))
    assert out == "result"
    assert calls == [(4, 1024, "cuda"), (2, 1024, "cuda"), (1, 1024, "cuda"), (1, 512, "cuda"), (1, 256, "cuda"),
                     (1, 256, "cpu")]
    assert run["device"] == torch.device("cpu") and run["batch_size"] == 1 and run["tile_size"] == MIN_OOM_TILE
    assert ("cpu",) in model.network.moves
    texts = [str(n.message) for n in notes]
    assert "batch size 2" in texts[0] and "tiles of 512 px" in texts[2] and len(texts) == 5
    assert "continuing on the CPU" in texts[-1]


def test_what_fits_is_kept_for_later_planes():
    calls = []
    run = {"batch_size": 8, "tile_size": 512, "device": torch.device("cuda"), "amp": True}
    with pytest.warns(SeglabWarning):
        run_to_end(retry_on_oom(_run_that_fits(2, 512, False, calls), FakeModel(), run))
    calls.clear()
    run_to_end(retry_on_oom(_run_that_fits(2, 512, False, calls), FakeModel(), run))
    assert calls == [(2, 512, "cuda")]


def test_out_of_memory_on_the_cpu_at_the_smallest_settings_is_one_clear_error():
    run = {"batch_size": 1, "tile_size": MIN_OOM_TILE, "device": torch.device("cpu"), "amp": True}
    with pytest.raises(SeglabError, match="out of memory even with batch size 1"):
        run_to_end(retry_on_oom(_run_that_fits(0, 0, False, []), FakeModel(), run))


BATCHES: list[int] = []  # batch sizes seen (the model runs a copy of its network, so not kept on it)


class BatchLimitedNet(nn.Module):
    """A local filter that 'runs out of memory' on batches of more than one tile."""

    divisor = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 3, padding=1))

    def forward(self, x):
        BATCHES.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return self.body(x)


def test_engine_retries_a_plane_after_out_of_memory():
    cfg = ModelConfig(name="t", family="unet", tile_context=8,
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    from tests_helpers import textured

    img = textured((2, 100, 90))  # a stack: the second plane starts at batch 1
    net = BatchLimitedNet()
    BATCHES.clear()
    with pytest.warns(SeglabWarning, match="ran out of memory; trying again with batch size 2"):
        a = segment(UNetModel(cfg, network=net), img, tile_size=32, batch_size=4, amp=False, device="cpu")
    assert BATCHES[0] == 4 and BATCHES[1] == 2 and set(BATCHES[2:]) == {1}
    b = segment(UNetModel(cfg, network=BatchLimitedNet()), img, tile_size=32, batch_size=1, amp=False, device="cpu")
    np.testing.assert_array_equal(a.labels, b.labels)


def test_unknown_devices_are_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(SeglabError, match="unknown device"):
        resolve_device("tpu")
