"""harness.campaign: a plan runs a few jobs at a time and resumes; records move between a
campaign's clone and the checkout without losing or mixing configs."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness import campaign, store
from harness.errors import HarnessError
from harness.models import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent


def write_plan(path: Path, lines: list[str]) -> Path:
    path.write_text("# a comment\n\n" + "\n".join(lines) + "\n")
    return path


def test_a_plan_runs_its_jobs_marks_them_and_a_rerun_skips_what_is_done(tmp_path):
    count = tmp_path / "count"
    plan = write_plan(tmp_path / "p.plan", [
        f"first: echo x >> {count}; echo threads=$OMP_NUM_THREADS",
        "broken: echo 'error: the data is missing; pass --data-dir'; exit 3",
        f"second: echo y >> {count}",
    ])
    state = tmp_path / "state"
    assert campaign.run_plan(plan, state, slots=2, poll_s=0.05) == 1
    assert (state / "first.done").exists() and (state / "second.done").exists()
    assert (state / "broken.failed").read_text().strip() == \
        "exit 3: the data is missing; pass --data-dir"
    assert "threads=1" in (state / "first.log").read_text()
    status = (state / "status.txt").read_text()
    assert "first: done" in status and "broken: failed exit 3" in status
    assert campaign.last_line(state / "first.log") == "threads=1"
    assert sorted(count.read_text().split()) == ["x", "y"]
    # a rerun runs nothing done, and the failed job only when asked
    assert campaign.run_plan(plan, state, slots=2, poll_s=0.05) == 1
    assert sorted(count.read_text().split()) == ["x", "y"]
    plan.write_text(plan.read_text().replace("exit 3", "exit 0"))
    assert campaign.run_plan(plan, state, slots=2, retry_failed=True, poll_s=0.05) == 0
    assert (state / "broken.done").exists() and not (state / "broken.failed").exists()
    assert sorted(count.read_text().split()) == ["x", "y"]


def test_a_job_runs_the_campaigns_own_python_even_when_its_venv_is_not_activated(
        tmp_path, monkeypatch):
    # a runner started as .venv/bin/python -m harness.campaign without `activate`: the jobs'
    # `python` must still be that venv's, not the first one on the caller's PATH
    other = tmp_path / "bin"
    other.mkdir()
    (other / "python").write_text("#!/bin/sh\necho system-python\n")
    (other / "python").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}/usr/bin{os.pathsep}/bin")
    plan = write_plan(tmp_path / "p.plan", [
        "which: python -c 'import sys; print(sys.prefix)'",
        "crash: python -c 'import not_a_module'",
    ])
    state = tmp_path / "state"
    assert campaign.run_plan(plan, state, slots=1, poll_s=0.05) == 1
    assert campaign.last_line(state / "which.log") == sys.prefix
    # a job that dies on a traceback says why in its mark, not only "exit 1"
    assert (state / "crash.failed").read_text().strip() == \
        "exit 1: ModuleNotFoundError: No module named 'not_a_module'"


def test_jobs_run_at_most_slots_at_a_time_in_plan_order(tmp_path):
    log = tmp_path / "order"
    plan = write_plan(tmp_path / "p.plan", [
        f"j{i}: echo start{i} >> {log}; sleep 0.3; echo end{i} >> {log}" for i in range(3)])
    assert campaign.run_plan(plan, tmp_path / "s", slots=2, poll_s=0.02) == 0
    events = log.read_text().split()
    assert events.index("start2") > min(events.index("end0"), events.index("end1"))
    assert events.index("start0") < events.index("start2")


@pytest.mark.parametrize("text, message", [
    ("no colon here", "expected 'name: command'"),
    ("a b: echo", "expected 'name: command'"),
    ("a: echo\na: echo", "named twice"),
    ("# only a comment", "has no jobs"),
])
def test_a_bad_plan_is_one_line_error_before_anything_runs(tmp_path, text, message):
    plan = tmp_path / "p.plan"
    plan.write_text(text + "\n")
    with pytest.raises(HarnessError, match=message):
        campaign.run_plan(plan, tmp_path / "state", slots=1)
    assert not (tmp_path / "state").exists()


def test_a_stopped_campaign_stops_its_jobs_and_the_same_command_resumes(tmp_path):
    marker = tmp_path / "started"
    plan = write_plan(tmp_path / "p.plan", [
        f"slow: echo go >> {marker}; sleep 60",
        "later: true",
    ])
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "harness.campaign", "run", str(plan), "--state", str(state),
           "--jobs", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1].startswith("interrupted: 1 jobs stopped")
    assert not (state / "slow.done").exists() and not (state / "slow.failed").exists()
    assert not (state / "later.done").exists()
    # the job's process group is gone with it: nothing is left sleeping
    assert subprocess.run(["pgrep", "-f", f"echo go >> {marker}"]).returncode == 1
    plan.write_text(plan.read_text().replace("sleep 60", "true"))
    assert campaign.run_plan(plan, state, slots=1, poll_s=0.05) == 0
    assert marker.read_text().split() == ["go", "go"]
    assert (state / "later.done").exists()


def fake_record(results: Path, dataset: str, model: str, chash: str, seed: int,
                created: str = "2026-12-04T00:00:00+00:00", protocol: str = "validation",
                npz: bool = True, status: str = "ok") -> Path:
    path = store.record_path(results, dataset, model, protocol, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if npz:
        np.savez(path.with_suffix(".npz"), test_ranks=np.arange(3))
    path.write_text(json.dumps({"schema": store.SCHEMA, "dataset": dataset, "model": model,
                                "config_hash": chash, "seed": seed, "status": status,
                                "created": created}))
    return path


def test_drop_older_deletes_only_committed_records_made_before_the_time(tmp_path):
    old = fake_record(tmp_path, "zhihu", "sasrec", "a" * 16, 0, created="2026-11-27T09:00:00+00:00")
    new = fake_record(tmp_path, "zhihu", "sasrec", "a" * 16, 1, created="2026-12-03T20:00:00+00:00")
    edited = fake_record(tmp_path, "zhihu", "sasrec", "a" * 16, 2,
                         created="2026-11-27T09:00:00+00:00")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "records")
    np.savez(edited.with_suffix(".npz"), test_ranks=np.arange(4))  # changed since its commit
    loose = fake_record(tmp_path, "zhihu", "gru4rec", "b" * 16, 0,  # never committed
                        created="2026-11-27T09:00:00+00:00")
    before = campaign.datetime.fromisoformat("2026-12-03T00:00:00+00:00")
    assert campaign.drop_older(before, [tmp_path / "records"]) == ([old], [loose, edited])
    assert not old.exists() and not old.with_suffix(".npz").exists()
    for kept in (new, edited, loose):
        assert kept.exists() and kept.with_suffix(".npz").exists()
    assert campaign.drop_older(before, [tmp_path / "records"]) == ([], [loose, edited])


def checkout(root: Path) -> Path:
    (root / "results").mkdir(parents=True)
    (root / "harness" / "configs" / "zhihu").mkdir(parents=True)
    return root


def test_collect_sets_the_old_config_aside_and_brings_finished_work_only(tmp_path):
    src, dest = checkout(tmp_path / "clone"), checkout(tmp_path / "main")
    old_hash, new_hash = "0" * 16, "1" * 16
    kept = fake_record(dest / "results", "zhihu", "sasrec", old_hash, 0)
    for seed in (0, 1):
        fake_record(src / "results", "zhihu", "sasrec", new_hash, seed)
    fake_record(src / "results", "zhihu", "sasrec", new_hash, 2, npz=False)  # half written
    trial = fake_record(src / "results" / "tuning" / "zhihu" / "sasrec" / "lr=1e-3", "zhihu",
                        "sasrec", "2" * 16, 0)
    (src / "results" / "tuning" / "zhihu-sasrec.md").write_text("# report\n")
    (src / "harness" / "configs" / "zhihu" / "sasrec.toml").write_text("lr = 1e-3\n")
    (dest / "harness" / "configs" / "zhihu" / "sasrec.toml").write_text("lr = 1e-2\n")
    (src / "harness" / "configs" / "zhihu" / "new.toml").write_text("x = 1\n")  # not in main
    reports = [src / "results" / r for r in ("diagnostics/zhihu-dreamrec-seed0.md",
                                             "checks/adaranker-state/ml-100k-adaranker-seed0.md",
                                             "embeddings/zhihu/dreamrec-seed0.json",
                                             "embeddings-zhihu.md", "figures/fig3_tsne-zhihu.png")]
    for r in reports:
        r.parent.mkdir(parents=True, exist_ok=True)
        r.write_text(r.name)
    (src / "results" / "figures" / "val-curves.png").write_text("rendered in the checkout")

    for root, chash in ((src, new_hash), (dest, old_hash)):  # a guidance sweep of each config
        sweep = root / "results" / "guidance" / "zhihu" / "seed0.json"
        sweep.parent.mkdir(parents=True)
        sweep.write_text(json.dumps({"schema": 1, "config_hash": chash, "w": {}}))

    written = campaign.collect(src, dest)

    sweeps = dest / "results" / "guidance" / "zhihu" / "seed0.json"
    assert json.loads(sweeps.read_text())["config_hash"] == new_hash
    old_sweep = store.variant_dir(dest / "results", old_hash) / "guidance" / "zhihu" / "seed0.json"
    assert json.loads(old_sweep.read_text())["config_hash"] == old_hash

    moved = store.variant_dir(dest / "results", old_hash) / kept.relative_to(dest / "results")
    assert store.read_record(moved)["config_hash"] == old_hash and moved.with_suffix(".npz").exists()
    main = store.records_dir(dest / "results", "zhihu", "sasrec")
    assert sorted(p.name for p in main.glob("*/*.json")) == ["seed0.json", "seed1.json"]
    assert set(store.record_hashes(dest / "results", "zhihu", "sasrec").values()) == {new_hash}
    assert (dest / "results" / trial.relative_to(src / "results")).exists()
    assert (dest / "results" / "tuning" / "zhihu-sasrec.md").read_text() == "# report\n"
    assert (dest / "harness" / "configs" / "zhihu" / "sasrec.toml").read_text() == "lr = 1e-3\n"
    assert not (dest / "harness" / "configs" / "zhihu" / "new.toml").exists()
    assert dest / "harness" / "configs" / "zhihu" / "sasrec.toml" in written
    for r in reports:
        assert (dest / r.relative_to(src)).read_text() == r.name
    assert not (dest / "results" / "figures" / "val-curves.png").exists()
    # a second collect has nothing new to write
    assert campaign.collect(src, dest) == []


def test_collect_sets_a_trials_old_config_aside_when_the_clone_did(tmp_path):
    # a re-tune at a new patience: the clone's trial folder set its old records aside, and the
    # checkout, which has collected those old records twice already (the trial's records/ and,
    # once the clone moved them, its variants/<old>/), takes the new ones without an error
    src, dest = checkout(tmp_path / "clone"), checkout(tmp_path / "main")
    old_hash, new_hash = "0" * 16, "1" * 16
    trial = Path("tuning") / "ml-100k" / "adaranker" / "lr=1e-3"
    old = fake_record(src / "results" / trial, "ml-100k", "adaranker", old_hash, 0)
    assert campaign.collect(src, dest)  # the old trial, as collected before the re-tune
    store.set_aside(src / "results" / trial, "ml-100k", "adaranker", keep=new_hash)  # the run
    assert campaign.collect(src, dest)  # the clone's variants/<old>/: a second copy arrives
    new = fake_record(src / "results" / trial, "ml-100k", "adaranker", new_hash, 0)  # finished
    assert campaign.collect(src, dest)
    here = dest / "results" / new.relative_to(src / "results")
    assert store.read_record(here)["config_hash"] == new_hash
    aside = store.variant_dir(dest / "results" / trial, old_hash) / old.relative_to(
        src / "results" / trial)
    assert store.read_record(aside)["config_hash"] == old_hash and aside.with_suffix(".npz").exists()
    assert campaign.collect(src, dest) == []


def test_collect_brings_a_failed_tuning_trial_and_no_other_failed_run(tmp_path):
    # the search counts a trial whose loss became nan as run; without its record the checkout's
    # `harness.tune` would train it again to render its report
    src, dest = checkout(tmp_path / "clone"), checkout(tmp_path / "main")
    trial = fake_record(src / "results" / "tuning" / "ml-100k" / "adaranker" / "lr=1e-2",
                        "ml-100k", "adaranker", "1" * 16, 0, npz=False, status="failed")
    seed = fake_record(src / "results", "ml-100k", "adaranker", "1" * 16, 1, npz=False,
                       status="failed")  # a Table 1 seed: rerun, not collected
    written = campaign.collect(src, dest)
    assert written == [dest / "results" / trial.relative_to(src / "results")]
    assert store.read_record(written[0])["status"] == "failed"
    assert not (dest / "results" / seed.relative_to(src / "results")).exists()


def test_collect_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    with pytest.raises(HarnessError, match="not a checkout"):
        campaign.collect(tmp_path / "nowhere", tmp_path)


def test_the_committed_plan_parses_and_runs_every_job_on_one_thread():
    jobs = campaign.read_plan(ROOT / "campaigns" / "rerun.plan")
    assert len({j.name for j in jobs}) == len(jobs) >= 10
    for job in jobs:
        for step in job.command.split("&&"):
            if any(f"harness.{c} " in step for c in ("run", "tune", "reproduce_table1")):
                assert "--threads 1" in step, job.name
            if "harness.tune" in step:
                assert "--jobs 1" in step, job.name
        # `campaign left` reads every step's sizing options (an ambiguous one stopped it)
        assert all(module and a for module, a in campaign._steps(job.command)), job.name


def test_jobs_added_to_the_plan_while_it_runs_are_taken_up_when_a_job_ends(tmp_path):
    out = tmp_path / "out"
    plan = tmp_path / "p.plan"
    plan.write_text(f"first: echo 'added: echo added >> {out}' >> {plan}\n")
    assert campaign.run_plan(plan, tmp_path / "state", slots=1, poll_s=0.02) == 0
    assert out.read_text().split() == ["added"]
    assert (tmp_path / "state" / "added.done").exists()
    # a plan that stops reading mid-campaign leaves the campaign on the plan it had
    plan.write_text(f"second: echo 'broken line' >> {plan}\nthird: echo third >> {out}\n")
    assert campaign.run_plan(plan, tmp_path / "state", slots=1, poll_s=0.02) == 0
    assert out.read_text().split() == ["added", "third"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def repo_and_clone(tmp_path: Path, name: str, text: str) -> tuple[Path, Path]:
    """A repository holding one committed file, and a clone of it."""
    main, clone = tmp_path / "main", tmp_path / "clone"
    main.mkdir()
    git(main, "init", "-q", "-b", "main")
    (main / name).write_text(text)
    git(main, "add", name)
    git(main, "commit", "-qm", "one")
    git(tmp_path, "clone", "-q", str(main), str(clone))
    return main, clone


def test_update_moves_the_clone_up_past_files_it_made_itself_and_stops_on_a_real_change(tmp_path):
    main, clone = repo_and_clone(tmp_path, "plan", "a: true\n")
    # the clone makes a record and changes a report; the checkout commits the same bytes
    (clone / "rec.json").write_text("new record\n")
    (clone / "plan").write_text("a: true\nb: true\n")
    (main / "rec.json").write_text("new record\n")
    (main / "plan").write_text("a: true\nb: true\n")
    (main / "code.py").write_text("x = 1\n")
    git(main, "add", "-A")
    git(main, "commit", "-qm", "two")
    assert campaign.update(clone) == git(main, "rev-parse", "HEAD").strip()
    assert (clone / "code.py").read_text() == "x = 1\n"
    assert git(clone, "status", "--porcelain") == ""
    # a file the clone changed otherwise: nothing is touched
    (clone / "rec.json").write_text("the clone's own record\n")
    (main / "rec.json").write_text("another record\n")
    (main / "code.py").write_text("x = 2\n")
    git(main, "commit", "-qam", "three")
    with pytest.raises(HarnessError, match="rec.json was changed in the clone"):
        campaign.update(clone)
    assert (clone / "code.py").read_text() == "x = 1\n"
    assert (clone / "rec.json").read_text() == "the clone's own record\n"



def test_update_takes_away_a_collected_file_the_checkout_has_since_moved(tmp_path):
    # the clone finished records; the checkout collected them, then moved them (a config swap
    # set them elsewhere): the clone's copies at the old place go, or the next collect would
    # bring them back beside the moved ones
    main, clone = repo_and_clone(tmp_path, "plan", "a: true\n")
    for where in (clone, main):
        (where / "variants" / "h").mkdir(parents=True)
        (where / "variants" / "h" / "seed1.json").write_text("record 1\n")
    git(main, "add", "-A")
    git(main, "commit", "-qm", "collected")
    (main / "records").mkdir()
    git(main, "mv", "variants/h/seed1.json", "records/seed1.json")
    git(main, "commit", "-qm", "moved")
    campaign.update(clone)
    assert not (clone / "variants" / "h" / "seed1.json").exists()
    assert (clone / "records" / "seed1.json").read_text() == "record 1\n"
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    # a tracked file the range removes and adds back as it was is the merge's, left alone
    git(main, "rm", "-q", "plan")
    git(main, "commit", "-qm", "gone")
    (main / "plan").write_text("a: true\n")
    git(main, "add", "plan")
    git(main, "commit", "-qm", "back")
    campaign.update(clone)
    assert (clone / "plan").read_text() == "a: true\n"
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    # one the clone changed after it was collected stops the update, nothing touched
    (clone / "variants" / "h").mkdir(parents=True, exist_ok=True)
    (clone / "variants" / "h" / "seed2.json").write_text("record 2, rewritten\n")
    (main / "variants" / "h").mkdir(parents=True, exist_ok=True)
    (main / "variants" / "h" / "seed2.json").write_text("record 2\n")
    git(main, "add", "-A")
    git(main, "commit", "-qm", "collected 2")
    git(main, "mv", "variants/h/seed2.json", "records/seed2.json")
    git(main, "commit", "-qm", "moved 2")
    with pytest.raises(HarnessError, match="changed in the clone after it was collected"):
        campaign.update(clone)
    assert (clone / "variants" / "h" / "seed2.json").read_text() == "record 2, rewritten\n"
    assert not (clone / "records" / "seed2.json").exists()


def test_collect_keeps_a_config_edited_here_and_brings_only_the_ones_the_clone_rewrote(tmp_path):
    # the clone's copy of a config it never rewrote is the older one: an edit made here (a
    # patience raised after a check), committed or not, is not reverted by the next collect
    cfg = "harness/configs/zhihu/sasrec.toml"
    main, clone = repo_and_clone(tmp_path, "README", "x\n")
    for root in (main, clone):
        checkout(root)
    (main / cfg).write_text("patience = 10\n")
    git(main, "add", "-A")
    git(main, "commit", "-qm", "config")
    git(clone, "pull", "-q")
    (main / cfg).write_text("patience = 60\n")  # not committed yet
    assert campaign.collect(clone, main) == []
    assert (main / cfg).read_text() == "patience = 60\n"
    git(main, "commit", "-qam", "patience 60")  # committed, the clone not updated yet
    assert campaign.collect(clone, main) == []
    assert (main / cfg).read_text() == "patience = 60\n"

    # the clone's tune rewrites it while an edit here is not committed: one line, nothing written
    git(clone, "pull", "-q")
    (clone / cfg).write_text("patience = 60\nlr = 1e-3\n")
    record = fake_record(clone / "results", "zhihu", "sasrec", "1" * 16, 0)
    (main / cfg).write_text("patience = 120\n")
    with pytest.raises(HarnessError, match="not committed here, and the clone rewrote it"):
        campaign.collect(clone, main)
    assert not (main / record.relative_to(clone)).exists()
    git(main, "checkout", "-q", "--", cfg)
    assert campaign.collect(clone, main) == [
        main / record.relative_to(clone).with_suffix(".npz"), main / record.relative_to(clone),
        main / cfg]
    assert (main / cfg).read_text() == "patience = 60\nlr = 1e-3\n"


def test_compare_names_the_fields_that_differ_but_not_when_or_where_a_run_trained(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for res, created in ((a, "2026-12-04T00:00:00+00:00"), (b, "2026-12-05T00:00:00+00:00")):
        fake_record(res, "zhihu", "sasrec", "1" * 16, 0, created=created)
        fake_record(res, "zhihu", "gru4rec", "2" * 16, 0, created=created)
        fake_record(res, "ml-100k", "gru4rec", "3" * 16, 0, created=created)
    assert campaign.compare(a, b) == []
    path = store.record_path(b, "zhihu", "sasrec", "validation", 0)
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "seed": 7, "wall": {"train_s": 1.0}}))
    np.savez(store.record_path(b, "zhihu", "gru4rec", "validation", 0).with_suffix(".npz"),
             test_ranks=np.array([0, 1, 5]))
    store.record_path(a, "ml-100k", "gru4rec", "validation", 0).unlink()
    assert campaign.compare(a, b, ["zhihu"]) == [
        "records/zhihu/gru4rec/validation/seed0.json: test ranks (.npz) differ (roundings only: "
        "the selected epoch and its validation and test metrics are equal; CPU kernels not "
        f"recorded in {b}, not recorded in {a})",
        "records/zhihu/sasrec/validation/seed0.json: seed differ"]
    assert campaign.main(["compare", str(a), str(b)]) == 1
    out, err = capsys.readouterr()
    assert "records/ml-100k/gru4rec/validation/seed0.json: missing in" in out
    assert "0 of 3 records" in err
    with pytest.raises(HarnessError, match="no records under"):
        campaign.compare(a, b, ["yc"])


def test_compare_names_a_record_that_differs_only_in_roundings_with_the_kernels_of_each(
        tmp_path, capsys):
    """The same cell from other CPU kernels: its curve and test ranks differ in the last bits,
    its selected epoch and metrics do not; that is said, with each side's instruction set."""
    a, b = tmp_path / "a", tmp_path / "b"
    cell = {"selected_epoch": 16, "test": {"ndcg@20": 0.0086}, "val": {"ndcg@20": 0.0091}}
    for res, isas, loss in ((a, [None], 1.3094132), (b, [None, "AVX2", "AVX2"], 1.3094133)):
        path = fake_record(res, "zhihu", "sasrec", "1" * 16, 0)
        segments = [{"device": "cpu"} if isa is None else {"device": "cpu", "cpu": isa}
                    for isa in isas]
        path.write_text(json.dumps({**json.loads(path.read_text()), **cell,
                                    "history": [{"epoch": 0, "loss": loss}],
                                    "wall": {"segments": segments}}))
    np.savez(store.record_path(b, "zhihu", "sasrec", "validation", 0).with_suffix(".npz"),
             test_ranks=np.array([0, 2, 1]))
    fake_record(a, "zhihu", "gru4rec", "2" * 16, 0)
    path = fake_record(b, "zhihu", "gru4rec", "2" * 16, 0)
    path.write_text(json.dumps({**json.loads(path.read_text()), "selected_epoch": 3,
                                "history": [{"epoch": 0, "loss": 1.0}]}))
    assert campaign.compare(a, b) == [
        "records/zhihu/gru4rec/validation/seed0.json: history, selected_epoch differ",
        f"records/zhihu/sasrec/validation/seed0.json: history, test ranks (.npz) differ "
        f"(roundings only: the selected epoch and its validation and test metrics are equal; "
        f"CPU kernels not recorded+AVX2 in {b}, not recorded in {a})"]
    assert campaign.main(["compare", str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert "0 of 2 records" in err and "; 1 more differ only in roundings" in err


def test_one_campaign_per_state_folder_and_a_killed_one_leaves_no_job_running_twice(tmp_path):
    marker = tmp_path / "started"
    plan = write_plan(tmp_path / "p.plan", [f"slow: echo go >> {marker}; sleep 120"])
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "harness.campaign", "run", str(plan), "--state", str(state)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    with pytest.raises(HarnessError, match=f"another campaign \\(pid {proc.pid}\\)"):
        campaign.run_plan(plan, state, slots=1)
    proc.kill()  # SIGKILL: no chance to stop its job, which goes on in its own session
    proc.wait()
    pgid = int((state / "slow.pgid").read_text())
    assert campaign._alive(pgid)
    plan.write_text(plan.read_text().replace("sleep 120", "true"))
    assert campaign.run_plan(plan, state, slots=1, poll_s=0.05) == 0
    assert not campaign._alive(pgid)  # stopped before the job was started again
    assert marker.read_text().split() == ["go", "go"] and not (state / "slow.pgid").exists()


def test_a_job_after_another_starts_only_once_that_one_is_done(tmp_path):
    log = tmp_path / "order"
    plan = write_plan(tmp_path / "p.plan", [
        f"tune: sleep 0.4; echo tuned >> {log}",
        f"other: echo other >> {log}",
        f"seeds [after tune]: echo seeds >> {log}",
    ])
    state = tmp_path / "state"
    assert campaign.run_plan(plan, state, slots=2, poll_s=0.02) == 0
    assert log.read_text().split() == ["other", "tuned", "seeds"]  # a free slot did not start it
    # when what it comes after fails, it is not started
    plan = write_plan(tmp_path / "q.plan", ["a: exit 1", f"b [after a]: echo b >> {log}"])
    assert campaign.run_plan(plan, tmp_path / "s2", slots=2, poll_s=0.02) == 1
    assert "b" not in log.read_text().split()
    assert [j.after for j in campaign.read_plan(plan)] == [(), ("a",)]
    plan.write_text("b [after a]: true\na: true\n")
    with pytest.raises(HarnessError, match="not a job above it"):
        campaign.read_plan(plan)


def test_an_update_whose_merge_fails_puts_back_what_it_moved(tmp_path, monkeypatch):
    main, clone = repo_and_clone(tmp_path, "rec.json", "old record\n")
    (clone / "rec.json").write_text("new record\n")  # the campaign's; collected and committed
    (main / "rec.json").write_text("new record\n")
    git(main, "commit", "-qam", "two")
    real = campaign._git

    def merge_fails(where, *args, **kw):  # a run finished a file in the way meanwhile
        if args[0] == "merge":
            raise HarnessError("git merge failed")
        return real(where, *args, **kw)

    monkeypatch.setattr(campaign, "_git", merge_fails)
    with pytest.raises(HarnessError, match="a file changed there while it ran"):
        campaign.update(clone)
    assert (clone / "rec.json").read_text() == "new record\n"  # not the old version


def test_left_counts_what_each_job_still_trains_at_the_records_own_minutes(tmp_path, capsys,
                                                                           monkeypatch):
    root = checkout(tmp_path / "clone")
    results = root / "results"
    current = "a" * 16  # the hash of every config as it is now (a run computes it from the data)

    def done_seeds(a, root_, results_, n):
        folder = store.records_dir(results_, a.dataset, a.model) / "validation"
        return sum(1 for s in range(n) if (folder / f"seed{s}.json").is_file() and json.loads(
            (folder / f"seed{s}.json").read_text())["config_hash"] == current)

    monkeypatch.setattr(campaign, "_done_seeds", done_seeds)

    def trials_ran(a, root_, results_):
        folder = results_ / "tuning" / a.dataset / a.model
        return sum(done_seeds(a, root_, t, 1) for t in folder.glob("*")) if folder.is_dir() else 0

    monkeypatch.setattr(campaign, "_trials_ran", trials_ran)

    def timed(folder, model, seed, minutes, resumed=False, chash=current):
        path = fake_record(folder, "zhihu", model, chash, seed)
        rec = json.loads(path.read_text())
        rec["wall"] = ({"total_s": 1.0, "resumed": True, "train_s": 60 * minutes - 30,
                        "eval_s": 30.0} if resumed else {"total_s": 60.0 * minutes})
        path.write_text(json.dumps(rec))

    # SASRec: two seeds recorded (10 and 20 min, one of them resumed: every stretch counts)
    timed(results, "sasrec", 0, 10.0)
    timed(results, "sasrec", 1, 20.0, resumed=True)
    # GRU4Rec: one trial of its rule finished (6 min)
    timed(results / "tuning" / "zhihu" / "gru4rec" / "lr=1e-2", "gru4rec", 0, 6.0)
    # Caser: tuned and run before its config changed (3 min): its report is there, its seed 0
    # is another config's, so the rule and every seed run again
    timed(results, "caser", 0, 3.0, chash="b" * 16)
    (results / "tuning").mkdir(exist_ok=True)
    (results / "tuning" / "zhihu-caser.md").write_text("# report\n")
    plan = write_plan(tmp_path / "p.plan", [
        "old: python -m harness.run --model caser --dataset zhihu --seeds 5 --threads 1",
        "sasrec: python -m harness.run --model sasrec --dataset zhihu --seeds 5 --threads 1",
        "gru [after sasrec]: python -m harness.tune --model gru4rec --dataset zhihu --threads 1 "
        "&& python -m harness.run --model gru4rec --dataset zhihu --seeds 5 --threads 1",
        "reports [after gru]: python -m harness.tune --model gru4rec --dataset zhihu --threads 1",
        "new: python -m harness.run --model diffurec --dataset zhihu --seeds 2 --threads 1",
        "changed: python -m harness.tune --model caser --dataset zhihu --threads 1 "
        "&& python -m harness.run --model caser --dataset zhihu --seeds 5 --threads 1",
    ])
    state = tmp_path / "state"
    state.mkdir()
    (state / "old.done").write_text("in 1.00 h\n")
    assert campaign.main(["left", str(plan), "--state", str(state), "--clone", str(root)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "old" not in rows  # done
    assert "3 x sasrec/zhihu at 15.0 min" in rows["sasrec"] and "| 0.8 " in rows["sasrec"]
    # the rule's 4 trials at the fewest less the one finished, then 4 seeds (the winning
    # trial is seed 0)
    assert "3 x gru4rec/zhihu at 6.0 min; 4 x gru4rec/zhihu at 6.0 min" in rows["gru"]
    assert "no training" in rows["reports"]  # the rule's trials come from the job before
    assert "never timed" in rows["new"] and "≥0.0" in rows["new"]
    assert "4 x caser/zhihu at 3.0 min; 4 x caser/zhihu at 3.0 min" in rows["changed"]
    assert "1.9 CPU-hours left" in out and "never timed: new" in out


def shipped_with_patience(dataset: str, model: str, patience: int) -> str:
    """The shipped config file's text with its patience set, whatever a campaign made it."""
    return re.sub(r"(?m)^patience = \d+$", f"patience = {patience}",
                  (CONFIG_DIR / dataset / f"{model}.toml").read_text())


def _left_rows(tmp_path: Path, capsys, root: Path, jobs: list[str]) -> dict[str, str]:
    """job name -> the row ``campaign left`` prints for a plan of ``jobs`` in the checkout
    ``root``, none of them done."""
    plan = write_plan(tmp_path / "p.plan", jobs)
    state = tmp_path / "state"
    state.mkdir()
    assert campaign.main(["left", str(plan), "--state", str(state), "--clone", str(root)]) == 0
    return {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")}


def sasrec_clone(tmp_path: Path, monkeypatch, patience: int) -> Path:
    """A campaign clone whose zhihu SASRec config stops after ``patience`` evaluations, with no
    seed recorded for the config it runs now."""
    root = checkout(tmp_path / "clone")
    (root / "harness" / "configs" / "zhihu" / "sasrec.toml").write_text(
        shipped_with_patience("zhihu", "sasrec", patience))
    monkeypatch.setattr(campaign, "_done_seeds", lambda a, root_, results_, n: 0)
    return root


def timed_sasrec(folder: Path, seed: int, minutes: float, config: dict, **fields) -> None:
    """A finished zhihu SASRec validation record of ``minutes`` and ``config`` (and ``fields``)
    under ``folder``, for ``campaign left`` to time a seed by."""
    path = fake_record(folder, "zhihu", "sasrec", "a" * 16, seed)
    rec = json.loads(path.read_text())
    rec.update(wall={"total_s": 60.0 * minutes}, config=config, **fields)
    path.write_text(json.dumps(rec))


def test_left_times_a_step_by_the_records_made_with_its_stopping_settings(tmp_path, capsys,
                                                                         monkeypatch):
    # ml-100k AdaRanker's config went from patience 10 (seeds of ~16 min) to 30 (~75 min): the
    # seeds still to run are timed by the record made with patience 30, not by the median of all
    root = sasrec_clone(tmp_path, monkeypatch, 30)
    results = root / "results"

    def timed(folder, seed, minutes, patience):
        timed_sasrec(folder, seed, minutes,
                     {"train": {"max_epochs": 1000, "eval_every": 1, "patience": patience}})

    for seed in range(3):
        timed(results, seed, 10.0, patience=10)
    timed(results / "checks", 0, 70.0, patience=30)
    rows = _left_rows(tmp_path, capsys, root, [
        "p30: python -m harness.run --model sasrec --dataset zhihu --seeds 2 --threads 1",
        "p10: python -m harness.run --model sasrec --dataset zhihu --seeds 2 --threads 1 "
        "--set patience=10 --results-dir results/other",
        "p5: python -m harness.run --model sasrec --dataset zhihu --seeds 2 --threads 1 "
        "--set patience=5 --results-dir results/other5",
    ])
    assert "2 x sasrec/zhihu at 70.0 min" in rows["p30"]
    assert "2 x sasrec/zhihu at 10.0 min" in rows["p10"]
    # no record made with patience 5: the median of them all
    assert "2 x sasrec/zhihu at 10.0 min" in rows["p5"]


def test_left_times_a_run_step_by_the_records_of_its_very_settings(tmp_path, capsys,
                                                                  monkeypatch):
    # ml-100k AdaRanker: the rule moved its lr from 1e-3 (seeds of ~50 min) to 1e-4, whose
    # tuning trial ran 220 min under the same stopping settings: its seeds are timed by that one
    root = checkout(tmp_path / "clone")
    results = root / "results"
    (root / "harness" / "configs" / "zhihu").mkdir(parents=True, exist_ok=True)
    (root / "harness" / "configs" / "zhihu" / "sasrec.toml").write_text(
        (CONFIG_DIR / "zhihu" / "sasrec.toml").read_text())
    monkeypatch.setattr(campaign, "_done_seeds", lambda a, root_, results_, n: 0)
    step = argparse.Namespace(model="sasrec", dataset="zhihu", config=None, set=[])
    now = campaign.step_config(step, root)  # the settings as a record keeps them
    assert now == json.loads(json.dumps(now))
    before = {"model": now["model"], "train": {**now["train"], "lr": now["train"]["lr"] * 10}}

    for seed in range(3):
        timed_sasrec(results, seed, 50.0, before)
    timed_sasrec(results / "tuning" / "zhihu" / "sasrec" / "lr=x", 0, 220.0, now)
    rows = _left_rows(tmp_path, capsys, root, [
        "now: python -m harness.run --model sasrec --dataset zhihu --seeds 2 --threads 1",
        "other: python -m harness.run --model sasrec --dataset zhihu --seeds 2 --threads 1 "
        "--set lr=0.5 --results-dir results/other",
    ])
    assert "2 x sasrec/zhihu at 220.0 min" in rows["now"]
    # no record of lr 0.5: the records of its stopping settings, all four here
    assert "2 x sasrec/zhihu at 50.0 min" in rows["other"]


def test_left_times_a_longer_patience_by_the_same_configs_records_rescaled(tmp_path, capsys,
                                                                          monkeypatch):
    # ml-100k AdaRanker's patience-120 check of its patience-60 row: no record has its settings,
    # and the records made with patience 120 are another config's (lr 1e-3, an hour); the row's
    # own seeds, at their minutes per epoch, run to their selected epoch and 120 evaluations more
    root = sasrec_clone(tmp_path, monkeypatch, 60)
    results = root / "results"
    step = argparse.Namespace(model="sasrec", dataset="zhihu", config=None, set=[])
    now = campaign.step_config(step, root)
    every = now["train"]["eval_every"]

    def timed(folder, seed, minutes, config, selected, run):
        timed_sasrec(folder, seed, minutes, config, selected_epoch=selected, epochs_run=run)

    # two seeds of the row: 1 and 2 minutes an epoch
    timed(results, 0, 100.0, now, 39, 40 + 60 * every)
    timed(results, 1, 2 * (20 + 60 * every), now, 19, 20 + 60 * every)
    other = {"model": now["model"], "train": {**now["train"], "lr": 0.5, "patience": 120}}
    timed(results / "checks", 0, 60.0, other, 5, 6 + 120 * every)
    rows = _left_rows(tmp_path, capsys, root, [
        "p120: python -m harness.run --model sasrec --dataset zhihu --seeds 1 --threads 1 "
        "--set patience=120 --results-dir results/p120",
        "p60: python -m harness.run --model sasrec --dataset zhihu --seeds 1 --threads 1 "
        "--results-dir results/p60",
        "short: python -m harness.run --model sasrec --dataset zhihu --seeds 1 --threads 1 "
        "--set patience=120 --set max_epochs=30 --results-dir results/short",
    ])
    rescaled = sorted([100.0 / (40 + 60 * every) * (40 + 120 * every),
                       2.0 * (20 + 120 * every)])
    assert f"1 x sasrec/zhihu at {np.mean(rescaled):.1f} min" in rows["p120"]
    assert f"1 x sasrec/zhihu at {np.median([100.0, 2 * (20 + 60 * every)]):.1f} min" in rows["p60"]
    # capped at max_epochs
    assert f"1 x sasrec/zhihu at {np.mean([100.0 / (40 + 60 * every) * 30, 60.0]):.1f} min" in \
        rows["short"]



def test_left_times_a_run_without_early_stopping_at_max_epochs(tmp_path, capsys, monkeypatch):
    # ml-100k AdaRanker after its patience went to 1000 (its 1,000 epochs, no early stop): no
    # record has its settings, and its tuning step's trials vary the learning rate, so no record
    # is rescaled as the same config; every record, at its own minutes per epoch, runs the
    # max_epochs every run now makes, where the median of the records' own times would say
    # far less
    root = sasrec_clone(tmp_path, monkeypatch, 10)
    results = root / "results"
    step = argparse.Namespace(model="sasrec", dataset="zhihu", config=None, set=[])
    now = campaign.step_config(step, root)
    other = {"model": now["model"], "train": {**now["train"], "lr": 0.5}}
    for seed, (minutes, run) in enumerate([(10.0, 20), (30.0, 30), (12.0, 40)]):
        timed_sasrec(results, seed, minutes, other, selected_epoch=run - 11, epochs_run=run)
    # a record of other model settings (slower epochs) is left out while any has the step's
    slower = {"model": {**now["model"], "hidden_size": 4096}, "train": other["train"]}
    timed_sasrec(results / "variants", 0, 400.0, slower, selected_epoch=9, epochs_run=20)
    epochs = now["train"]["max_epochs"]
    assert campaign.store.fixed_epochs({**now["train"], "patience": epochs}) == epochs
    assert campaign.store.fixed_epochs(now["train"]) is None
    rows = _left_rows(tmp_path, capsys, root, [
        f"full: python -m harness.tune --model sasrec --dataset zhihu --jobs 1 --threads 1 "
        f"--set patience={epochs} --results-dir results/full",
        "stops: python -m harness.tune --model sasrec --dataset zhihu --jobs 1 --threads 1 "
        "--results-dir results/stops",
    ])
    per_epoch = np.median([10.0 / 20, 30.0 / 30, 12.0 / 40])
    assert f"x sasrec/zhihu at {per_epoch * epochs:.1f} min" in rows["full"]
    # the median of the records' times
    assert f"x sasrec/zhihu at {np.median([10.0, 30.0, 12.0, 400.0]):.1f} min" in rows["stops"]


def _trials(root: Path, model: str, records: list[tuple[dict, str | None, str, float]],
            sets: tuple[str, ...] = ()) -> Path:
    """A tuning search's folder in the checkout ``root`` (ml-100k): one seed-0 record a trial
    (point, its config hash or None for the trial's own, status, minutes); the results folder."""
    from harness import tune

    results = root / "results"
    args, passthrough = tune.build_parser().parse_known_args(
        ["--model", model, "--dataset", "ml-100k", "--results-dir", str(results), "--jobs", "1",
         "--threads", "1", *(x for kv in sets for x in ("--set", kv))])
    search = tune.Search(args, passthrough, {})
    search.extra = tune.trial_extra(model)
    for point, chash, status, minutes in records:
        t = search.trial(point, "lr")
        path = fake_record(t.prep.home, "ml-100k", model, chash or t.prep.chash, 0)
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "status": status, "wall": {"total_s": 60 * minutes}}))
    return results


def _left_row(tmp_path: Path, capsys, root: Path, step: str) -> str:
    """The row ``campaign left`` prints for a plan of the one job ``tune: <step>``."""
    return _left_rows(tmp_path, capsys, root, [f"tune: {step}"])["tune"]


def test_left_counts_only_the_trials_that_ran_for_the_config_each_would_run_now(tmp_path,
                                                                                 capsys):
    # a re-tune after the config changed (ml-100k AdaRanker, patience 10 -> 30): a trial folder
    # holding the config before's record is still to train; a failed trial of the config now
    # has run
    from harness import tune

    root = checkout(tmp_path / "clone")
    _trials(root, "sasrec", [({"lr": lr, "weight_decay": tune.RULE_WD_FIXED}, chash, status, 5.0)
                             for lr, status, chash in (("1e-2", "failed", None),
                                                       ("1e-3", "ok", None),
                                                       ("1e-4", "ok", "f" * 16))])
    row = _left_row(tmp_path, capsys, root,
                    "python -m harness.tune --model sasrec --dataset ml-100k --threads 1")
    # the rule's 4 trials at the fewest (lr 1e-4 then 5e-5, whose weight decays are no-ops),
    # less lr 1e-2 (failed) and 1e-3 (finished)
    assert "2 x sasrec/ml-100k at 5.0 min" in row


def test_left_takes_off_the_epochs_a_run_in_progress_has_saved(tmp_path, capsys):
    # ml-100k AdaRanker's seeds and CL4SRec's trials run 1,000 epochs each, several sessions
    # long: a seed or trial at epoch 600 has 40 % of its training left, not all of it
    import torch

    from harness import run, tune

    root = checkout(tmp_path / "clone")
    fixed = ["--set", "max_epochs=8", "--set", "patience=8"]  # no early stop: 8 epochs a run
    prep = run.prepare(run.build_parser().parse_args(
        ["--model", "sasrec", "--dataset", "ml-100k", "--seeds", "3", "--results-dir",
         str(root / "results"), *fixed]))

    def saved(path, key, epoch):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "epoch": epoch, "log": []}, path)

    ckpt = lambda home, seed: store.checkpoint_path(home, "ml-100k", "sasrec", seed)  # noqa: E731
    saved(ckpt(prep.home, 0), f"{prep.chash}:validation+published", 1)  # 2 of its 8 epochs
    saved(ckpt(prep.home, 1), f"{'f' * 16}:validation", 5)  # another config's: counts nothing
    fake_record(prep.home, "ml-100k", "sasrec", prep.chash, 2)  # seed 2 is done
    args, passthrough = tune.build_parser().parse_known_args(
        ["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(root / "results"),
         "--jobs", "1", "--threads", "1", *fixed])
    search = tune.Search(args, passthrough, {})
    search.extra = tune.trial_extra("sasrec")
    trial = search.trial({"lr": "1e-3", "weight_decay": tune.RULE_WD_FIXED}, "lr")
    saved(ckpt(trial.prep.home, tune.TUNING_SEED), f"{trial.prep.chash}:validation", 3)  # half
    rows = _left_rows(tmp_path, capsys, root, [
        "seeds: python -m harness.run --model sasrec --dataset ml-100k --seeds 3 --threads 1 "
        + " ".join(fixed),
        "tune: python -m harness.tune --model sasrec --dataset ml-100k --jobs 1 --threads 1 "
        + " ".join(fixed)])
    assert "1.75 x sasrec/ml-100k" in rows["seeds"]  # seed 1 all, seed 0 three quarters
    assert f"{campaign.rule_trials('sasrec') - 0.5:g} x sasrec/ml-100k" in rows["tune"]
    # a run that can stop early: how long it goes on is not known, so nothing is taken off
    assert campaign._saved_share(ckpt(prep.home, 0), prep.chash, 8) == 0.25
    assert campaign._saved_share(ckpt(prep.home, 0), prep.chash, None) == 0.0


@pytest.mark.parametrize("same_config", [False, True])
def test_left_counts_a_guided_models_search_again_when_its_config_changed(tmp_path, capsys,
                                                                          same_config):
    # zhihu DreamRec went from patience 10 to 30 after its rule had run and written its report:
    # the rule's trials are to train again, though a guided model's seed 0 is not a trial's
    from harness import tune

    root = checkout(tmp_path / "clone")
    points = ([{"lr": lr, "timesteps": tune.RULE_T_FIXED} for lr in tune.RULE_LR_START]
              + [{"lr": "1e-2", "timesteps": t} for t in tune.RULE_TIMESTEPS
                 if t != tune.RULE_T_FIXED])
    results = _trials(root, "dreamrec",
                      [(p, None if same_config else "f" * 16, "ok", 2.0) for p in points])
    (results / "tuning" / "ml-100k-dreamrec.md").write_text("# report\n")
    row = _left_row(tmp_path, capsys, root,
                    "python -m harness.tune --model dreamrec --dataset ml-100k --threads 1")
    assert len(points) == campaign.rule_trials("dreamrec") == 6
    assert ("no training" in row) if same_config else ("6 x dreamrec/ml-100k at 2.0 min" in row)


@pytest.mark.parametrize("same_config", [False, True])
def test_left_takes_a_baselines_report_as_done_when_its_lr_stage_ran_for_the_config_now(
        tmp_path, capsys, same_config):
    # ml-100k SASRec's rule made 4 trials, its weight decays no-ops at lr 1e-4 and not trained
    # (the rule's fewest), and finished; after a config change it counts again
    from harness import tune

    root = checkout(tmp_path / "clone")
    results = _trials(root, "sasrec", [
        ({"lr": lr, "weight_decay": tune.RULE_WD_FIXED}, None if same_config else "f" * 16,
         "ok", 1.0) for lr in ("1e-2", "1e-3", "1e-4", "5e-5")], sets=("max_epochs=50",))
    (results / "tuning" / "ml-100k-sasrec.md").write_text("# report\n")
    row = _left_row(tmp_path, capsys, root,  # --set: no seed 0 of the config file to adopt
                    "python -m harness.tune --model sasrec --dataset ml-100k --threads 1 "
                    "--set max_epochs=50")
    assert ("no training" in row) if same_config else ("4 x sasrec/ml-100k at 1.0 min" in row)


def test_left_counts_a_check_by_the_seed_it_reruns(tmp_path, capsys):
    # a patience check reruns one seed: --first-seed's, or the one --seed-stopping-first picks;
    # it is left until that seed, not seed 0, is recorded for the check's config
    from harness import run

    root = checkout(tmp_path / "clone")
    # patience 10 whatever a campaign set in the shipped file, so that the checks' 30 differs
    (root / "gru4rec.toml").write_text(shipped_with_patience("ml-100k", "gru4rec", 10))
    base = ["--model", "gru4rec", "--dataset", "ml-100k", "--config", str(root / "gru4rec.toml")]
    ref = run.prepare(run.build_parser().parse_args([*base, "--results-dir",
                                                     str(root / "results")]))
    for seed, epochs in {0: 40, 1: 30, 2: 12}.items():
        path = fake_record(ref.home, "ml-100k", "gru4rec", ref.chash, seed)
        path.write_text(json.dumps({**json.loads(path.read_text()), "epochs_run": epochs}))
    checks = {"picked": "--seeds 1 --seed-stopping-first results",
              "first2": "--seeds 1 --first-seed 2"}
    plan = write_plan(tmp_path / "p.plan", [
        f"{name}: python -m harness.run --model gru4rec --dataset ml-100k --config gru4rec.toml "
        f"{how} --set patience=30 --results-dir results/checks --threads 1"
        for name, how in checks.items()])
    state = tmp_path / "state"
    state.mkdir()

    def rows() -> dict[str, str]:
        assert campaign.main(["left", str(plan), "--state", str(state), "--clone",
                              str(root)]) == 0
        return {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()
                if line.startswith("| ")}

    check = run.prepare(run.build_parser().parse_args(
        [*base, "--seeds", "1", "--seed-stopping-first", str(root / "results"),
         "--set", "patience=30", "--results-dir", str(root / "results" / "checks")]))
    assert check.seeds == [2]
    fake_record(check.home, "ml-100k", "gru4rec", check.chash, 0)  # not the seed either reruns
    before = rows()
    assert all("1 x gru4rec/ml-100k" in before[name] for name in checks), before
    fake_record(check.home, "ml-100k", "gru4rec", check.chash, 2)
    after = rows()
    assert all("1 x gru4rec/ml-100k" not in after[name] for name in checks), after



def test_left_counts_a_recorded_seed_whose_kept_state_is_lost_when_the_step_keeps_states(
        tmp_path, capsys, monkeypatch):
    # harness.run --save-model trains a recorded seed again when its state is not in the model
    # folder (a state lost with its machine): left counts it, and a step after it without
    # --save-model counts the seeds that one makes
    from harness import run

    monkeypatch.delenv("HARNESS_MODEL_DIR", raising=False)
    root = checkout(tmp_path / "clone")
    (root / "gru4rec.toml").write_text((CONFIG_DIR / "ml-100k" / "gru4rec.toml").read_text())
    ref = run.prepare(run.build_parser().parse_args(
        ["--model", "gru4rec", "--dataset", "ml-100k", "--config", str(root / "gru4rec.toml"),
         "--results-dir", str(root / "results")]))
    for seed in (0, 1):
        fake_record(ref.home, "ml-100k", "gru4rec", ref.chash, seed)
    step = ("python -m harness.run --model gru4rec --dataset ml-100k --config gru4rec.toml "
            "--seeds 2 --threads 1")
    plan = write_plan(tmp_path / "p.plan", [f"keep: {step} --save-model", f"after: {step}",
                                            f"plain: {step}"])
    state = tmp_path / "state"
    state.mkdir()

    def rows() -> dict[str, str]:
        assert campaign.main(["left", str(plan), "--state", str(state), "--clone",
                              str(root)]) == 0
        return {line.split("|")[1].strip(): line.split("|")[4]
                for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}

    lost = rows()
    assert "2 x gru4rec/ml-100k" in lost["keep"], lost
    assert "no training" in lost["after"], lost
    (state / "keep.done").write_text("in 0.10 h\n")  # ran without the states: the plain ones
    assert "no training" in rows()["plain"]  # count their records alone
    (state / "keep.done").unlink()
    kept = campaign.model_dir(root)
    assert kept == root / ".cache" / "models"
    store.state_path(kept, "ml-100k", "gru4rec", ref.chash, 0).parent.mkdir(parents=True)
    store.state_path(kept, "ml-100k", "gru4rec", ref.chash, 0).write_bytes(b"x")
    assert "1 x gru4rec/ml-100k" in rows()["keep"]



def test_left_counts_the_states_an_embeddings_step_trains(tmp_path, capsys, monkeypatch):
    # harness.embeddings --train trains each row's seed whose state is not kept (its record
    # there or not): left counts one training per such row, none without --train
    from harness import run

    monkeypatch.delenv("HARNESS_MODEL_DIR", raising=False)
    root = checkout(tmp_path / "clone")
    configs = root / "harness" / "configs" / "ml-100k"
    configs.mkdir(parents=True)
    for name in ("gru4rec.toml", "sasrec.toml", "sasrec.positives.toml"):
        (configs / name).write_text((CONFIG_DIR / "ml-100k" / name).read_text())
    keep = run.prepare(run.build_parser().parse_args(
        ["--model", "gru4rec", "--dataset", "ml-100k", "--config", str(configs / "gru4rec.toml"),
         "--results-dir", str(root / "results")]))
    fake_record(keep.home, "ml-100k", "gru4rec", keep.chash, 0)
    state = store.state_path(campaign.model_dir(root), "ml-100k", "gru4rec", keep.chash, 0)
    state.parent.mkdir(parents=True)
    state.write_bytes(b"x")
    rows = "gru4rec,sasrec,sasrec.positives"
    plan = write_plan(tmp_path / "p.plan", [
        f"figs: python -m harness.embeddings --dataset ml-100k --rows {rows} --train --threads 1",
        f"look: python -m harness.embeddings --dataset ml-100k --rows {rows} --threads 1"])
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    assert campaign.main(["left", str(plan), "--state", str(state_dir), "--clone",
                          str(root)]) == 0
    out = {line.split("|")[1].strip(): line.split("|")[4]
           for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert out["figs"].count("1 x sasrec/ml-100k") == 2 and "gru4rec" not in out["figs"], out
    assert "no training" in out["look"], out


def test_a_steps_options_are_read_whole_never_as_abbreviations():
    # diagnose's --seed is not run's --seeds (nor --seed-stopping-first): read as either, a
    # plan holding both made `campaign left` stop with "ambiguous option"
    steps = campaign._steps("python -m harness.run --model sasrec --dataset zhihu --seeds 1 "
                            "--seed-stopping-first results && python -m harness.diagnose "
                            "--model sasrec --dataset zhihu --seed 3")
    assert [(m, a.seeds, a.seed_stopping_first) for m, a in steps] == [
        ("run", 1, "results"), ("diagnose", None, None)]


def test_done_marks_survive_a_lost_state_folder_through_the_marks_file(tmp_path, capsys):
    state, marks = tmp_path / "state", tmp_path / "rerun.done"
    state.mkdir()
    (state / "a.done").write_text("in 0.50 h\n")
    (state / "b.failed").write_text("exit 1\n")
    assert campaign.main(["marks", str(marks), "--state", str(state)]) == 0
    assert campaign.read_marks(marks) == {"a": "in 0.50 h"}  # a failed job is not carried
    (state / "c.done").write_text("in 2.00 h\n")
    campaign.main(["marks", str(marks), "--state", str(state)])
    # the machine and its state folder are gone; a new one gets the marks back, and a job the
    # new folder already marks keeps its own mark
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "c.done").write_text("in 3.00 h\n")
    (state / "a.done").unlink()
    campaign.main(["marks", str(marks), "--state", str(state)])  # a file's job stays listed
    assert campaign.main(["marks", str(marks), "--state", str(fresh), "--restore"]) == 0
    assert (fresh / "a.done").read_text() == "in 0.50 h\n"
    assert (fresh / "c.done").read_text() == "in 3.00 h\n"
    assert not (fresh / "b.failed").exists() and not (fresh / "b.done").exists()
    assert "marked 1 jobs done" in capsys.readouterr().out
    # the restored folder is one the runner skips: the job marked done does not run again
    plan = write_plan(tmp_path / "p.plan", [f"a: touch {tmp_path / 'ran-a'}",
                                             f"d: touch {tmp_path / 'ran-d'}"])
    assert campaign.main(["run", str(plan), "--state", str(fresh)]) == 0
    assert not (tmp_path / "ran-a").exists() and (tmp_path / "ran-d").exists()


def test_a_marks_file_that_is_not_one_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "rerun.done"
    bad.write_text("not a mark line\n")
    assert campaign.main(["marks", str(bad), "--state", str(tmp_path), "--restore"]) == 2
    assert "expected 'job: wall time'" in capsys.readouterr().err
    assert campaign.main(["marks", str(tmp_path / "none"), "--state", str(tmp_path),
                          "--restore"]) == 2
    assert campaign.main(["marks", str(bad), "--state", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def test_checkpoints_of_runs_in_progress_survive_a_lost_machine_through_the_parked_folder(
        tmp_path, capsys):
    import torch

    clone, parked = tmp_path / "clone", tmp_path / "main" / "campaigns" / "parked"
    ckpt = store.checkpoint_path(clone / "results", "ml-100k", "adaranker", 3)
    trial = (clone / "results" / "tuning" / "ml-100k" / "cl4srec" / "lr=1e-4" / "variants"
             / "ecb6" / "checkpoints" / "ml-100k" / "cl4srec" / "seed0.pt")
    for path, epoch in ((ckpt, 184), (trial, 165)):
        path.parent.mkdir(parents=True)
        torch.save({"key": "k", "epoch": epoch}, path)
    (ckpt.parent / f".{ckpt.name}.123.tmp").write_bytes(b"half")  # a killed write: not parked
    (clone / "results" / "records").mkdir()
    (clone / "results" / "records" / "model.pt").write_bytes(b"not a checkpoint")
    assert campaign.main(["park", str(clone), str(parked)]) == 0
    assert sorted(p.relative_to(parked) for p in parked.rglob("*.pt")) == sorted(
        p.relative_to(clone) for p in (ckpt, trial))
    index = (parked / campaign.PARKED_INDEX).read_text()
    assert "| 184 |" in index and "| 165 |" in index
    # the trial finished (its checkpoint removed): parking again drops its parked copy
    store.remove_checkpoint(trial)
    assert campaign.main(["park", str(clone), str(parked)]) == 0
    assert [p.relative_to(parked) for p in parked.rglob("*.pt")] == [ckpt.relative_to(clone)]
    # a kept machine's clone holds its own, newer checkpoint: unparking over it is refused
    capsys.readouterr()
    assert campaign.main(["unpark", str(parked), str(clone)]) == 2
    assert "holds checkpoints of its own" in capsys.readouterr().err
    # a new machine: the run resumes from the parked state, byte for byte
    fresh = tmp_path / "fresh"
    (fresh / "results").mkdir(parents=True)
    assert campaign.main(["unpark", str(parked), str(fresh)]) == 0
    restored = fresh / ckpt.relative_to(clone)
    assert restored.read_bytes() == ckpt.read_bytes()
    assert torch.load(restored, weights_only=True)["epoch"] == 184
    # nothing in progress: the folder says so and unparks nothing; a wrong folder is an error
    store.remove_checkpoint(ckpt)
    assert campaign.main(["park", str(clone), str(parked)]) == 0
    assert not list(parked.rglob("*.pt"))
    assert "No run was in progress" in (parked / campaign.PARKED_INDEX).read_text()
    assert campaign.main(["unpark", str(parked), str(tmp_path / "other")]) == 2
    (tmp_path / "other" / "results").mkdir(parents=True)
    assert campaign.main(["unpark", str(tmp_path / "nothing"), str(tmp_path / "other")]) == 2
    assert "holds no parked checkpoints" in capsys.readouterr().err
