"""Memory of an out-of-core run stays bounded: it does not grow with the image (measured, not timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r'''
import json, sys, threading, time
import numpy as np, zarr
sys.path[:0] = [TESTS, TESTS + "/inference"]
from test_lazy import _model, disc_grid
from seglab.inference.lazy import segment_lazy


def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024


def run(h, w, tag=""):
    path = f"{TMP}/in_{h}_{w}{tag}.zarr"
    z = zarr.create_array(store=path, shape=(h, w), chunks=(1024, 1024), dtype="uint16")
    for y in range(0, h, 512):  # written band by band: the image is never whole in memory
        band, _ = disc_grid((512, w), seed=y)
        z[y:y + 512] = band.astype(np.uint16) * 100
    del band
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    base = rss()
    t = threading.Thread(target=sample)
    t.start()
    res = segment_lazy(_model(), zarr.open_array(path, mode="r"), f"{TMP}/out_{h}_{w}{tag}.zarr", block_size=512,
                       diameter=None, device="cpu", amp=False)
    stop.set()
    t.join()
    return {"pixels": h * w, "growth": peak[0] - base, "objects": res.n_objects}


run(4096, 3072, "-warm-up")  # imports, first allocations, numba, torch and allocator caches
print(json.dumps([run(2048, 1024), run(4096, 3072)]))
'''


@pytest.mark.slow
def test_rss_growth_does_not_scale_with_image_size(tmp_path):
    tests = str(Path(__file__).resolve().parents[1])
    code = SCRIPT.replace("TESTS", repr(tests)).replace("TMP", repr(str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tests).parent / "src"), tests,
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    small, big = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nRSS growth: {small['pixels'] / 1e6:.1f} MP -> {small['growth'] / 1e6:.0f} MB, "
          f"{big['pixels'] / 1e6:.1f} MP -> {big['growth'] / 1e6:.0f} MB")
    assert big["objects"] > 15_000
    # six times the pixels: the in-memory engine would hold at least 12 bytes per pixel more
    # (float32 input + int64 labels: +124 MB); out of core, blocks of 512 px cost the same
    extra = big["pixels"] - small["pixels"]
    assert big["growth"] < small["growth"] + 0.2 * 12 * extra
    # and well under the full-size int64 labels the in-memory engine would allocate (100 MB)
    assert big["growth"] < 0.75 * 8 * big["pixels"]
