"""``python -m harness.campaign``: a long list of commands as one resumable background queue.

A campaign (tuning every row by the rule, then its seeds; a rerun of a whole column) is hours
to days of commands that each resume from their own checkpoints. This module runs such a list
a few at a time and survives being stopped, so that the same command line continues it:

- ``run PLAN --state DIR [--jobs 2]``: the plan's jobs in their order, ``--jobs`` at a time,
  each a shell command in its own process group with one torch/BLAS thread
  (``OMP_NUM_THREADS=1``), its output in ``DIR/<job>.log``. A job that exits 0 gets
  ``DIR/<job>.done`` (its wall time) and is skipped by every later invocation; one that fails
  gets ``DIR/<job>.failed`` (exit status and its last ``error:`` line, else its log's last
  line) and is not retried unless ``--retry-failed``. ``DIR/status.txt`` lists what is done,
  running (with the last line of its log, every minute), failed and left. A job's ``python``
  is the campaign's own interpreter, activated or not.
  SIGINT/SIGTERM pass SIGTERM to every job in progress (harness commands keep their last
  evaluation's checkpoint), wait for them, and exit 130/143; the same command resumes. One
  campaign at a time holds a state folder (``DIR/lock``); jobs that a campaign killed outright
  left running (their process groups are in ``DIR/<job>.pgid``) are stopped before a rerun
  starts them again, so that no run trains twice at once.
- ``marks --state DIR FILE [--restore]``: the state folder lives outside the checkout and can be
  lost with its machine, and its done marks cannot be derived from the records (a job that ran
  under a config since edited would train again), so they are kept in a committed file: without
  ``--restore``, FILE gets every job the state folder marks done (with its wall time), beside
  those it listed before; with it, each job FILE lists gets its ``DIR/<job>.done`` where it has
  none (a mark already there is kept). A failed mark is never carried.
- ``park CLONE FOLDER`` and ``unpark FOLDER CLONE``: a run longer than the machine is kept (a
  seed of hours, a session that ends first) would start over on every new machine, so its
  checkpoint is kept in a committed folder too: ``park`` makes FOLDER (e.g. ``campaigns/parked``)
  a copy of every checkpoint of a run in progress in the clone (``results/checkpoints/`` and
  every ``checkpoints/`` under ``results/``; a finished run leaves none) at the same relative
  path, with ``PARKED.md`` listing each one's epoch, and drops what it parked before;
  ``unpark`` copies them into a new clone, and refuses a clone that holds a checkpoint of its
  own (a kept machine's are newer than the parked ones, and a run finished since parking would
  get a stale one back). A parked checkpoint resumes only the run of the same config
  (:func:`harness.train.train`'s key); any other starts over.
- ``drop-older --before TIME FOLDER...``: delete the records (``seed*.json`` and its ``.npz``)
  created before TIME under the folders, so that a campaign reruns them on the current code
  (run it in the campaign's own clone: the main checkout keeps the old records until
  ``collect`` replaces them). Records created at or after TIME are never touched, so it can run
  again at any time, and only a record git holds as committed is deleted (one that is not, or
  that changed since, is kept and named: deleting it would lose it).
- ``collect SRC``: bring a campaign clone's finished work into this checkout: its records
  (each config's records set aside into ``variants/<hash>/`` first when another config held
  the folder, as a configured run does: :func:`harness.store.set_aside`), its guidance sweeps
  (another config's sweep set aside the same way), its tuning trials and reports, and the
  config files its tuning rewrote (a config the clone holds as committed is older than this
  checkout's and is left alone; a rewrite over a config with changes not committed here is a
  one-line error before anything is copied). Only finished records are copied (a JSON
  is written after its ``.npz``), never a checkpoint or a log.

- ``update CLONE``: move a campaign's clone up to the commits of the checkout it was cloned from
  (new code, a new plan) while it runs: files that the clone made and ``collect`` has since
  committed (the same bytes arrive with the merge) are taken out of the way first, and so are
  those the checkout committed and then moved or removed (records set aside, a swapped
  config's records moved back), which the next collect would otherwise bring back; a file the
  clone changed otherwise stops the update with its name, nothing changed. The jobs in progress
  keep the code they started with; the next ones start on the new code.

- ``left PLAN --state DIR [--clone CLONE]``: what is left of the plan, job by job, in CPU-hours
  by the records' own run times (the median minutes of one seed of the model on the dataset,
  from its validation records anywhere under the clone's results: those of the very settings a
  ``run`` step trains when there are any, else those trained with the step's epochs, evaluation
  cadence and patience when there are any; times the trainings each step
  still has to make: seeds recorded for the config each step would run now, by its hash (and
  with their states in the clone's model folder, for a step that keeps them); the
  tuning rule counted at its fewest trials, all of them when the config changed since),
  less the epochs its runs in progress have saved where a run's length is fixed (a seed at
  epoch 600 of 1,000 counts 0.4); a model never timed on a dataset is named, and so are this
  host's CPU kernels (other kernels run at other speeds).

- ``compare A B [--datasets D,...]``: every record under ``B/records`` against the one at the
  same place under ``A/records``, field by field but for when, where and how long it ran
  (``created``, ``wall``, ``git``, ``device``, ``torch_threads``), and its per-row test ranks
  (``.npz``); the differing fields of each, and exit 1 when any record differs or is missing.
  A reproduction into an empty folder compared with the committed records shows whether the
  committed table reproduces bit for bit. Bits need the same kernels: a record that differs
  only in its curve and test ranks (the cell's inputs equal) is named as roundings only, with
  the CPU instruction set each side trained on (each segment of a record keeps it).

Plan files (``campaigns/*.plan``) hold one job per line, ``name: shell command``, run from the
folder the campaign is started in; ``#`` starts a comment. ``name [after a, b]: command`` starts
only once the jobs ``a`` and ``b`` (above it) are done, e.g. a run that needs another's tuned
config.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import filecmp
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness import cli, execute, store
from harness.errors import HarnessError

#: what ``collect`` brings besides records, guidance sweeps and configs: the tuning reports and
#: the reports of harness.diagnose, harness.embeddings and the plan's checks, under results/
REPORTS = ("tuning/*.md", "diagnostics/*.md", "checks/**/*.md", "embeddings/*/*.json",
           "embeddings-*.md", "figures/fig3_tsne-*.png", "figures/fig3_tsne-*.pdf")

#: how often status.txt is rewritten while jobs run (each job's last log line, minutes)
STATUS_EVERY_S = 60.0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


AFTER = re.compile(r"^(?P<name>\S+)\s+\[after\s+(?P<deps>[^\]]+)\]$")


@dataclass(frozen=True)
class PlanJob:
    name: str
    command: str
    after: tuple[str, ...] = ()  # jobs above it in the plan that must be done first


def read_plan(path: Path) -> list[PlanJob]:
    """The jobs of a plan file, checked (names unique and file-safe, commands not empty)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise HarnessError(f"cannot read the plan {path}: {e.strerror}; pass a plan file "
                           f"(one 'name: command' per line)") from None
    jobs: list[PlanJob] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        after: tuple[str, ...] = ()
        if (m := AFTER.match(name)) is not None:
            name = m["name"]
            after = tuple(d.strip() for d in m["deps"].split(",") if d.strip())
        if not sep or not NAME.match(name) or not command:
            raise HarnessError(f"{path}:{number}: expected 'name: command' or 'name [after "
                               f"other]: command' with a name of letters, digits, '.', '_' or "
                               f"'-', got {line!r}")
        if any(j.name == name for j in jobs):
            raise HarnessError(f"{path}:{number}: job {name!r} is named twice; names must be "
                               f"unique")
        missing = [d for d in after if not any(j.name == d for j in jobs)]
        if missing:
            raise HarnessError(f"{path}:{number}: job {name!r} comes after {', '.join(missing)}, "
                               f"which is not a job above it in the plan")
        jobs.append(PlanJob(name, command, after))
    if not jobs:
        raise HarnessError(f"the plan {path} has no jobs; add lines 'name: command'")
    return jobs


def job_env() -> dict[str, str]:
    """The environment of a job: one BLAS/OpenMP thread, and ``python`` on its PATH is the
    interpreter that runs the campaign (a runner started as ``.venv/bin/python -m ...`` without
    activating the venv would otherwise hand its jobs the system ``python``)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir] + [d for d in env.get("PATH", "").split(os.pathsep)
                                               if d and d != bin_dir])
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


def last_line(log: Path, width: int = 120) -> str:
    """The last non-empty line of ``log`` (its end only is read), cut to ``width``."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [x for x in fh.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:width] if lines else ""


def write_status(state: Path, jobs: list[PlanJob], running: dict[str, float]) -> None:
    lines = [f"# {datetime.now().astimezone().isoformat(timespec='seconds')}"]
    for job in jobs:
        if (state / f"{job.name}.done").exists():
            what = "done " + (state / f"{job.name}.done").read_text().strip()
        elif job.name in running:
            what = f"running for {(time.time() - running[job.name]) / 60:.0f} min"
            last = last_line(state / f"{job.name}.log")
            what += f" ({last})" if last else ""
        elif (state / f"{job.name}.failed").exists():
            what = "failed " + (state / f"{job.name}.failed").read_text().strip()
        else:
            what = "left"
        lines.append(f"{job.name}: {what}")
    store.write_text(state / "status.txt", "\n".join(lines) + "\n")


def run_plan(plan: Path, state: Path, slots: int, retry_failed: bool = False,
             poll_s: float = 2.0) -> int:
    """Run the plan's jobs not done yet, ``slots`` at a time; 0 when every job is done, 1 when
    some failed (the others ran), 128 + signal when stopped."""
    jobs = read_plan(plan)
    if slots < 1:
        raise HarnessError(f"--jobs must be at least 1, got {slots}")
    store.check_writable(state, "the state folder", "pass a writable folder with --state")
    state.mkdir(parents=True, exist_ok=True)
    lock = hold_lock(state)  # noqa: F841 - held until this function returns
    stop_leftovers(state)
    if retry_failed:
        for job in jobs:
            (state / f"{job.name}.failed").unlink(missing_ok=True)
    procs: dict[str, tuple[subprocess.Popen, float]] = {}  # job -> (its shell, start time)

    def started() -> dict[str, float]:
        return {name: t0 for name, (_, t0) in procs.items()}

    written = time.time()

    def waiting() -> list[PlanJob]:
        """The jobs to start, in plan order: not done, failed or running, and every job they
        come after done."""
        return [j for j in jobs if j.name not in procs and not (state / f"{j.name}.done").exists()
                and not (state / f"{j.name}.failed").exists()
                and all((state / f"{d}.done").exists() for d in j.after)]

    try:
        with execute.stop_on_signals():
            while (pending := waiting()) or procs:
                while pending and len(procs) < slots:
                    job = pending.pop(0)
                    log = open(state / f"{job.name}.log", "a")
                    log.write(f"$ {job.command}\n")
                    log.flush()
                    with execute.deferred():  # a signal now waits until the job is known
                        proc = subprocess.Popen(job.command, shell=True, stdout=log,
                                                stderr=subprocess.STDOUT, env=job_env(),
                                                start_new_session=True)
                        procs[job.name] = (proc, time.time())
                        log.close()
                        (state / f"{job.name}.pgid").write_text(f"{proc.pid}\n")
                    print(f"started {job.name}", flush=True)
                    write_status(state, jobs, started())
                for name, (proc, t0) in list(procs.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    del procs[name]
                    (state / f"{name}.pgid").unlink(missing_ok=True)
                    wall = time.time() - t0
                    if rc == 0:
                        (state / f"{name}.done").write_text(f"in {wall / 3600:.2f} h\n")
                        print(f"done {name} ({wall / 3600:.2f} h)", flush=True)
                    else:
                        # its `error:` line, else the log's last line (a traceback's end)
                        error = (execute.last_error(state / f"{name}.log")
                                 or last_line(state / f"{name}.log"))
                        line = f"exit {rc}" + (f": {error}" if error else "")
                        (state / f"{name}.failed").write_text(line + "\n")
                        print(f"failed {name}: {line}", flush=True)
                    write_status(state, jobs, started())
                    jobs = reread(plan, jobs)
                if time.time() - written > STATUS_EVERY_S:
                    write_status(state, jobs, started())
                    written = time.time()
                time.sleep(poll_s)
    except execute.Interrupted as e:
        for proc, _ in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + execute.GRACE_S  # the whole group: the shell goes first
        while time.time() < deadline and any(p.poll() is None or _alive(p.pid)  # poll reaps
                                             for p, _ in procs.values()):
            time.sleep(0.1)
        for name, (proc, _) in procs.items():
            if _alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            (state / f"{name}.pgid").unlink(missing_ok=True)
        write_status(state, jobs, {})
        print(f"interrupted: {len(procs)} jobs stopped (each resumes from its checkpoints); "
              f"rerun the same command to continue", file=sys.stderr)
        return e.exit_code
    blocked = [j.name for j in jobs if not (state / f"{j.name}.done").exists()
               and not (state / f"{j.name}.failed").exists()]
    if blocked:  # what they come after failed
        print(f"{len(blocked)} jobs not started, as a job they come after failed: "
              f"{', '.join(blocked)}", file=sys.stderr)
    failed = [j.name for j in jobs if (state / f"{j.name}.failed").exists()]
    if failed:
        print(f"{len(failed)} jobs failed: {', '.join(failed)} (logs in {state}; "
              f"--retry-failed runs them again)", file=sys.stderr)
    return 1 if failed or blocked else 0


MARKS_HEADER = ("# the jobs of a campaign marked done in its state folder, one 'name: wall time' a "
                "line\n# (python -m harness.campaign marks; --restore puts them back)\n")


def read_marks(path: Path) -> dict[str, str]:
    """The jobs a marks file lists, ``{name: text of its mark}`` ({} when there is no file)."""
    if not Path(path).exists():
        return {}
    marks = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, text = line.partition(":")
        if not sep or not NAME.match(name.strip()):
            raise HarnessError(f"{path}:{number}: expected 'job: wall time', got {line!r}; "
                               f"write it with python -m harness.campaign marks")
        marks[name.strip()] = text.strip()
    return marks


def save_marks(state: Path, path: Path) -> list[str]:
    """Add the jobs ``state`` marks done to the marks file ``path`` (those it listed stay);
    returns the names added."""
    if not Path(state).is_dir():
        raise HarnessError(f"no state folder {state}; pass the campaign's --state folder")
    marks = read_marks(path)
    done = {mark.stem: mark.read_text().strip() for mark in sorted(Path(state).glob("*.done"))}
    added = [name for name in done if name not in marks]
    marks.update(done)
    store.write_text(path, MARKS_HEADER + "".join(f"{k}: {v}\n" for k, v in sorted(marks.items())))
    return added


def restore_marks(path: Path, state: Path) -> list[str]:
    """Give each job the marks file ``path`` lists a done mark in ``state`` where it has none;
    returns the names marked."""
    if not Path(path).exists():
        raise HarnessError(f"no marks file {path}; write one with python -m harness.campaign "
                           f"marks --state DIR {path}")
    marks = read_marks(path)
    Path(state).mkdir(parents=True, exist_ok=True)
    restored = []
    for name, text in marks.items():
        if not (Path(state) / f"{name}.done").exists():
            store.write_text(Path(state) / f"{name}.done", text + "\n")
            restored.append(name)
    return restored


PARKED_INDEX = "PARKED.md"


def checkpoint_files(clone: Path) -> list[Path]:
    """The checkpoints of the runs in progress in a checkout (:func:`harness.store.checkpoint_path`
    and the same under a tuning trial's or a set-aside config's folder), relative to it."""
    results = Path(clone) / "results"
    if not results.is_dir():
        return []
    return sorted(p.relative_to(clone) for p in results.rglob("*.pt")
                  if "checkpoints" in p.relative_to(results).parts[:-1])


def _epoch(path: Path) -> str:
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return str(saved["epoch"])
    except Exception:  # noqa: BLE001 -- the index is for reading; the file is copied anyway
        return "unreadable"


def park(clone: Path, folder: Path) -> list[Path]:
    """Make ``folder`` a copy of the checkpoints in ``clone`` (what it held before is dropped);
    returns the files parked, relative to both."""
    clone, folder = Path(clone), Path(folder)
    if not (clone / "results").is_dir():
        raise HarnessError(f"{clone} is not a checkout with results/; pass the campaign's clone")
    files = checkpoint_files(clone)
    fresh = folder.with_name(f".{folder.name}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    rows = []
    for rel in files:
        (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clone / rel, fresh / rel)  # a checkpoint is replaced by a rename: whole
        rows.append(f"| {rel} | {_epoch(fresh / rel)} | {(fresh / rel).stat().st_size:,} |")
    table = ("| checkpoint | epoch | bytes |\n|---|---|---|\n" + "\n".join(rows) if rows
             else "No run was in progress.")
    store.write_text(fresh / PARKED_INDEX, (
        f"# Parked checkpoints\n\nThe runs in progress in the campaign's clone when it was "
        f"parked ({datetime.now().astimezone().isoformat(timespec='seconds')}; "
        f"`python -m harness.campaign park`). On a new machine, `python -m harness.campaign "
        f"unpark {folder} CLONE` puts them back so that each run resumes after its last "
        f"evaluation.\n\n{table}\n"))
    shutil.rmtree(folder, ignore_errors=True)
    fresh.rename(folder)
    return files


def unpark(folder: Path, clone: Path) -> list[Path]:
    """Copy the checkpoints parked in ``folder`` into ``clone`` (a fresh one: it may hold none of
    its own); returns the files copied, relative to both."""
    folder, clone = Path(folder), Path(clone)
    if not (clone / "results").is_dir():
        raise HarnessError(f"{clone} is not a checkout with results/; pass the campaign's clone")
    own = checkpoint_files(clone)
    if own:
        raise HarnessError(f"{clone} holds checkpoints of its own ({own[0]}"
                           f"{f' and {len(own) - 1} more' if len(own) > 1 else ''}): they are "
                           f"newer than the parked ones; unpark only into a new clone")
    if not (folder / PARKED_INDEX).is_file():
        raise HarnessError(f"{folder} holds no parked checkpoints ({PARKED_INDEX} is missing); "
                           f"pass the folder python -m harness.campaign park wrote")
    files = sorted(p.relative_to(folder) for p in folder.rglob("*.pt"))
    for rel in files:  # atomic, as the trainer writes them: an interrupted unpark leaves no half
        _copy(folder / rel, clone / rel)
    return files


def hold_lock(state: Path):
    """An exclusive lock on ``state/lock`` for this process's lifetime (the open file; closing
    it releases the lock); HarnessError when another campaign holds it."""
    fh = open(state / "lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise HarnessError(f"another campaign (pid {holder}) runs with the state folder {state}; "
                           f"stop it (kill -TERM {holder}) or pass another --state") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def stop_leftovers(state: Path) -> list[str]:
    """Stop the jobs a campaign killed outright left running (``<job>.pgid`` of a process group
    still alive): SIGTERM, then SIGKILL after the grace period. Without it, the rerun would
    train the same runs twice at once. Returns the jobs stopped."""
    stopped = []
    for mark in sorted(state.glob("*.pgid")):
        try:
            pgid = int(mark.read_text().strip())
            os.killpg(pgid, signal.SIGTERM)
        except (ValueError, ProcessLookupError, PermissionError):
            mark.unlink(missing_ok=True)
            continue
        deadline = time.time() + execute.GRACE_S
        while time.time() < deadline and _alive(pgid):
            time.sleep(0.1)
        if _alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        print(f"stopped {mark.stem}, left running by an earlier campaign", flush=True)
        stopped.append(mark.stem)
        mark.unlink(missing_ok=True)
    return stopped


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def reread(plan: Path, jobs: list[PlanJob]) -> list[PlanJob]:
    """The plan as it is now (jobs added or reordered while the campaign runs take effect when
    a job ends), or ``jobs`` when it no longer reads (the error is printed, the campaign goes
    on with the plan it had)."""
    try:
        return read_plan(plan)
    except HarnessError as e:
        print(f"the plan no longer reads, going on with the one read before: {e}", flush=True)
        return jobs


def record_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).rglob("seed*.json"))


def drop_older(before: datetime, folders: list[Path]) -> tuple[list[Path], list[Path]]:
    """Delete the records under ``folders`` created before ``before`` that git holds as
    committed (each file as at HEAD), so that none is lost; returns (deleted, kept because
    not committed)."""
    dropped, kept = [], []
    for folder in folders:
        for path in record_files(folder):
            rec = store.read_record(path)
            if rec is None or not rec.get("created"):
                continue
            if datetime.fromisoformat(rec["created"]) < before:
                files = [path] + [p for p in [path.with_suffix(".npz")] if p.exists()]
                if any(_committed(f.parent, f.name) != f.read_bytes() for f in files):
                    kept.append(path)
                    continue
                for f in files:
                    f.unlink()
                dropped.append(path)
    return dropped, kept


def _dropped_text(dropped: list[Path], kept: list[Path], before: str) -> str:
    return (f"dropped {len(dropped)} records created before {before}"
            + (f"; kept {len(kept)} that git does not hold as committed (deleting them would "
               f"lose them: commit them first):" + "".join(f"\n  {p}" for p in kept)
               if kept else ""))


def _copy(src: Path, dest: Path) -> bool:
    """Copy ``src`` over ``dest`` atomically unless they are equal; True when copied."""
    if dest.exists() and filecmp.cmp(src, dest, shallow=False):
        return False
    store.atomic_write(dest, lambda fh: fh.write(src.read_bytes()))
    return True


def collect(src: Path, dest: Path) -> list[Path]:
    """Bring ``src``'s finished records, tuning results and rewritten config files into the
    checkout ``dest``; returns the files written there."""
    src, dest = Path(src), Path(dest)
    if not (src / "results").is_dir() or not (src / "harness" / "configs").is_dir():
        raise HarnessError(f"{src} is not a checkout with results/ and harness/configs/; pass "
                           f"the campaign's clone")
    if src.resolve() == dest.resolve():
        raise HarnessError("collect copies from a campaign clone into this checkout; the two "
                           "are the same folder")
    configs = _rewritten_configs(src, dest)  # checked before anything is written
    written: list[Path] = []
    rsrc, rdest = src / "results", dest / "results"
    finished = []  # (source json, its path relative to results/, the record), each complete
    for path in record_files(rsrc):
        rel = path.relative_to(rsrc)
        if rel.parts[0] not in ("records", "variants", "tuning", "checks"):
            continue
        rec = store.read_record(path)
        if rec is None:
            continue
        ok = rec.get("status") == "ok" and path.with_suffix(".npz").exists()
        # a tuning trial that failed (a loss that became nan) ran to its end: the search counts
        # it and its report gives the reason, so it comes too (a record and no ranks)
        failed_trial = rel.parts[0] == "tuning" and rec.get("status") == "failed"
        if not (ok or failed_trial):
            continue
        finished.append((path, rel, rec))
    # a config's records in a results folder's own records/ (the main one, a tuning trial's, a
    # check's; not a variants/<hash>/ one, which holds its hash only): that folder is set aside
    # for it first, as a configured run does
    homes = set()
    for _, rel, rec in finished:
        root = rel.parts[:rel.parts.index("records")]
        if not (len(root) >= 2 and root[-2] == store.VARIANTS):
            homes.add((root, rec["dataset"], rec["model"], rec["config_hash"]))
    for root, dataset, model, chash in sorted(homes):
        store.set_aside(rdest.joinpath(*root), dataset, model, keep=chash)
    for path, rel, new in finished:
        target = rdest / rel
        if target.exists():
            old = store.read_record(target)
            if old and old.get("config_hash") != new.get("config_hash"):
                raise HarnessError(f"{target} holds another config's record; move it out of "
                                   f"{rdest} by hand before collecting")
        if path.with_suffix(".npz").exists() and _copy(path.with_suffix(".npz"),
                                                       target.with_suffix(".npz")):
            written.append(target.with_suffix(".npz"))
        if _copy(path, target):
            written.append(target)
    from harness import guidance  # torch: not for the queue's own process

    # guidance sweeps: the checkout's sweep of another config is set aside first, as above
    for folder in sorted((rsrc / "guidance").glob("*")):
        seeds = sorted(folder.glob("seed*.json"))
        hashes = {(store.read_json(p) or {}).get("config_hash") for p in seeds} - {None}
        if len(hashes) == 1:
            guidance.set_aside(rdest, folder.name, hashes.pop())
        for path in seeds:
            if _copy(path, rdest / path.relative_to(rsrc)):
                written.append(rdest / path.relative_to(rsrc))
    # the reports (each is rewritten whole by its command)
    for pattern in REPORTS:
        for path in sorted(rsrc.glob(pattern)):
            if path.is_file() and _copy(path, rdest / path.relative_to(rsrc)):
                written.append(rdest / path.relative_to(rsrc))
    for path, target in configs:
        if _copy(path, target):
            written.append(target)
    return written


def _rewritten_configs(src: Path, dest: Path) -> list[tuple[Path, Path]]:
    """The clone's config files that collect brings: those the clone rewrote (``harness.tune``
    writes the chosen settings), paired with the checkout's file. A config the clone holds as
    its own HEAD has it is older than or the same as the checkout's, which is kept: an edit made
    here, committed or not, before the clone was updated. A clone's rewrite over a checkout file
    with changes not committed is an error, raised before anything is written. (A ``src`` that
    is not a git clone: every config that differs comes, as the clone has no history to tell.)"""
    pairs = []
    for path in sorted((src / "harness" / "configs").rglob("*.toml")):
        target = dest / path.relative_to(src)
        if not target.exists() or filecmp.cmp(path, target, shallow=False):
            continue
        rel = path.relative_to(src).as_posix()
        if _committed(src, rel) == path.read_bytes():
            continue  # the clone did not touch it: the checkout's copy is the newer one
        here = _committed(dest, rel)
        if here is not None and here != target.read_bytes():
            raise HarnessError(f"{target} has changes not committed here, and the clone rewrote "
                               f"it too; commit or set aside the edit here, then collect again")
        pairs.append((path, target))
    return pairs


def _git(clone: Path, *args: str, binary: bool = False):
    out = subprocess.run(["git", "-C", str(clone), *args], capture_output=True)
    if out.returncode:
        raise HarnessError(f"git {' '.join(args)} failed in {clone}: "
                           f"{out.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return out.stdout if binary else out.stdout.decode()


def _committed(folder: Path, rel: str, rev: str = "HEAD") -> bytes | None:
    """The bytes of ``rel`` (relative to ``folder``) at git revision ``rev``; None when
    ``folder`` is not in a git work tree or ``rev`` does not hold the file."""
    try:
        return _git(folder, "show", f"{rev}:./{rel}", binary=True)
    except HarnessError:
        return None


def update(clone: Path) -> str:
    """Fast-forward ``clone`` to its upstream (see the module's ``update``); returns the new
    commit."""
    clone = Path(clone)
    if not (clone / ".git").exists():
        raise HarnessError(f"{clone} is not a git clone; pass the campaign's clone")
    _git(clone, "fetch", "-q")
    upstream = _git(clone, "rev-parse", "@{upstream}").strip()
    incoming = [p for p in _git(clone, "diff", "--name-only", "-z", "HEAD", upstream).split("\0") if p]
    out_of_the_way = []
    for rel in incoming:
        local = clone / rel
        if not local.exists():
            continue
        head = _committed(clone, rel)  # None: not in HEAD, the clone made it
        theirs = _committed(clone, rel, upstream)
        mine = local.read_bytes()
        if mine == head:
            continue  # unchanged here: the merge updates it
        if mine != theirs:
            raise HarnessError(f"{local} was changed in the clone and differs from what the "
                               f"update brings; collect it or move it away, then update again")
        out_of_the_way.append((rel, head is not None))
    # a file the clone made that the checkout committed (collect) and then moved or removed
    # (a config's records set aside, a swapped config's moved back): the range adds and drops
    # it, so the diff above does not name it; the clone's copy is what was collected, and left
    # there it would come back with the next collect
    added = {p.strip() for p in _git(clone, "log", "--format=", "--name-only", "--diff-filter=A",
                                     "-z", f"HEAD..{upstream}").split("\0") if p.strip()}
    tracked_or_coming = set(_git(clone, "ls-tree", "-r", "--name-only", "-z", "HEAD")
                            .split("\0")) | set(_git(clone, "ls-tree", "-r", "--name-only",
                                                      "-z", upstream).split("\0"))
    for rel in sorted(added - set(incoming) - tracked_or_coming):
        local = clone / rel
        if not local.is_file():
            continue
        first = _git(clone, "log", "-1", "--format=%H", "--diff-filter=A", upstream, "--",
                     rel).strip()
        if local.read_bytes() != _git(clone, "show", f"{first}:{rel}", binary=True):
            raise HarnessError(f"{local} was changed in the clone after it was collected, and "
                               f"the checkout has since moved or removed it; collect it or move "
                               f"it away, then update again")
        out_of_the_way.append((rel, False))
    kept = {rel: (clone / rel).read_bytes() for rel, _ in out_of_the_way}
    for rel, tracked in out_of_the_way:
        if tracked:
            _git(clone, "checkout", "-q", "HEAD", "--", rel)
        else:
            (clone / rel).unlink()
    try:
        _git(clone, "merge", "-q", "--ff-only", upstream)
    except HarnessError:
        # a file the campaign wrote meanwhile stands in the way: put back what was moved, as
        # it was (the old version must not stay: a run would take it for another config's)
        for rel, data in kept.items():
            store.atomic_write(clone / rel, lambda fh, data=data: fh.write(data))
        raise HarnessError(f"the update of {clone} stopped: a file changed there while it "
                           f"ran (a run finished); collect it, commit, and update again") from None
    return upstream



#: what may differ between two runs of the same config on the same code: when, where, how long
CIRCUMSTANCES = ("created", "wall", "git", "device", "torch_threads")
#: what may differ between two runs that computed other roundings (other CPU kernels, another
#: device) and still give the same Table 1 cell: the per-epoch curve and the per-row test ranks
#: (near-equal scores swap); the selected epoch and its validation and test metrics are the rest
ROUNDINGS = ("history", "test ranks (.npz)")


def cpu_kernels(rec: dict[str, Any]) -> str:
    """The CPU kernels (torch's instruction set, e.g. AVX512 or AVX2) that trained a record,
    from its segments in order ("not recorded+AVX2": a run resumed on AVX2 from a stretch made
    before segments kept them)."""
    segments = (rec.get("wall") or {}).get("segments") or [{}]
    return "+".join(dict.fromkeys(s.get("cpu") or "not recorded" for s in segments))


def compare_paths(b: Path, datasets: list[str] | None) -> list[Path]:
    paths = sorted((Path(b) / "records").glob("*/*/*/seed*.json"))
    return [p for p in paths if not datasets or p.relative_to(Path(b) / "records").parts[0]
            in datasets]


def compare(a: Path, b: Path, datasets: list[str] | None = None) -> list[str]:
    """One line per record of ``b`` that differs from (or is missing in) ``a``; [] when equal.

    A record whose only differences are roundings (:data:`ROUNDINGS`: its curve and its test
    ranks, while its selected epoch and that epoch's metrics are equal) says so, with the CPU
    kernels that trained each side: torch's AVX2 and AVX512 kernels (and a GPU's) sum in other
    orders, so a reproduction on another instruction set gives the same cell, not the same bits.
    """
    a, b = Path(a), Path(b)
    paths = compare_paths(b, datasets)
    if not paths:
        raise HarnessError(f"no records under {b / 'records'}" + (
            f" for {', '.join(datasets)}" if datasets else "") + "; pass the reproduction's "
            "results folder")
    lines = []
    for path in paths:
        rel = path.relative_to(b)
        theirs, ours = store.read_record(path), store.read_record(a / rel)
        if ours is None:
            lines.append(f"{rel}: missing in {a}")
            continue
        keys = sorted((set(theirs) | set(ours)) - set(CIRCUMSTANCES))
        differ = [k for k in keys if theirs.get(k) != ours.get(k)]
        if not np.array_equal(store.read_ranks(path), store.read_ranks(a / rel)):
            differ.append("test ranks (.npz)")
        if not differ:
            continue
        line = f"{rel}: {', '.join(differ)} differ"
        if set(differ) <= set(ROUNDINGS):
            line += (f" (roundings only: the selected epoch and its validation and test metrics "
                     f"are equal; CPU kernels {cpu_kernels(theirs)} in {b}, {cpu_kernels(ours)} "
                     f"in {a})")
        lines.append(line)
    return lines


def _steps(command: str) -> list[tuple[str, argparse.Namespace]]:
    """The ``python -m harness.<module>`` steps of a job's command with the arguments that
    size them (the rest ignored)."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # diagnose's --seed is
    for opt in ("--model", "--dataset", "--config", "--models", "--datasets",  # not --seeds
                "--seed-stopping-first"):
        p.add_argument(opt)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--results-dir", default="results")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--grid", action="append", default=[])
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--save-model", action="store_true")
    p.add_argument("--rows")  # harness.embeddings: its rows, their seed, and --train
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", action="store_true")
    out = []
    for step in command.split("&&"):
        words = shlex.split(step)
        if "-m" in words[:-1] and words[words.index("-m") + 1].startswith("harness."):
            i = words.index("-m")
            out.append((words[i + 1][len("harness."):], p.parse_known_args(words[i + 2:])[0]))
    return out


def _seed_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("seed*.json")) if folder.is_dir() else []


def rule_trials(model: str) -> int:
    """The fewest trainings the tuning rule makes: its start learning rates, then the T values
    other than the lr stage's (DreamRec; an edge best adds one per outward step), or for a
    baseline the fewest over whichever lr and weight decay win: an edge lr adds the outward
    value (when the outward one loses), and the weight decays at the chosen lr add those
    other than the lr stage's and the one beyond the better, less the float32 no-ops the rule
    does not train (:func:`harness.tune.inert_decay`: every one at lr 1e-4)."""
    from harness import tune  # torch: not for the queue's own process

    lrs = len(tune.RULE_LR_START)
    if model == "dreamrec":
        return lrs + sum(t != tune.RULE_T_FIXED for t in tune.RULE_TIMESTEPS)
    if tune.is_guided(model):
        return lrs
    grid = tune.PAPER_GRID

    def decays(lr: str) -> int:
        live = tune.live_decays(lr)
        return len(live) - 1 + min(
            (nxt := tune.beyond(grid["weight_decay"], tune.RULE_WD_START, better)) is not None
            and not tune.inert_decay(lr, nxt) for better in live)

    return lrs + min((tune.beyond(grid["lr"], tune.RULE_LR_START, lr) is not None) + decays(lr)
                     for lr in tune.RULE_LR_START)


#: the settings that decide how long a seed trains: records made under others time it wrongly
STOPPING = ("max_epochs", "eval_every", "patience")


def _rescaled_minutes(rec: dict[str, Any], minutes: float,
                      config: dict[str, Any]) -> float | None:
    """The minutes ``rec`` (a run of ``minutes``) would take under ``config``, if ``config`` is
    its config but for its patience and number of epochs: its minutes per epoch times the epochs
    the run makes on the same validation curve, to its selected epoch and then ``patience``
    evaluations, at most ``max_epochs`` (a later best makes it longer: a lower bound when the
    patience is longer). None for another config, or a record without its epochs."""
    if not store.differs_only_in_stopping(rec.get("config") or {}, config):
        return None
    run, selected = rec.get("epochs_run"), rec.get("selected_epoch")
    if not run or selected is None:
        return None
    now = config["train"]
    epochs = min(now["max_epochs"], selected + 1 + now["patience"] * now["eval_every"])
    return minutes / run * epochs


def seed_minutes(results: Path, dataset: str, model: str,
                 stopping: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None,
                 model_part: dict[str, Any] | None = None) -> tuple[float, int] | None:
    """The median run time in minutes of one seed of ``model`` on ``dataset`` by its validation
    records anywhere under ``results`` (main records, variants, tuning trials, checks), and how
    many records that is; None when there are none. With ``config`` (the ``{"model": ...,
    "train": ...}`` settings to be run, as a record keeps them), only the records of those very
    settings count, when there are any (a learning rate tuned from 1e-3 to 1e-4 can make every
    seed run five times longer); else those of the same settings but a patience or a number of
    epochs, each rescaled to the run's (:func:`_rescaled_minutes`: a check that runs a seed
    again with patience 120 takes that seed's time and more, whatever the other configs'
    seeds take); else, with ``stopping`` (their :data:`STOPPING` settings), only the records
    trained under those, when there are any: a patience raised from 10 to 30 makes every seed
    run longer. Stopping settings that never stop early (a patience that outlasts
    ``max_epochs``) make every run ``max_epochs`` long: every record is then rescaled to that
    many epochs at its own minutes per epoch (the trials of a tuning step, whose learning rates
    no record shares), after those of the very settings or the same config; only the records
    with the model settings ``model_part`` when there are any (the memory slots of an earlier
    design made every epoch slower)."""
    mins, same, own, rescaled, full, full_own = [], [], [], [], [], []
    epochs = store.fixed_epochs(stopping) if stopping else None
    for path in Path(results).rglob(f"records/{dataset}/{model}/validation/seed*.json"):
        rec = store.read_record(path)
        if rec and rec.get("status") == "ok" and "total_s" in rec.get("wall", {}):
            mins.append(store.record_minutes(rec))
            train = (rec.get("config") or {}).get("train") or {}
            if stopping and all(train.get(k) == v for k, v in stopping.items()):
                same.append(mins[-1])
            if config and rec.get("config") == config:
                own.append(mins[-1])
            elif config and (m := _rescaled_minutes(rec, mins[-1], config)) is not None:
                rescaled.append(m)
            if epochs and rec.get("epochs_run"):
                full.append(mins[-1] / rec["epochs_run"] * epochs)
                if model_part and (rec.get("config") or {}).get("model") == model_part:
                    full_own.append(full[-1])
    mins = own or rescaled or same or full_own or full or mins
    return (float(np.median(mins)), len(mins)) if mins else None


def step_config(a: argparse.Namespace, root: Path) -> dict[str, Any] | None:
    """The settings a ``run`` or ``tune`` step trains (the clone's config file, then its
    ``--set``), ``{"model": ..., "train": ...}`` as a record keeps them; None when they cannot
    be read."""
    from harness import models, run

    try:
        spec = models.get_model(a.model)
        config = root / (a.config or Path("harness") / "configs" / a.dataset
                         / f"{spec.name}.toml")
        model, train = spec.configs(a.dataset, run.parse_overrides(a.set), config_file=config)
    except HarnessError:
        return None
    return {"model": dataclasses.asdict(model), "train": dataclasses.asdict(train)}


def model_dir(root: Path) -> Path:
    """Where the commands run in the checkout ``root`` keep their ``--save-model`` states (as
    :func:`harness.store.default_model_dir` says for that checkout)."""
    env = os.environ.get("HARNESS_MODEL_DIR")
    return Path(env) if env else Path(root) / ".cache" / "models"


def _prepare_run(a: argparse.Namespace, root: Path, results: Path, n: int):
    """What a ``harness.run`` step of the checkout ``root`` would run for ``n`` seeds into
    ``results`` (:func:`harness.run.prepare`: its config hash, home and seeds); raises as the
    run would when it cannot be prepared."""
    from harness import run

    argv = ["--model", a.model, "--dataset", a.dataset, "--seeds", str(n), "--results-dir",
            str(results), *(["--config", str(root / a.config)] if a.config else []),
            *(["--first-seed", str(a.first_seed)] if a.first_seed else []),
            *(["--seed-stopping-first", str(root / a.seed_stopping_first)]
              if a.seed_stopping_first else []),
            *[x for kv in a.set for x in ("--set", kv)]]
    return run.prepare(run.build_parser().parse_args(argv))


def _search(a: argparse.Namespace, root: Path, results: Path):
    """The search a ``harness.tune`` step of the checkout ``root`` makes into ``results``
    (:class:`harness.tune.Search`, its trials read from its folder); raises as the step would
    when it cannot be prepared."""
    from harness import tune

    argv = ["--model", a.model, "--dataset", a.dataset, "--results-dir", str(results),
            "--jobs", "1", "--threads", "1",
            *(["--config", str(root / a.config)] if a.config else []),
            *[x for kv in a.set for x in ("--set", kv)]]
    args, passthrough = tune.build_parser().parse_known_args(argv)
    search = tune.Search(args, passthrough, {})
    search.extra = tune.trial_extra(a.model, grid=bool(a.grid))
    return search


def _done_seeds(a: argparse.Namespace, root: Path, results: Path, n: int) -> int | None:
    """How many of the n seeds a ``harness.run`` step runs (from its ``--first-seed``, or the
    one its ``--seed-stopping-first`` picks) are recorded for the config it would run now (its
    hash, as the run computes it), with their kept state when the step has ``--save-model``
    (the run trains a recorded seed again whose state is not there), or None when it cannot be
    prepared here (a seed to pick among that is not recorded yet included)."""
    try:
        prep = _prepare_run(a, root, results, n)
    except (HarnessError, SystemExit):
        return None
    return sum(store.is_done(store.record_path(prep.home, a.dataset, a.model, "validation", s),
                             prep.chash)
               and (not a.save_model or store.state_path(model_dir(root), a.dataset, a.model,
                                                         prep.chash, s).exists())
               for s in prep.seeds)


def _trials_ran(a: argparse.Namespace, root: Path, results: Path) -> int | None:
    """How many trials in the folder of a ``tune`` step's search ran for the config each would
    run now (:meth:`harness.tune.Search.ran`: a trial of a config changed since counts as
    not run), or None when the search cannot be prepared here."""
    try:
        search = _search(a, root, results)
        return sum(search.ran(t) for t in search.folder_trials())
    except (HarnessError, SystemExit):
        return None


def _saved_share(checkpoint: Path, chash: str, epochs: int | None) -> float:
    """The share of its training a run in progress has made, by its checkpoint: the epochs it
    saved over the ``epochs`` every run of its settings makes (:func:`harness.store.fixed_epochs`);
    0 when there is no checkpoint of the config ``chash`` there, or when the run can stop early
    (how long it goes on is not known)."""
    if not epochs or not checkpoint.is_file():
        return 0.0
    import torch

    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        key, epoch = str(saved["key"]), int(saved["epoch"])
    except Exception:  # noqa: BLE001 -- half-written or of another layout: counts nothing
        return 0.0
    return min(1.0, (epoch + 1) / epochs) if key.split(":")[0] == chash else 0.0


def _trained_share(module: str, a: argparse.Namespace, root: Path, results: Path) -> float:
    """How much of what a ``run`` or ``tune`` step has left to train its runs in progress have
    made, in trainings: each seed not recorded yet, or trial not run yet, with a checkpoint of the
    config it runs now counts its saved share (:func:`_saved_share`); 0 when the step cannot be
    prepared here."""
    from harness import tune

    try:
        if module == "run":
            prep = _prepare_run(a, root, results, a.seeds or 1)
            runs = [(prep, s) for s in prep.seeds if not store.is_done(
                store.record_path(prep.home, a.dataset, a.model, "validation", s), prep.chash)]
        else:
            search = _search(a, root, results)
            runs = [(t.prep, tune.TUNING_SEED) for t in search.folder_trials()
                    if not search.ran(t)]
    except (HarnessError, SystemExit):
        return 0.0
    return sum(_saved_share(store.checkpoint_path(p.home, a.dataset, p.spec.name, s), p.chash,
                            store.fixed_epochs(dataclasses.asdict(p.train_cfg)))
               for p, s in runs)


def _seeds_key(results: Path, a: argparse.Namespace) -> tuple:
    """What a ``run`` step's seeds are made of, for the plan's earlier steps to count: its
    results folder, model, dataset, config and ``--set``, and where its seeds start (its
    ``--first-seed``, or the one its ``--seed-stopping-first`` picks), and whether it keeps their
    states (last: seeds kept count for a step that does not keep them, not the other way)."""
    return ("seeds", str(results), a.dataset, a.model, a.config, tuple(a.set), a.first_seed,
            a.seed_stopping_first, a.save_model)


def runs_left(module: str, a: argparse.Namespace, root: Path,
              planned: dict[tuple, int]) -> list[tuple[str, str, float]]:
    """(dataset, model, trainings still to make) of one step run in the checkout ``root``, by
    the files it would find there and what the plan's earlier steps make (``planned``, updated:
    trials and seeds per results folder, dataset, model and config), less what its runs in
    progress have made (:func:`_trained_share`: a share of a training); lower bounds for the
    tuning rule, whose finished search leaves its report."""
    from harness import tune  # torch: not for the queue's own process

    results = root / a.results_dir
    if module == "run" and a.model and a.dataset:
        key = _seeds_key(results, a)
        n = a.seeds or 1
        done = _done_seeds(a, root, results, n)
        if done is None:  # not preparable here (its data missing): the seed files there are
            done = len(_seed_files(store.records_dir(results, a.dataset, a.model) / "validation"))
        done = max(done, planned.get(key, 0), planned.get((*key[:-1], True), 0))
        planned[key] = max(done, n)
        todo = max(0, n - done)
        return [(a.dataset, a.model,
                 todo - min(todo, _trained_share(module, a, root, results)) if todo else 0)]
    if module == "tune" and a.model and a.dataset:
        label = Path(a.config).stem if a.config else a.model
        key = ("trials", str(results), a.dataset, label, bool(a.grid))
        done = known = _trials_ran(a, root, results)
        if done is None:  # not preparable here (its data missing): the trials with records
            trials = results / "tuning" / a.dataset / label
            done = sum(1 for t in (trials.glob("*") if trials.is_dir() else [])
                       if _seed_files(store.records_dir(t, a.dataset, a.model) / "validation"))
        grid_done = planned.get(("trials", str(results), a.dataset, label, True), 0)
        report = results / "tuning" / f"{a.dataset}-{label}{'-grid' if a.grid else ''}.md"
        if a.grid:
            wanted = 1
            for values in tune.parse_grid(a.grid, a.model).values():
                wanted *= len(values)
        else:
            wanted = rule_trials(a.model)
        adopts = not a.config and not a.set and not tune.is_guided(a.model)
        seed0 = argparse.Namespace(model=a.model, dataset=a.dataset, config=None, set=[],
                                   first_seed=0, seed_stopping_first=None, save_model=False)
        # a report means the search ran to its end, unless the config changed since: then
        # fewer of its trials ran for the config now than the search makes at the fewest (a
        # guided model's too: its seed 0 is not the winning trial's; a baseline's rule skips
        # weight decays that are no-ops at its lr, so its learning-rate stage is all it is
        # sure to make), or the config's seed 0 (the winning trial's records) is not recorded
        least = (wanted if a.grid or tune.is_guided(a.model) else len(tune.RULE_LR_START))
        stale = report.is_file() and (
            (known is not None and known < least)
            or (not a.grid and adopts and _done_seeds(seed0, root, results, 1) == 0))
        if (report.is_file() and not stale) or key in planned:
            return []  # (a rerun only rewrites its report)
        planned[key] = wanted
        n = max(0, wanted - max(done, grid_done))  # a trial of the config before counts 0
        n = n - min(n, _trained_share(module, a, root, results)) if n else 0
        if adopts:  # the winning trial is seed 0 (its state kept when the trials keep theirs)
            seeds = _seeds_key(results, argparse.Namespace(**{**vars(seed0),
                                                              "save_model": a.save_model}))
            planned[seeds] = max(planned.get(seeds, 0), 1)
        return [(a.dataset, a.model, n)]
    if module == "embeddings" and a.rows and a.train:  # a row's missing state is trained, as
        d = a.dataset or "zhihu"  # its own seed with --save-model
        out = []
        for row in a.rows.split(","):
            config = (str(Path("harness") / "configs" / d / f"{row}.toml") if "." in row
                      else None)
            step = argparse.Namespace(model=row.partition(".")[0], dataset=d, config=config,
                                      set=[], first_seed=a.seed, seeds=1,
                                      seed_stopping_first=None, save_model=True,
                                      results_dir=a.results_dir)
            out += runs_left("run", step, root, planned)
        return out
    if module == "guidance":
        d = a.dataset or "zhihu"
        done = len(_seed_files(results / "guidance" / d))
        return [(d, "dreamrec", max(0, (a.seeds or 5) - done))]
    if module == "reproduce_table1" and a.models:
        out = []
        for d in (a.datasets or "").split(","):
            for m in a.models.split(","):
                model = m.partition(".")[0]
                folder = store.records_dir(results, d, model) / "validation"
                out.append((d, model, max(0, 5 - len(_seed_files(folder)))))
        return out
    return []


def _count(n: float) -> str:
    """A number of trainings, whole or to two decimals ("2", "0.13")."""
    return f"{n:.2f}".rstrip("0").rstrip(".")


def left(plan: Path, state: Path, root: Path, slots: int) -> list[str]:
    """What is left of a plan run in the checkout ``root``, in CPU-hours by the records' own
    run times (the lines printed)."""
    rows, total, untimed = [], 0.0, []
    planned: dict[tuple, int] = {}
    minutes_of: dict[tuple, tuple[float, int] | None] = {}  # one scan a model and settings
    for job in read_plan(plan):
        if (state / f"{job.name}.done").exists():
            continue
        what = "running" if (state / f"{job.name}.pgid").exists() else (
            "failed" if (state / f"{job.name}.failed").exists() else "left")
        minutes, basis, unknown = 0.0, [], False
        for module, a in _steps(job.command):
            config = (step_config(a, root) if module in ("run", "tune") and a.model
                      and a.dataset else None)
            stopping = config and {k: config["train"][k] for k in STOPPING}
            # a tuning step's trials vary lr and weight decay: its config times only its seed 0
            own = config if module == "run" else None
            for dataset, model, n in runs_left(module, a, root, planned):
                if n <= 0:
                    continue
                key = (dataset, model, json.dumps(own, sort_keys=True) if own else None,
                       json.dumps(config and config["model"], sort_keys=True),
                       tuple(sorted((stopping or {}).items())))
                if key not in minutes_of:
                    minutes_of[key] = seed_minutes(root / "results", dataset, model, stopping,
                                                   own, config and config["model"])
                per = minutes_of[key]
                if per is None:
                    unknown = True
                    basis.append(f"{_count(n)} x {model}/{dataset} (never timed)")
                    continue
                minutes += n * per[0]
                basis.append(f"{_count(n)} x {model}/{dataset} at {per[0]:.1f} min")
        total += minutes
        if unknown:
            untimed.append(job.name)
        rows.append([job.name, what, ("≥" if unknown else "") + f"{minutes / 60:.1f}",
                     "; ".join(basis) or "no training (reports)"])
    import torch
    from tabulate import tabulate

    return [tabulate(rows, headers=["job", "state", "CPU-hours left", "trainings left (minutes "
                                    "a seed: median of the records)"], tablefmt="github"), "",
            f"{total / 60:.1f} CPU-hours left by the records' own run times (tuning counted at "
            f"the rule's fewest trials; the epochs a run in progress has saved are taken off where "
            f"its length is fixed), about {total / 60 / max(1, slots):.1f} hours at "
            f"{slots} jobs at a time" + (f"; never timed: {', '.join(untimed)}" if untimed
                                         else "") + ".",
            "", f"This host's CPU kernels: {torch.backends.cpu.get_cpu_capability()} (each "
            f"record's wall.segments name those it trained on; other kernels run at other "
            f"speeds)."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.campaign",
                                 description=cli.description(__doc__))
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a plan's jobs not done yet, a few at a time")
    r.add_argument("plan", type=Path, help="the plan file: one 'name: command' per line")
    r.add_argument("--state", type=Path, required=True,
                   help="folder for the jobs' logs and done/failed marks (outside the checkout)")
    r.add_argument("--jobs", type=int, default=2, help="jobs at a time (default: 2)")
    r.add_argument("--retry-failed", action="store_true",
                   help="run the jobs marked failed again (default: skip them)")
    m = sub.add_parser("marks", help="keep a state folder's done marks in a committed file, "
                       "or put them back")
    m.add_argument("file", type=Path, help="the marks file (e.g. campaigns/rerun.done)")
    m.add_argument("--state", type=Path, required=True, help="the campaign's state folder")
    m.add_argument("--restore", action="store_true",
                   help="mark done in the state folder every job the file lists")
    pk = sub.add_parser("park", help="keep the checkpoints of the runs in progress in a "
                        "committed folder")
    pk.add_argument("clone", type=Path, help="the campaign's clone")
    pk.add_argument("folder", type=Path, help="the folder (e.g. campaigns/parked); replaced")
    up = sub.add_parser("unpark", help="put parked checkpoints into a new campaign clone")
    up.add_argument("folder", type=Path, help="the parked folder (e.g. campaigns/parked)")
    up.add_argument("clone", type=Path, help="the campaign's new clone")
    d = sub.add_parser("drop-older", help="delete records created before a time")
    d.add_argument("--before", required=True,
                   help="ISO time with zone, e.g. 2026-12-03T00:00:00+00:00")
    d.add_argument("folders", type=Path, nargs="+", help="folders searched for seed*.json")
    c = sub.add_parser("collect", help="bring a campaign clone's finished work into this checkout")
    c.add_argument("src", type=Path, help="the campaign's clone (a checkout)")
    c.add_argument("--into", type=Path, default=Path("."),
                   help="the checkout to bring it into (default: the current folder)")
    u = sub.add_parser("update", help="move a campaign's clone up to its upstream's commits")
    u.add_argument("clone", type=Path, help="the campaign's clone")
    u.add_argument("--drop-older", default=None, metavar="TIME",
                   help="then drop-older TIME in the clone's results/records, variants and guidance "
                   "(records the update brought that the campaign reruns, e.g. a config set aside "
                   "in the checkout)")
    lf = sub.add_parser("left", help="what is left of a plan, in CPU-hours by the records' "
                        "own run times")
    lf.add_argument("plan", type=Path, help="the plan file")
    lf.add_argument("--state", type=Path, required=True, help="the campaign's state folder")
    lf.add_argument("--clone", type=Path, default=Path("."),
                    help="the checkout the campaign runs in (default: the current folder)")
    lf.add_argument("--jobs", type=int, default=2, help="jobs at a time (default: 2)")
    k = sub.add_parser("compare", help="compare two results folders' records field by field")
    k.add_argument("a", type=Path, help="the results folder compared against (e.g. results)")
    k.add_argument("b", type=Path, help="the results folder whose records are compared")
    k.add_argument("--datasets", default=None, help="comma-separated (default: every one in B)")
    args = ap.parse_args(argv)
    try:
        if args.command == "run":
            return run_plan(args.plan, args.state, args.jobs, args.retry_failed)
        if args.command == "marks":
            if args.restore:
                names = restore_marks(args.file, args.state)
                print(f"marked {len(names)} jobs done in {args.state}" +
                      (f": {', '.join(names)}" if names else ""))
            else:
                names = save_marks(args.state, args.file)
                print(f"{args.file}: {len(read_marks(args.file))} jobs done ({len(names)} new)")
            return 0
        if args.command == "park":
            files = park(args.clone, args.folder)
            print(f"parked {len(files)} checkpoints in {args.folder}" +
                  "".join(f"\n  {f}" for f in files))
            return 0
        if args.command == "unpark":
            files = unpark(args.folder, args.clone)
            print(f"unparked {len(files)} checkpoints into {args.clone}" +
                  "".join(f"\n  {f}" for f in files))
            return 0
        if args.command == "drop-older":
            before = cli.iso_time(args.before, "--before")
            missing = [str(f) for f in args.folders if not f.is_dir()]
            if missing:
                raise HarnessError(f"no such folder: {', '.join(missing)}")
            print(_dropped_text(*drop_older(before, args.folders), args.before))
            return 0
        if args.command == "left":
            for line in left(args.plan, args.state, args.clone, args.jobs):
                print(line)
            return 0
        if args.command == "compare":
            datasets = args.datasets.split(",") if args.datasets else None
            lines = compare(args.a, args.b, datasets)
            for line in lines:
                print(line)
            n = len(compare_paths(args.b, datasets))
            rounded = sum("(roundings only" in line for line in lines)
            print(f"{n - len(lines)} of {n} records of {args.b} equal those of {args.a} "
                  f"(but for {', '.join(CIRCUMSTANCES)})"
                  + (f"; {rounded} more differ only in roundings" if rounded else ""),
                  file=sys.stderr)
            return 1 if lines else 0
        if args.command == "update":
            before = cli.iso_time(args.drop_older, "--drop-older") if args.drop_older else None
            print(f"{args.clone} at {update(args.clone)[:12]}")
            if before is not None:
                print(_dropped_text(*drop_older(before, [args.clone / "results" / sub for sub
                                                          in ("records", "variants", "guidance")]),
                                    args.drop_older))
            return 0
        written = collect(args.src, args.into)
        for path in written:
            print(path)
        print(f"collected {len(written)} files", file=sys.stderr)
        return 0
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
