"""The official DreamRec code, timed as it is: ``python -m harness.bench --against-official DIR``.

``DIR`` is a checkout of github.com/YangZhengyi98/DreamRec (``DreamRec.py``, ``Modules_ori.py``,
``utility.py``), supplied by the user; nothing of it is copied into this project. Each
measurement runs in a child process of its own (``python -m harness.bench_official ...``), with
torch's thread count set before the official module is imported, in a temporary folder whose
``data`` entry points at the harness's data directory (the official script reads
``./data/<dataset>/``):

- ``train``: the official script's own ``__main__`` block runs unmodified for ``1 + epochs``
  epochs (no evaluation happens before epoch 10). Its end-of-epoch line (``Epoch 000; Train
  loss ...``) is timestamped through a ``print`` hook; an epoch's time is the gap between two
  such lines, so the first epoch is the warm-up.
- ``generate``: the module is loaded without its ``__main__`` block; a model and a diffusion
  are built with the official classes as its ``__main__`` builds them, and the official
  ``evaluate`` runs over ``val_data.df`` and then ``test_data.df`` (DDPM over all T steps,
  batch 100, the official way) on the untrained model; the two passes are timed together.

The child prints one JSON line: ``{"seconds": [...], "rows": N}``.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import HarnessError

FILES = ("DreamRec.py", "Modules_ori.py", "utility.py")


def check_checkout(directory: str | Path) -> Path:
    """The official checkout's folder, or a one-line error naming what is missing."""
    d = Path(directory).expanduser()
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise HarnessError(f"--against-official {directory}: not a checkout of the official "
                           f"DreamRec code (missing {', '.join(missing)}); clone "
                           f"github.com/YangZhengyi98/DreamRec and pass its folder")
    return d.resolve()


def official_argv(dataset: str, model_cfg, train_cfg, epochs: int) -> list[str]:
    """The official script's flags for the harness's settings of ``dataset``."""
    return [
        "DreamRec.py", "--data", dataset, "--epoch", str(epochs), "--random_seed", "0",
        "--batch_size", str(train_cfg.batch_size), "--hidden_factor", str(model_cfg.hidden_size),
        "--timesteps", str(model_cfg.timesteps), "--beta_start", str(model_cfg.beta_start),
        "--beta_end", str(model_cfg.beta_end), "--beta_sche", model_cfg.schedule,
        "--lr", str(train_cfg.lr), "--l2_decay", str(train_cfg.weight_decay),
        "--dropout_rate", str(model_cfg.dropout), "--w", str(model_cfg.w),
        "--p", str(model_cfg.p_uncond), "--diffuser_type", model_cfg.denoiser,
        "--optimizer", "adamw",
    ]


def measure(official: Path, data_dir: Path, what: str, threads: int, argv: list[str],
            timeout: float | None = None) -> dict:
    """Run one measurement in a child process; its JSON result."""
    cmd = [sys.executable, "-m", "harness.bench_official", str(official), str(data_dir), what,
           str(threads), json.dumps(argv)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    last = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    if proc.returncode != 0 or not last:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise HarnessError(f"the official code failed ({what}, {threads} threads): {tail}")
    out = json.loads(last[0])
    if not out["seconds"]:
        raise HarnessError(f"the official code printed no 'Epoch ...' lines to time ({what}); "
                           f"is {official / 'DreamRec.py'} the official script?")
    return out


def _child(official: Path, data_dir: Path, what: str, threads: int, argv: list[str]) -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(official))
    sys.argv = argv
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(data_dir, Path(tmp) / "data")
        os.chdir(tmp)
        if what == "train":
            stamps: list[float] = []
            real_print = builtins.print

            def stamped(*args, **kw):
                if args and str(args[0]).startswith("Epoch "):
                    stamps.append(time.perf_counter())

            builtins.print = stamped
            try:
                runpy.run_path(str(official / "DreamRec.py"), run_name="__main__")
            finally:
                builtins.print = real_print
            return {"seconds": [b - a for a, b in zip(stamps, stamps[1:])]}
        ns = runpy.run_path(str(official / "DreamRec.py"), run_name="dreamrec_official")
        evaluate = ns["evaluate"]
        g = evaluate.__globals__  # the module's own globals, which its functions read
        args = g["args"]
        import pandas as pd

        statis = pd.read_pickle(Path("data") / args.data / "data_statis.df")
        device = torch.device("cpu")
        g.update(data_directory=f"./data/{args.data}", topk=[10, 20, 50], device=device)
        torch.manual_seed(0)
        model = g["Tenc"](args.hidden_factor, statis["item_num"][0], statis["seq_size"][0],
                          args.dropout_rate, args.diffuser_type, device)
        diff = g["diffusion"](args.timesteps, args.beta_start, args.beta_end, args.w)
        rows = sum(len(pd.read_pickle(Path("data") / args.data / f)) // 100 * 100
                   for f in ("val_data.df", "test_data.df"))
        with contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            evaluate(model, "val_data.df", diff, device)
            evaluate(model, "test_data.df", diff, device)
            seconds = time.perf_counter() - t0
        return {"seconds": [seconds], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench_official",
                                 description="child of python -m harness.bench --against-official")
    ap.add_argument("official")
    ap.add_argument("data_dir")
    ap.add_argument("what", choices=["train", "generate"])
    ap.add_argument("threads", type=int)
    ap.add_argument("argv", help="the official script's argv, as JSON")
    a = ap.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the official prints go to stderr
        out = _child(Path(a.official), Path(a.data_dir).resolve(), a.what, a.threads,
                     json.loads(a.argv))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
