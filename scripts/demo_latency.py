#!/usr/bin/env python
"""The latency of ``ganforge demo``, as a browser sees it: the figures of docs/BENCHMARKS.md's demo section.

    ganforge train dcgan-mnist --steps 20 --out /tmp/d32 --device cpu --quiet --set eval.final=false
    OMP_NUM_THREADS=1 python scripts/demo_latency.py /tmp/d32

Starts ``ganforge demo RUN_DIR --port 0`` as a user would, times the command until it prints its URL, then
requests 4x4 sample grids over HTTP (``/api/sample?seed=S&n=16``): the first one, five more to settle, and 50
timed ones, each a new seed. Prints the wall time per request (client side: HTTP, drawing, PNG) and the server's
own figure (its ``X-Elapsed-Ms`` header). Only the timings matter, so a few training steps are enough.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request


def request(url: str, seed: int) -> tuple[float, float]:
    """(client wall ms, server ms) of one 4x4 grid."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{url}api/sample?seed={seed}&n=16", timeout=120) as res:
        res.read()
        server = float(res.headers["X-Elapsed-Ms"])
    return (time.perf_counter() - t0) * 1e3, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "demo", args.run_dir, "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    line = proc.stderr.readline()
    start = time.perf_counter() - t0
    if "open " not in line:
        sys.exit(f"the demo did not start: {line.strip()}")
    url = line.split("open ", 1)[1].split()[0]
    try:
        first = request(url, 0)
        for seed in range(1, 6):
            request(url, seed)
        rows = [request(url, seed) for seed in range(100, 100 + args.requests)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    wall = sorted(r[0] for r in rows)
    print(f"start to URL {start:.2f} s; first request {first[0]:.1f} ms; over {len(rows)}: median "
          f"{statistics.median(wall):.1f} ms (p90 {wall[int(0.9 * len(wall)) - 1]:.1f}, max {wall[-1]:.1f}); "
          f"server side median {statistics.median(r[1] for r in rows):.1f} ms")


if __name__ == "__main__":
    main()
