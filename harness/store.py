"""Records: one JSON per (dataset, model, seed, protocol) plus per-row test ranks (.npz).

Layout: ``<results>/records/<dataset>/<model>/<protocol>/seed<k>.json`` and ``seed<k>.npz``.
Both are written atomically (temp file + rename), the ``.npz`` first, so a JSON on disk always
describes a finished run whose per-row arrays are complete.

A records folder ``records/<dataset>/<model>/`` holds one config. The configured one (the
model's config file, no ``--set``) lives there; a run of another config writes under
``<results>/variants/<config hash>/`` (a results folder of its own) when the main folder holds
another config's records, and a configured run first moves the records of other configs it
finds there into their own ``variants/<hash>/`` (:func:`set_aside`). No record is ever
overwritten by another config's.
"""

from __future__ import annotations

import filecmp
import functools
import hashlib
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.execute import deferred

SCHEMA = 1
PROTOCOLS = ("validation", "published")
REPO_ROOT = Path(__file__).resolve().parent.parent


def config_hash(payload: dict[str, Any]) -> str:
    """sha256 (16 hex) of a JSON-canonical payload (dataset, model, config, data checksum)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_path(results_dir: Path, dataset: str, model: str, protocol: str, seed: int) -> Path:
    if protocol not in PROTOCOLS:
        raise HarnessError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    return Path(results_dir) / "records" / dataset / model / protocol / f"seed{seed}.json"


def checkpoint_path(results_dir: Path, dataset: str, model: str, seed: int) -> Path:
    """Where a run in progress keeps its last evaluation's state (removed when it finishes;
    git-ignored)."""
    return Path(results_dir) / "checkpoints" / dataset / model / f"seed{seed}.pt"


VARIANTS = "variants"


def records_dir(results_dir: Path, dataset: str, model: str) -> Path:
    return Path(results_dir) / "records" / dataset / model


def record_hashes(results_dir: Path, dataset: str, model: str) -> dict[Path, str]:
    """The config hash of every readable record in ``records/<dataset>/<model>/``, by path."""
    out = {}
    for path in sorted(records_dir(results_dir, dataset, model).glob("*/seed*.json")):
        rec = read_record(path)
        if rec is not None and rec.get("config_hash"):
            out[path] = rec["config_hash"]
    return out


def variant_dir(results_dir: Path, chash: str) -> Path:
    return Path(results_dir) / VARIANTS / chash


def config_roots(results_dir: Path) -> list[Path]:
    """``results_dir`` and every config folder set aside under it (``variants/<config hash>``)."""
    return [Path(results_dir), *sorted((Path(results_dir) / VARIANTS).glob("*"))]


#: the training fields that only decide how long a run goes on: two records whose configs differ
#: in these alone are the same run stopped at different points
STOPPING_FIELDS = ("patience", "max_epochs")


def differs_only_in_stopping(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether record configs ``a`` and ``b`` (``{"model": ..., "train": ...}``) are the same
    but for their :data:`STOPPING_FIELDS`."""
    def rest(config: dict[str, Any], part: str) -> dict[str, Any]:
        return {k: v for k, v in (config.get(part) or {}).items()
                if part != "train" or k not in STOPPING_FIELDS}
    return all(rest(a, part) == rest(b, part) for part in ("model", "train"))


def fixed_epochs(train: dict[str, Any]) -> int | None:
    """The epochs every run of the training settings ``train`` (a record's ``config["train"]``)
    makes when it cannot stop early, its patience in epochs outlasting ``max_epochs``; None when
    it can, or when ``train`` lacks one of the three."""
    if not all(k in train for k in ("max_epochs", "eval_every", "patience")):
        return None
    stops = train["patience"] * train["eval_every"] < train["max_epochs"]
    return None if stops else int(train["max_epochs"])


def home(results_dir: Path, dataset: str, model: str, chash: str, configured: bool,
         apart: bool = False) -> Path:
    """The results folder whose ``records/<dataset>/<model>/`` holds (or will hold) the records
    of config ``chash``: ``results_dir`` for the configured one, and for another config while
    the main folder holds no other config's records; else, and always for another config when
    ``apart`` (one from its own config file, such as a preset row's), ``variants/<chash>/``."""
    if configured:
        return Path(results_dir)
    if apart:
        return variant_dir(results_dir, chash)
    others = set(record_hashes(results_dir, dataset, model).values()) - {chash}
    return variant_dir(results_dir, chash) if others else Path(results_dir)


def set_aside(results_dir: Path, dataset: str, model: str, keep: str) -> list[tuple[Path, Path]]:
    """Make ``records/<dataset>/<model>/`` the home of config ``keep``: records of other configs
    move to ``variants/<their hash>/``, and records of ``keep`` kept in ``variants/<keep>/``
    move back. Returns the moves (source, destination) of JSON records; each ``.npz`` moves
    with its JSON. A destination that exists is never replaced: HarnessError, nothing moved."""
    outgoing = [(path, variant_dir(results_dir, chash) / path.relative_to(results_dir))
            for path, chash in record_hashes(results_dir, dataset, model).items() if chash != keep]
    # a record already set aside (the same bytes there, as a collected copy of a clone that set
    # it aside itself) only leaves this folder
    copies = [(src, dest) for src, dest in outgoing if same_record(src, dest)]
    outgoing = [m for m in outgoing if m not in copies]
    check_free(outgoing, results_dir)
    for src, _ in copies:
        src.with_suffix(".npz").unlink(missing_ok=True)
        src.unlink()
    leaving = {src for src, _ in outgoing}
    kept = variant_dir(results_dir, keep)
    incoming = [(path, Path(results_dir) / path.relative_to(kept))
           for path, chash in record_hashes(kept, dataset, model).items() if chash == keep]
    incoming = [(src, dest) for src, dest in incoming if dest in leaving or not dest.exists()]
    move_records(outgoing + incoming)  # out first: a seed coming back takes the place freed
    return outgoing + incoming


def same_record(a: Path, b: Path) -> bool:
    """Whether the records ``a`` and ``b`` (JSON, and ``.npz`` when either has one) are the
    same bytes."""
    pairs = [(a, b)] + ([(a.with_suffix(".npz"), b.with_suffix(".npz"))]
                        if a.with_suffix(".npz").exists() or b.with_suffix(".npz").exists() else [])
    return all(x.is_file() and y.is_file() and filecmp.cmp(x, y, shallow=False) for x, y in pairs)


def check_free(moves: list[tuple[Path, Path]], results_dir: Path) -> None:
    """HarnessError, before anything moves, when a destination of ``moves`` exists: a record
    is never replaced by another config's."""
    for src, dest in moves:
        if dest.exists():
            raise HarnessError(f"cannot move {src} aside: {dest} exists; move one of them out "
                               f"of {results_dir} by hand")


def move_records(moves: list[tuple[Path, Path]]) -> None:
    """Move each JSON (source, destination) in order, its ``.npz`` with it when there is one."""
    for src, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.with_suffix(".npz").exists():
            os.replace(src.with_suffix(".npz"), dest.with_suffix(".npz"))
        os.replace(src, dest)


def check_writable(folder: Path, what: str,
                   fix: str = "pass a writable folder with --results-dir") -> None:
    """HarnessError (naming ``what`` and ``fix``) unless files can be created in ``folder``
    (made on first use): tried in its nearest existing parent, before any work starts, leaving
    nothing behind."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or str(e)
        raise HarnessError(f"{what} {folder} is not writable ({reason}); {fix}") from None


def remove_checkpoint(path: Path) -> None:
    """Remove a finished run's checkpoint (:func:`checkpoint_path`), any half-written copy of it
    that a killed process left (:func:`atomic_write`'s temp files; a SIGKILL cannot be held
    off), and the folders it leaves empty: ``<model>/``, ``<dataset>/`` and ``checkpoints/``."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    for folder in path.parents[:3]:
        try:
            folder.rmdir()
        except OSError:  # not empty: another run's checkpoint is there
            break


def _file_mode(path: Path) -> int:
    """The permissions a rewritten ``path`` keeps, or those ``open`` gives a new file (0666
    less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(fh)`` into a temp file renamed over it: a reader sees the
    old file or the new one, never half of one. SIGINT/SIGTERM wait until the file is written
    (:func:`harness.execute.deferred`): raised inside ``torch.save``'s writer, the interrupt
    would come out as a RuntimeError instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with deferred():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, _file_mode(path))  # mkstemp's 0600 would make every output private
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def default_model_dir() -> Path:
    """Where selected model states are kept: ``$HARNESS_MODEL_DIR``, else ``<repo>/.cache/models``
    (git-ignored)."""
    env = os.environ.get("HARNESS_MODEL_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "models"


def state_path(model_dir: Path, dataset: str, model: str, chash: str, seed: int) -> Path:
    """The validation-selected state of one run: keyed by its config hash, so a state is only
    ever reused by the configuration that trained it."""
    return Path(model_dir) / dataset / model / chash / f"seed{seed}.pt"


def save_state(path: Path, state_dict: dict[str, Any], **meta: Any) -> None:
    """Write a model ``state_dict`` and plain ``meta`` values (selected epoch, config hash) in
    one file, atomically (a half-written state is never read)."""
    import torch

    atomic_write(path, lambda fh: torch.save({"state_dict": state_dict, **meta}, fh))


def load_state(path: Path) -> dict[str, Any] | None:
    """What :func:`save_state` wrote at ``path``, or None when absent or unreadable (then the
    caller retrains)."""
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    return saved if isinstance(saved, dict) and "state_dict" in saved else None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(Path(path), lambda fh: fh.write(text.encode()))


def save_figure(fig: Any, stem: Path) -> None:
    """Save a matplotlib figure as ``<stem>.png`` and ``<stem>.pdf``, each atomically."""
    for ext in ("png", "pdf"):
        atomic_write(Path(stem).with_suffix(f".{ext}"),
                     lambda fh, ext=ext: fig.savefig(fh, format=ext, dpi=150))


def read_seed_files(folder: Path, schema: int, key: str, what: str) -> dict[str, list[dict[str, Any]]]:
    """The ``<folder>/<dataset>/seed*.json`` files of one command, by dataset; a file that is not
    readable, or lacks ``schema`` or ``key``, is reported as not a ``what`` record and left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(folder).glob("*/seed*.json")):
        rec = read_json(path)
        if not rec or rec.get("schema") != schema or key not in rec:
            print(f"warning: {path} is not a {what} record; left out", file=sys.stderr)
            continue
        out.setdefault(rec["dataset"], []).append(rec)
    return out


def write_json(path: Path, obj: dict[str, Any]) -> None:
    write_text(path, json.dumps(obj, indent=1, default=_jsonable) + "\n")


def array_digest(arr: np.ndarray) -> str:
    """sha256 (16 hex) of an array's int32 values: equal digests, equal per-row ranks."""
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.int32).tobytes()).hexdigest()[:16]


def write_record(path: Path, record: dict[str, Any], ranks: np.ndarray | None) -> None:
    """Write ``ranks`` ([n_test_rows] int, 0-based target ranks) then the JSON ``record``."""
    if ranks is not None:
        arr = np.asarray(ranks, dtype=np.int32)
        atomic_write(path.with_suffix(".npz"), lambda fh: np.savez_compressed(fh, test_ranks=arr))
    write_text(path, json.dumps(record, indent=1, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when absent or unreadable (then it is simply rerun)."""
    try:
        with open(path, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
        return None
    return rec


def read_ranks(path: Path) -> np.ndarray:
    """Per-row 0-based test ranks stored beside the record at ``path`` -> [n_test_rows]."""
    with np.load(Path(path).with_suffix(".npz"), allow_pickle=False) as z:
        return z["test_ranks"].astype(np.int64)


def is_done(path: Path, chash: str) -> bool:
    """A finished, successful record for the same config exists at ``path``."""
    rec = read_record(path)
    return bool(rec and rec.get("status") == "ok" and rec.get("config_hash") == chash
                and path.with_suffix(".npz").exists())


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "pandas", "scipy", "recbole"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit of the code that runs and whether tracked code differed from it (results/ aside).

    Read once per process, at the first call (commands call it when they start): later commits
    do not change what the running process executes.
    """
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return {"commit": commit, "dirty": None if dirty is None else bool(dirty)}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_minutes(rec: dict[str, Any]) -> float:
    """A record's run time in minutes: the process's own wall time, or, for a resumed run (whose
    process saw only its last stretch), the training and evaluation time summed over every
    stretch."""
    wall = rec["wall"]
    if wall.get("resumed") and "train_s" in wall and "eval_s" in wall:
        return (wall["train_s"] + wall["eval_s"]) / 60
    return wall["total_s"] / 60
