"""Running trainings: one scheduler, on Ray, and stopping when asked.

Every training an invocation starts (a seed of ``harness.reproduce_table1``, a trial of
``harness.tune``) is one ``python -m harness.run`` child process, started by a Ray task that
declares its resources (CPUs per run, a fraction of a GPU per run). By default the invocation
starts a local Ray sized for ``--jobs`` runs and stops it at the end; ``--address`` sends the runs
to a running Ray cluster instead (``ray start --head`` on one machine, ``ray start --address``
on the others). With one run at a time and no cluster, the runs train in this process instead,
one after another: a local Ray costs about 20 s until its workers answer and 0.9 GB of memory
(``python -m harness.bench_ray``, on 2 busy cores), nothing beside a training but most of a
small test.

The runs write their own records, checkpoints and logs under ``--results-dir``, exactly as a
``harness.run`` of their own would (atomically, when a seed ends), so the records do not depend
on where a run trained; on a cluster that folder (and the data folder) must be one every node
sees, given as an absolute path. The driver only reads the logs (progress) and the records.

One SIGINT (Ctrl-C) or SIGTERM stops a whole invocation: the runs in progress get SIGTERM and
end within seconds, each keeping its last evaluation's checkpoint; runs not started yet are not
started; the command prints one line (``interrupted: N runs finished, M resumable; rerun the same
command to continue``) and exits 130 (SIGINT) or 143 (SIGTERM). The same command resumes. A
driver that is killed outright takes its local Ray with it, and each run dies with the Ray
worker that started it (the last evaluation's checkpoint stays). A run whose Ray worker dies is
reported failed with one line; the others go on.

- :func:`stop_on_signals` turns SIGINT/SIGTERM into :class:`Interrupted` in a process that
  trains in-process (``harness.run``); :func:`deferred` holds the signal back while a seed's
  records are written, so they become visible together.
- :func:`run_jobs` runs the jobs with a progress bar that shows the runs in progress (with
  their last evaluated epoch) and an estimate of the time left from earlier records.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

#: how long the runs in progress get to stop after SIGTERM before they are killed
GRACE_S = 30.0


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def interrupted_line(finished: int, resumable: int) -> str:
    return (f"interrupted: {finished} runs finished, {resumable} resumable; rerun the same "
            f"command to continue")


def stoppable(command: Callable[[dict[str, int]], int]) -> int:
    """A command line's exit status: ``command(progress)`` under :func:`stop_on_signals`; when a
    signal stops it, the one interrupted line (from ``progress``: ``finished`` and ``left``,
    which the command keeps up to date) and 128 + the signal."""
    progress = {"finished": 0, "left": 0}
    with stop_on_signals():
        try:
            return command(progress)
        except Interrupted as e:
            print(interrupted_line(progress["finished"], progress["left"]), file=sys.stderr)
            return e.exit_code


_state = {"depth": 0, "held": None, "fired": False}


def _raise(signum: int, frame: object) -> None:
    if _state["fired"]:  # a second signal (Ctrl-C and its parent's SIGTERM) changes nothing
        return
    if _state["depth"]:
        _state["held"] = _state["held"] or signum
        return
    _state["fired"] = True
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` (once) in the main thread while inside;
    the previous handlers are restored after. Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    _state.update(depth=0, held=None, fired=False)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A signal arriving inside is held back and raised (as :class:`Interrupted`) on leaving,
    so what is written inside (a seed's records, both protocols) is written whole."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if not _state["depth"] and _state["held"]:
        signum, _state["held"] = _state["held"], None
        _state["fired"] = True
        raise Interrupted(signum)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGKILL when its parent dies, so a killed reproduction or tuning
    leaves no orphan run writing beside its rerun."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(argv: list[str], log: Path, cwd: str | None = None) -> subprocess.Popen:
    """``python -m harness.run ARGV`` in a child process (in ``cwd``) that dies with this one,
    its output appended to ``log`` (the command line first)."""
    cmd = [sys.executable, "-m", "harness.run", *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def last_error(log: Path) -> str | None:
    """The last ``error: ...`` line a child wrote to ``log`` (without the prefix), or None."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [x for x in lines if x.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else None


_EPOCH = re.compile(r" epoch (\d+):|resumed after epoch (\d+)")


def last_epoch(log: Path) -> int | None:
    """The last epoch a child's log reports as evaluated (or resumed after), or None."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, os.path.getsize(log) - 8192))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return None
    found = None
    for m in _EPOCH.finditer(tail):
        found = int(m.group(1) or m.group(2))
    return found


@dataclass
class Job:
    """One ``harness.run`` invocation: its name, arguments, log file and (from earlier
    records) its expected length in seconds, None when never timed."""

    name: str
    argv: list[str]
    log: Path
    expected_s: float | None = None


@dataclass
class Outcome:
    job: Job
    exit: int  # the run's exit status; 128 + signal when it was stopped
    wall_s: float
    why: str | None = None  # what the scheduler saw go wrong (a Ray worker that died)
    pruned: dict | None = None  # stopped on validation by successive halving (run_trials)

    def reason(self) -> str | None:
        """Why the run failed: the scheduler's reason, else the run's last error line."""
        return self.why or last_error(self.job.log)


@dataclass
class Progress:
    """What :func:`run_jobs` did: the jobs that ran to an end, those never started, and the
    signal that stopped it (None when every job ran)."""

    done: list[Outcome] = field(default_factory=list)
    stopped: list[Outcome] = field(default_factory=list)  # in progress when the signal came
    not_started: list[Job] = field(default_factory=list)
    signum: int | None = None

    def interrupted_line(self) -> str:
        return interrupted_line(len(self.done), len(self.stopped) + len(self.not_started))


@dataclass
class Cluster:
    """Where the runs train: ``address`` None is a local Ray started for the invocation (or
    the Ray this process already joined), else a running cluster's address (``auto``,
    ``ray://host:10001``, ``host:6379``); each run reserves ``cpus`` CPUs and ``gpus`` GPUs
    (a fraction lets runs share a GPU)."""

    address: str | None = None
    cpus: int = 1
    gpus: float = 0.0


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eta_text(pending: list[Job], running: dict[str, tuple[Job, float]], slots: int,
             now: float, finished: list[Outcome] | None = None) -> str:
    """An estimate of the time left: the expected seconds of the jobs not started and what is
    left of those running, shared by ``slots``. A job never timed counts as the median wall
    time of the runs ``finished`` in this invocation (exit 0), when there are any; else it is
    left out and the text says "≥"."""
    walls = [o.wall_s for o in finished or [] if o.exit == 0]
    typical = statistics.median(walls) if walls else None

    def expected(j: Job) -> float | None:
        return j.expected_s if j.expected_s is not None else typical

    left = sum(expected(j) for j in pending if expected(j) is not None)
    left += sum(max(0.0, expected(j) - (now - t0)) for j, t0 in running.values()
                if expected(j) is not None)
    untimed = sum(1 for j in pending if j.expected_s is None) + sum(
        1 for j, _ in running.values() if j.expected_s is None)
    text = f"~{_hms(left / max(1, slots))} left"
    if not untimed:
        return text
    if typical is not None:
        return f"{text} ({untimed} never timed, counted at the median of {len(walls)} finished)"
    return f"≥{text[1:]} ({untimed} never timed)"


def _postfix(pending: list[Job], running: dict[str, tuple[Job, float]], slots: int,
             finished: list[Outcome] | None = None) -> str:
    parts = []
    for job, _ in running.values():
        epoch = last_epoch(job.log)
        parts.append(job.name + (f" epoch {epoch}" if epoch is not None else " starting"))
    return (eta_text(pending, running, slots, time.perf_counter(), finished)
            + (" | " + ", ".join(parts) if parts else ""))


def run_jobs(jobs: list[Job], slots: int, desc: str = "runs",
             cluster: Cluster | None = None) -> Progress:
    """Run ``jobs``, ``slots`` at a time, in the given order: on Ray (:class:`Cluster`), or in
    this process one after another when ``slots`` is 1 and no cluster address is given.

    SIGINT/SIGTERM (to this process) stops it: the runs in progress get SIGTERM (and SIGKILL
    after ``GRACE_S``), nothing more starts, and the result says which signal came.
    """
    cluster = cluster or Cluster()
    if slots == 1 and cluster.address is None:
        return _run_here(jobs, desc)
    return _run_on_ray(jobs, slots, desc, cluster)


def _run_here(jobs: list[Job], desc: str) -> Progress:
    """The jobs in this process, one after another, each one's output in its log."""
    from harness import run  # harness.run imports this module

    out = Progress()
    current: list[tuple[Job, float]] = []
    bar = tqdm(total=len(jobs), desc=desc, leave=True, mininterval=1.0)
    stop = threading.Event()

    def refresh() -> None:  # the epoch of the run in progress, every 2 s
        while not stop.wait(2.0):
            if current:
                bar.set_postfix_str(_postfix(jobs[len(out.done) + 1:], {current[0][0].name:
                                                                        current[0]}, 1,
                                             out.done), refresh=True)

    ticker = threading.Thread(target=refresh, daemon=True)
    ticker.start()
    handlers = (contextlib.nullcontext() if signal.getsignal(signal.SIGINT) is _raise
                else stop_on_signals())
    try:
        with handlers:
            for i, job in enumerate(jobs):
                t0 = time.perf_counter()
                current[:] = [(job, t0)]
                job.log.parent.mkdir(parents=True, exist_ok=True)
                with open(job.log, "a") as fh, contextlib.redirect_stdout(fh), \
                        contextlib.redirect_stderr(fh):
                    print(f"$ python -m harness.run {' '.join(job.argv)}", flush=True)
                    try:
                        rc = run.command(run.build_parser().parse_args(job.argv))
                    except Interrupted as e:
                        out.stopped.append(Outcome(job, e.exit_code, time.perf_counter() - t0))
                        out.not_started += jobs[i + 1:]
                        out.signum = e.signum
                        break
                    except SystemExit as e:  # argparse refused the arguments
                        rc = e.code if isinstance(e.code, int) else 2
                    except Exception as e:  # a defect in one run must not lose the others
                        traceback.print_exc(file=fh)
                        print(f"error: {type(e).__name__}: {e}", flush=True)
                        rc = 1
                out.done.append(Outcome(job, rc, time.perf_counter() - t0))
                bar.update(1)
    finally:
        stop.set()
        bar.close()
    return out


def _train(argv: list[str], log: str, cwd: str, stopper: Any) -> int:  # pragma: no cover
    """A Ray task (it runs in a Ray worker): ``python -m harness.run ARGV`` in a child process
    that dies with the worker, until it ends or ``stopper`` says stop (then SIGTERM, and
    SIGKILL after ``GRACE_S``). Returns the child's exit status as a shell reports it."""
    proc = start(argv, Path(log), cwd if os.path.isdir(cwd) else None)
    asked = 0.0
    while proc.poll() is None:
        time.sleep(0.5)
        asked = _stop_if_asked(proc, stopper, asked)
    return _shell_status(proc.returncode)


def _stop_if_asked(proc: subprocess.Popen, stopper: Any, asked: float) -> float:  # pragma: no cover
    """One poll of a Ray task's run: SIGTERM once ``stopper`` is set, SIGKILL ``GRACE_S``
    later; returns when the stop was asked (0.0 while it was not)."""
    import ray

    if not asked and ray.get(stopper.is_set.remote()):
        asked = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
    if asked and time.perf_counter() - asked > GRACE_S:
        proc.kill()
        proc.wait()
    return asked


def _shell_status(rc: int) -> int:
    """A child's exit status as a shell reports it: 128 + the signal that killed it."""
    return 128 - rc if rc < 0 else rc


class _Stopper:  # pragma: no cover - a Ray actor
    """A flag every run's task reads: set when the invocation is stopped."""

    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag


def ray_init(cluster: Cluster, slots: int) -> bool:
    """Join ``cluster``: its address, or a local Ray with ``slots`` runs' worth of CPUs (and
    GPUs); nothing when this process already joined one. True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a local Ray runs its workers at nice 15 (for the work beside them); a run is the work
    # here, as for Ray's own job submissions, whose drivers get niceness 0 the same way
    os.environ.setdefault("RAY_worker_niceness", "0")
    env = {k: v for k, v in os.environ.items() if k.startswith("HARNESS_")}
    if cluster.address is not None:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": env} if env else None)
    else:
        ray.init(num_cpus=slots * cluster.cpus,
                 num_gpus=math.ceil(slots * cluster.gpus) if cluster.gpus else None,
                 include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    return True


def _run_on_ray(jobs: list[Job], slots: int, desc: str, cluster: Cluster) -> Progress:
    import ray
    from ray.exceptions import RayError

    started = ray_init(cluster, slots)
    out = Progress()
    pending = list(jobs)
    running: dict[Any, tuple[Job, float]] = {}
    got: list[int] = []
    stopper = ray.remote(num_cpus=0)(_Stopper).remote()
    task = ray.remote(_train).options(num_cpus=cluster.cpus, num_gpus=cluster.gpus,
                                      max_retries=0)

    def on_signal(signum: int, frame: object) -> None:
        if not got:
            got.append(signum)

    main_thread = threading.current_thread() is threading.main_thread()
    old = ({s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
           if main_thread else {})
    bar = tqdm(total=len(jobs), desc=desc, leave=True, mininterval=1.0)
    shown, asked = 0.0, None
    try:
        while pending or running:
            if got and pending:
                out.not_started += pending
                pending.clear()
            if got and asked is None:
                stopper.set.remote()
                asked = time.perf_counter()
            while pending and len(running) < slots:
                job = pending.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                ref = task.remote(job.argv, str(job.log.resolve()), os.getcwd(), stopper)
                running[ref] = (job, time.perf_counter())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
            for ref in ready:
                job, t0 = running.pop(ref)
                why = None
                try:
                    rc = ray.get(ref)
                except RayError as e:
                    rc, why = 1, f"its Ray task ended with {type(e).__name__}: " + \
                        (str(e).strip().splitlines() or [""])[0][:200]
                outcome = Outcome(job, rc, time.perf_counter() - t0, why)
                (out.stopped if got and rc in (130, 143, 137) else out.done).append(outcome)
                bar.update(1)
            if asked is not None and time.perf_counter() - asked > GRACE_S + 30:
                for ref in running:  # the tasks did not end: stop them by force
                    ray.cancel(ref, force=True)
            now = time.perf_counter()
            if now - shown >= 2.0:
                shown = now
                bar.set_postfix_str(_postfix(pending, {j.name: (j, t) for j, t in
                                                       running.values()}, slots, out.done),
                                    refresh=True)
    finally:
        bar.close()
        for s, h in old.items():
            signal.signal(s, h)
        if started:
            ray.shutdown()
    out.signum = got[0] if got else None
    return out


#: successive halving of tuning trials (``harness.tune --prune``): Ray Tune's ASHA on validation
#: NDCG@20, rungs at 5, 15, 45, ... evaluations, a third of the trials kept at each
PRUNE_GRACE = 5
PRUNE_FACTOR = 3
METRIC = "val_ndcg@20"
_EVAL_LINE = re.compile(rb" epoch (\d+): loss \S+ val NDCG@20 ([0-9.eE+-]+)")


def _trial(config: dict, table: dict, stopper: Any) -> None:  # pragma: no cover - a Tune trial
    """A Ray Tune trial: ``python -m harness.run`` (its arguments in ``table``) in a child process
    that dies with the trial; each evaluation the run logs is reported (validation NDCG@20, the
    epoch, the evaluations so far), so that a scheduler can stop the trial on validation. The
    last report gives the run's exit status, with the best value reached (at the evaluation
    count already reported, so no rung of a scheduler is decided by it)."""
    import ray
    from ray import tune

    argv, log, cwd = table[config["trial"]]
    log = Path(log)
    if ray.get(stopper.is_set.remote()):
        tune.report({"exit": 143})
        return
    seen = ({int(m.group(1)): float(m.group(2)) for m in _EVAL_LINE.finditer(log.read_bytes())}
            if log.exists() else {})  # evaluations before a resume
    offset = log.stat().st_size if log.exists() else 0
    proc = start(argv, log, cwd if os.path.isdir(cwd) else None)
    asked = 0.0
    try:
        while True:
            rc = proc.poll()
            with open(log, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            chunk = chunk[:chunk.rfind(b"\n") + 1]  # whole lines only
            offset += len(chunk)
            for m in _EVAL_LINE.finditer(chunk):
                seen[int(m.group(1))] = float(m.group(2))
                tune.report({METRIC: float(m.group(2)), "epoch": int(m.group(1)),
                             "evaluation": len(seen)})
            if rc is not None:
                break
            time.sleep(0.5)
            asked = _stop_if_asked(proc, stopper, asked)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tune.report({"exit": _shell_status(proc.returncode), "evaluation": len(seen),
                 METRIC: max(seen.values(), default=float("nan"))})


def run_trials(jobs: list[Job], slots: int, desc: str = "trials", cluster: Cluster | None = None,
               prune: bool = False, storage: Path | None = None) -> Progress:
    """Run ``jobs`` as Ray Tune trials, ``slots`` at a time, in the given order; with ``prune``,
    ASHA stops the trials that fall behind on validation NDCG@20 (:data:`PRUNE_GRACE`,
    :data:`PRUNE_FACTOR`): such a trial's outcome has ``pruned`` (its best reported value, at
    which epoch, after how many evaluations), and its checkpoint stays. Ray Tune's own files go
    to ``storage``. Signals, errors and the progress bar are as in :func:`run_jobs`."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cluster = cluster or Cluster()
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # one Ctrl-C stops the search: ours
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = ray_init(cluster, slots)
    out = Progress()
    got: list[int] = []
    by_name = {j.name: j for j in jobs}
    for j in jobs:
        j.log.parent.mkdir(parents=True, exist_ok=True)
    stopper = ray.remote(num_cpus=0)(_Stopper).remote()
    table = {j.name: (j.argv, str(j.log.resolve()), os.getcwd()) for j in jobs}
    bar = tqdm(total=len(jobs), desc=desc, leave=True, mininterval=1.0)
    t0s: dict[str, float] = {}

    class Bar(tune.Callback):
        """The progress bar and the stop request, on the driver's loop. Ray Tune keeps a
        pickled copy of its callbacks with the experiment; the copy holds none of this."""

        def __init__(self, live: dict) -> None:
            self.live, self.shown, self.asked = live, 0.0, False

        def __getstate__(self) -> dict:
            return {}

        def __setstate__(self, state: dict) -> None:
            self.live, self.shown, self.asked = {}, 0.0, True

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            if not self.live:
                return
            if self.live["got"] and not self.asked:
                self.asked = True
                self.live["stopper"].set.remote()
            now = time.perf_counter()
            t0s = self.live["t0s"]
            for t in trials:
                if t.status == "RUNNING":
                    t0s.setdefault(t.config["trial"], now)
            if now - self.shown >= 2.0:
                self.shown = now
                by = self.live["by_name"]
                running = {t.config["trial"]: (by[t.config["trial"]], t0s[t.config["trial"]])
                           for t in trials if t.status == "RUNNING"}
                pending = [by[t.config["trial"]] for t in trials if t.status == "PENDING"]
                self.live["bar"].set_postfix_str(_postfix(pending, running, self.live["slots"]),
                                                 refresh=True)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.live:
                self.live["bar"].update(1)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.live:
                self.live["bar"].update(1)

    def on_signal(signum: int, frame: object) -> None:
        if not got:
            got.append(signum)

    scheduler = (ASHAScheduler(time_attr="evaluation", metric=METRIC, mode="max", max_t=10**6,
                               grace_period=PRUNE_GRACE, reduction_factor=PRUNE_FACTOR)
                 if prune else FIFOScheduler())
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, table=table, stopper=stopper),
                            {"cpu": cluster.cpus, "gpu": cluster.gpus}),
        param_space={"trial": tune.grid_search([j.name for j in jobs])},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=slots,
                                    reuse_actors=False),
        run_config=tune.RunConfig(
            name=f"{desc}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}", verbose=0,
            storage_path=str(Path(storage or "results/logs/ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[Bar({"got": got, "stopper": stopper, "t0s": t0s, "by_name": by_name,
                            "bar": bar, "slots": slots})]))
    main_thread = threading.current_thread() is threading.main_thread()
    old = ({s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
           if main_thread else {})
    t_start = time.perf_counter()
    try:
        grid = tuner.fit()
    finally:
        bar.close()
        for s, h in old.items():
            signal.signal(s, h)
    try:
        for r in grid:
            job = by_name[r.config["trial"]]
            wall = time.perf_counter() - t0s.get(job.name, t_start)
            if r.error is not None:
                text = (str(r.error).strip().splitlines() or [""])[-1][:200]
                out.done.append(Outcome(job, 1, wall, f"its Ray Tune trial ended with "
                                        f"{type(r.error).__name__}: {text}"))
                continue
            rc = (r.metrics or {}).get("exit")
            if rc is None:  # stopped by the scheduler before the run ended
                history = r.metrics_dataframe
                if history is None or METRIC not in history:
                    out.not_started.append(job)
                    continue
                evals = history.dropna(subset=[METRIC])
                best = evals.loc[evals[METRIC].idxmax()]
                out.done.append(Outcome(job, 0, wall, pruned={
                    METRIC: float(best[METRIC]), "epoch": int(best["epoch"]),
                    "evaluations": int(evals["evaluation"].max())}))
                continue
            rc = int(rc)
            (out.stopped if got and rc in (130, 143, 137) else out.done).append(
                Outcome(job, rc, wall))
    finally:
        if started:
            ray.shutdown()
    listed = {o.job.name for o in out.done + out.stopped} | {j.name for j in out.not_started}
    out.not_started += [j for j in jobs if j.name not in listed]
    out.signum = got[0] if got else None
    return out


def default_jobs() -> int:
    """Runs to start at once by default: one per usable core (each with one torch thread)."""
    return max(1, len(os.sched_getaffinity(0)))
