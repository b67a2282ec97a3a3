"""Wall-clock time of whole ``seglab`` processes, as a user runs them (start-up included).

    python benchmarks/bench_startup.py [--seglab .venv/bin/seglab] [--runs 7] [--src DIR] [--out FILE]

Times the interpreter alone (``python -c pass``, the floor), ``seglab --help``, ``seglab models`` and ``seglab segment`` of a sample image
(``sample_data``, 520 x 696 fluorescence) with each dense built-in, ``--runs`` times each,
every run a fresh process (several sources: their runs interleaved), after one warm-up run (which also writes ``__pycache__``, as an
installed package has it: ``PYTHONDONTWRITEBYTECODE`` is dropped); reports the median, minimum
and maximum wall-clock seconds and the median CPU seconds (user + system) of the process, which
a busy machine inflates much less than the wall clock. ``--src DIR``
puts ``DIR`` first on ``PYTHONPATH`` (to time a source tree other than the installed one,
e.g. ``--src src`` in a git worktree, or an older checkout for a before/after comparison).
The ``segment`` runs also report which heavy packages the process imported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "images" / "8efed2e62c919e6d70a2ab548b1a33014877fe8a23f177ef25a9dee25ffe8842.tif"
HEAVY = ("torch", "torchvision", "sympy", "torch._dynamo", "scipy", "skimage", "numba")

#: prints the heavy modules a ``seglab`` run imported (run through ``python -c``)
PROBE = (
    "import sys\n"
    "sys.argv = ['seglab'] + sys.argv[1:]\n"
    "from seglab.cli import main\n"
    "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
    f"print('IMPORTED', ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    "sys.exit(rc)\n"
)




def time_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one fresh process of ``cmd`` (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seglab", default=str(ROOT / ".venv" / "bin" / "seglab"), help="the seglab executable")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--src", nargs="+", default=[None], metavar="DIR",
                   help="put this source folder first on PYTHONPATH; several: compared, their runs interleaved")
    p.add_argument("--models", nargs="+", default=["unet-nuclei", "stardist-nuclei"])
    p.add_argument("--image", default=str(SAMPLE))
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args()

    envs = []
    for src in args.src:
        env = dict(os.environ)
        # as installed: modules compiled to __pycache__ once (pip does it at install), not at every start
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if src:
            env["PYTHONPATH"] = str(Path(src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
        envs.append(env)
    python = str(Path(args.seglab).with_name("python"))
    results = []
    print("| command | source | median s | min s | max s | CPU s (median) | heavy packages imported |\n"
          "|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        commands = [("python -c pass (the interpreter alone)", [python, "-c", "pass"]),
                    ("seglab --help", [args.seglab, "--help"]), ("seglab models", [args.seglab, "models"])]
        for m in args.models:
            commands.append((f"seglab segment -m {m} (520x696, CPU)",
                             [args.seglab, "segment", args.image, "-m", m, "-o", tmp, "--overwrite", "-q",
                              "--device", "cpu"]))
        for label, cmd in commands:
            secs: list[list[float]] = [[] for _ in envs]
            cpu: list[list[float]] = [[] for _ in envs]
            for env in envs:
                time_run(cmd, env)  # warm-up: writes __pycache__, fills the file cache
            for _ in range(args.runs):
                for k, env in enumerate(envs):
                    wall, used = time_run(cmd, env)
                    secs[k].append(wall)
                    cpu[k].append(used)
            for src, env, sk, ck in zip(args.src, envs, secs, cpu):
                probe = subprocess.run([python, "-c", PROBE, *cmd[1:]] if cmd[0] == args.seglab else ["true"],
                                       capture_output=True, text=True, env=env)
                imported = [line.split(" ", 1)[1] if " " in line else "" for line in probe.stderr.splitlines()
                            if line.startswith("IMPORTED")]
                row = {"command": label, "src": src, "median_s": statistics.median(sk), "min_s": min(sk),
                       "max_s": max(sk), "cpu_median_s": statistics.median(ck), "runs": len(sk),
                       "imported": imported[-1] if imported else ("?" if cmd[0] == args.seglab else "")}
                results.append(row)
                print(f"| {label} | {src or 'installed'} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
                      f"{row['max_s']:.2f} | {row['cpu_median_s']:.2f} | {row['imported'] or 'none'} |", flush=True)
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "python": sys.version.split()[0], "src": args.src, "seglab": args.seglab}
    print(json.dumps(meta))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
