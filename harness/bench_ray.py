"""``python -m harness.bench_ray``: what a local Ray costs an invocation that starts one.

``harness.execute`` starts a local Ray for every invocation that trains more than one run at a
time, and trains in the command's own process with ``--jobs 1``. This measures why: the time
``ray.init`` takes, the time until ``--jobs`` trivial tasks (each reserving one CPU, as a run
does) have all returned, and the resident memory of the Ray processes then (the driver's
share excluded). Example::

    python -m harness.bench_ray --jobs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tabulate import tabulate

from harness import cli
from harness.errors import HarnessError


def _task(i: int) -> int:  # pragma: no cover - runs in a Ray worker
    return os.getpid()


def ray_rss_mb(driver: int) -> float:
    """Resident memory of this machine's Ray processes (``ray::`` workers, raylet, GCS,
    agents; not the driver), in MB, from /proc."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == driver:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"ray" not in cmd:
                continue
            rss = next(x for x in (d / "status").read_text().splitlines()
                       if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        total += int(rss.split()[1])
    return total / 1024


def measure(jobs: int) -> dict[str, float]:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=jobs, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    t1 = time.perf_counter()
    task = ray.remote(num_cpus=1)(_task)
    ray.get([task.remote(i) for i in range(jobs)])
    t2 = time.perf_counter()
    rss = ray_rss_mb(os.getpid())
    ray.shutdown()
    return {"init_s": t1 - t0, "tasks_s": t2 - t1, "ray_rss_mb": rss,
            "shutdown_s": time.perf_counter() - t2}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench_ray",
                                 description=cli.description(__doc__))
    ap.add_argument("--jobs", type=int, default=2, help="CPUs of the local Ray and tasks run "
                    "at once (default: 2)")
    ap.add_argument("--repeats", type=int, default=3, help="local Rays started one after "
                    "another (default: 3)")
    args = ap.parse_args(argv)
    try:
        if args.jobs < 1 or args.repeats < 1:
            raise HarnessError(f"--jobs and --repeats must be >= 1, got {args.jobs} and "
                               f"{args.repeats}")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rows = [measure(args.jobs) for _ in range(args.repeats)]
    print(f"local Ray, {args.jobs} CPUs, {os.cpu_count()} cores here "
          f"(python -m harness.bench_ray --jobs {args.jobs} --repeats {args.repeats}):")
    print(tabulate([[i, f"{r['init_s']:.1f}", f"{r['tasks_s']:.1f}", f"{r['ray_rss_mb']:.0f}",
                     f"{r['shutdown_s']:.1f}"] for i, r in enumerate(rows)],
                   headers=["start", "ray.init s", f"{args.jobs} tasks s", "Ray RSS MB",
                            "shutdown s"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
