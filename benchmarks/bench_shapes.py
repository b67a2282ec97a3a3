"""How long napari takes to show N polygons in a Shapes layer, per triangulation backend.

    xvfb-run -a python benchmarks/bench_shapes.py [--n 2000] [--repeats 5] [--json out.json]

Polygons: 32-vertex star-convex outlines of nuclei-sized objects on a grid (what
``stardist-nuclei`` gives). Timed: building the layer, adding it to a real viewer and
processing Qt events until it is drawn. Each backend is set with napari's
``triangulation_backend`` setting for the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def polygons(n: int) -> list[np.ndarray]:
    from seglab.models.star_geometry import polygon_coords

    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(n)))
    centres = np.array([(20 + 25 * (i // side), 20 + 25 * (i % side)) for i in range(n)], dtype=np.float64)
    return list(polygon_coords(centres, rng.uniform(6, 11, (n, 32))).astype(np.float32))


def main() -> int:
    import napari
    from napari.settings import get_settings
    from napari.utils.triangulation_backend import TriangulationBackend
    from qtpy.QtWidgets import QApplication

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    data = polygons(args.n)
    viewer = napari.Viewer(show=True)
    settings = get_settings().experimental
    before = settings.triangulation_backend
    results = {}
    try:
        for backend in ("bermuda", "numba", "pure_python"):
            try:
                settings.triangulation_backend = TriangulationBackend[backend]
            except Exception as e:  # backend not installed
                results[backend] = {"error": str(e)}
                continue
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                layer = viewer.add_shapes(data, shape_type="polygon", edge_color="yellow",
                                          face_color="transparent", edge_width=1)
                QApplication.processEvents()
                times.append(time.perf_counter() - t0)
                viewer.layers.remove(layer)
                QApplication.processEvents()
            results[backend] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                                "runs": len(times)}
            print(backend, results[backend], flush=True)
    finally:
        settings.triangulation_backend = before
        viewer.close()
    out = {"n_polygons": args.n, "vertices_each": 32, "napari": napari.__version__, "results": results}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
