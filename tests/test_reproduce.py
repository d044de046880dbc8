"""``python -m harness.reproduce_table1``: runs what is missing, survives SIGKILL, renders."""

import csv
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from harness import store, table1
from harness.reproduce_table1 import main

SMALL = ["--datasets", "ml-100k", "--models", "gru4rec,dreamrec", "--seeds", "2", "--quick",
         "--device", "cpu",
         "--set", "gru4rec.embedding_size=16", "--set", "gru4rec.hidden_size=16",
         "--set", "batch_size=1024", "--set", "dreamrec.timesteps=5",
         "--set", "dreamrec.hidden_size=16"]


def record_files(res):
    return sorted((res / "records").glob("*/*/*/seed*.json"))


@pytest.fixture(scope="module", autouse=True)
def model_dir(tmp_path_factory):
    """DreamRec's kept states go to a temporary folder, not the checkout's cache."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("models")
    mp.setenv("HARNESS_MODEL_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, model_dir):
    res = tmp_path_factory.mktemp("t1") / "res"
    rc = main([*SMALL, "--jobs", "2", "--results-dir", str(res)])
    return res, rc


def test_runs_every_missing_seed_and_renders_three_files(reproduced, model_dir):
    res, rc = reproduced
    assert rc == 0
    assert len(record_files(res)) == 2 * 2 * 2  # models x seeds x protocols
    assert len(list(model_dir.glob("ml-100k/dreamrec/*/seed*.pt"))) == 2  # states kept for DreamRec
    assert not list(model_dir.glob("ml-100k/gru4rec"))
    md = (res / "table1.md").read_text()
    assert "QUICK" in md and "| GRU4Rec" in md and "| DreamRec" in md
    assert md.index("| GRU4Rec") < md.index("| DreamRec")  # the paper's row order
    assert "PUBLISHED PROTOCOL" in md
    rows = list(csv.DictReader((res / "table1.csv").open()))
    ours = [r for r in rows if r["model"] == "dreamrec" and r["protocol"] == "validation"]
    base = [r for r in rows if r["model"] == "gru4rec" and r["protocol"] == "validation"]
    assert {r["metric"] for r in ours} == {"hr@20", "ndcg@20"}
    assert all(r["seeds"] == "2" and r["quick"] == "True" for r in ours + base)
    assert all(0 <= float(r["seq_perm_p"]) <= 1 for r in base)  # DreamRec vs this baseline
    assert "wilcoxon_p" not in rows[0]
    assert all(r["best_baseline"] == "gru4rec" for r in ours)
    assert all(0 < float(r["coverage20_pct"]) <= 100 for r in ours + base)
    tex = (res / "table1.tex").read_text()
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert tex.count(r"\begin{tabular}") == 2  # both protocols; the paper has no ml-100k cell
    for name in ("table1-body.tex", "table1-published-body.tex"):
        assert (res / name).read_text().split("\n", 2)[2] in tex  # the same body, below its comments
    assert "% none: the paper's Table 1 has none" in (res / "table1-paper-body.tex").read_text()
    (inv,) = [json.loads(x) for x in (res / "logs" / "invocations.jsonl").read_text().splitlines()]
    assert inv["runs"] == 4 and inv["failed"] == 0 and inv["jobs"] == 2
    assert sorted(r["run"] for r in inv["per_run"]) == sorted(
        f"{m}/ml-100k/seed{s}" for m in ("gru4rec", "dreamrec") for s in (0, 1))
    # the invocation's wall time spans every run in it
    assert max(r["wall_s"] for r in inv["per_run"]) <= inv["wall_s"] + 0.2
    assert f"{inv['runs']} runs (0 failed), `--jobs 2`" in md


def test_rerun_logs_no_invocation_when_nothing_ran(reproduced):
    res, _ = reproduced
    log = res / "logs" / "invocations.jsonl"
    before = log.read_text()
    assert main([*SMALL, "--results-dir", str(res)]) == 0
    assert log.read_text() == before


def test_rerun_recomputes_nothing(reproduced, capsys):
    res, _ = reproduced
    before = {p: p.stat().st_mtime_ns for p in record_files(res)}
    assert main([*SMALL, "--results-dir", str(res)]) == 0
    assert "runs to do" not in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in record_files(res)} == before


def test_a_corrupt_record_is_reported_and_rerun(reproduced, capsys):
    res, _ = reproduced
    bad = store.record_path(res, "ml-100k", "gru4rec", "validation", 1)
    bad.write_text("{ half a record")
    assert main([*SMALL, "--results-dir", str(res)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {bad} is corrupt or not a record; it will be rerun" in err
    assert "1 runs to do" in err
    assert json.loads(bad.read_text())["status"] == "ok"


def test_a_seed_killed_between_its_records_keeps_the_finished_one(reproduced, capsys):
    """A run killed after its validation record and before its published one (SIGKILL cannot
    be held back) is rerun, and the rerun writes the missing record only."""
    res, _ = reproduced
    kept = store.record_path(res, "ml-100k", "gru4rec", "validation", 1)
    gone = store.record_path(res, "ml-100k", "gru4rec", "published", 1)
    before, mtime = kept.read_bytes(), kept.stat().st_mtime_ns
    published = json.loads(gone.read_text())
    gone.unlink()
    gone.with_suffix(".npz").unlink()
    assert main([*SMALL, "--results-dir", str(res)]) == 0
    assert "1 runs to do" in capsys.readouterr().err
    assert kept.read_bytes() == before and kept.stat().st_mtime_ns == mtime
    again = json.loads(gone.read_text())
    assert again["test"] == published["test"] and again["selected_epoch"] == published["selected_epoch"]


def test_runs_on_a_local_ray_record_what_this_process_records(reproduced, tmp_path):
    """The module's reproduction ran on a local Ray (--jobs 2); the same run in this process
    (--jobs 1) writes the same records, field by field, but for its times and provenance."""
    res, rc = reproduced
    assert rc == 0
    here = tmp_path / "here"
    gru4rec = ["--datasets", "ml-100k", "--models", "gru4rec", "--seeds", "1", "--quick",
               "--device", "cpu", "--set", "gru4rec.embedding_size=16", "--set",
               "gru4rec.hidden_size=16", "--set", "batch_size=1024"]  # SMALL's, for GRU4Rec
    assert main([*gru4rec, "--jobs", "1", "--threads", "1", "--results-dir", str(here)]) == 0
    for protocol in store.PROTOCOLS:
        a, b = (json.loads(store.record_path(r, "ml-100k", "gru4rec", protocol, 0).read_text())
                for r in (res, here))
        assert {k: v for k, v in a.items() if k not in ("wall", "created", "git")} == \
            {k: v for k, v in b.items() if k not in ("wall", "created", "git")}
    inv = [json.loads(x) for x in (here / "logs" / "invocations.jsonl").read_text().splitlines()]
    assert inv[-1]["ray"] is None  # one run at a time: no Ray
    inv = [json.loads(x) for x in (res / "logs" / "invocations.jsonl").read_text().splitlines()]
    assert inv[0]["ray"] == "local"


def test_killed_reproduction_leaves_no_orphans_and_the_rerun_keeps_finished_runs(tmp_path):
    """Killed outright, the driver takes its local Ray and the runs it started with it."""
    res = tmp_path / "res"
    one_seed = [*SMALL, "--seeds", "1"]  # the last --seeds wins
    cmd = [sys.executable, "-m", "harness.reproduce_table1", *one_seed, "--jobs", "2",
           "--results-dir", str(res)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not record_files(res) and time.time() < deadline:
        time.sleep(0.2)
    finished = {p: p.stat().st_mtime_ns for p in record_files(res)}
    assert finished, "no run finished in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30  # the local Ray notices its driver is gone
    while _children(res) and time.time() < deadline:
        time.sleep(0.5)
    assert _children(res) == ""  # the runs died with their parent
    assert not (res / "table1.md").exists()
    assert main([*one_seed, "--jobs", "2", "--results-dir", str(res)]) == 0
    for p, mtime in finished.items():
        assert p.stat().st_mtime_ns == mtime  # finished runs were not redone
    assert len(record_files(res)) == 4 and (res / "table1.md").exists()


def _children(res):
    r = subprocess.run(["pgrep", "-f", f"harness.run .*{res}"], capture_output=True, text=True)
    return r.stdout.strip()


@pytest.mark.parametrize("jobs", ["1", "2"])  # in this process; on a local Ray
def test_one_sigint_stops_the_reproduction_and_its_runs_and_the_rerun_resumes(tmp_path, jobs):
    res = tmp_path / "res"
    slow = ["--datasets", "ml-100k", "--models", "gru4rec", "--seeds", "2", "--quick",
            "--device", "cpu", "--set", "embedding_size=16", "--set", "hidden_size=16",
            "--set", "batch_size=1024", "--set", "max_epochs=1000", "--jobs", jobs,
            "--results-dir", str(res)]
    cmd = [sys.executable, "-m", "harness.reproduce_table1", *slow]
    log = res / "logs" / "ml-100k-gru4rec-seed0.log"
    ckpt = store.checkpoint_path(res, "ml-100k", "gru4rec", 0)

    def start_and_wait(pattern):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and re.search(pattern, log.read_text())):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        assert log.exists() and re.search(pattern, log.read_text()), "the run never got there"
        return proc

    proc = start_and_wait(r" epoch 0:")
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=90)
    # promptly, without waiting for a run to end (the exit code and the line below say that it
    # was stopped); 45 s leaves room for a machine whose two cores also train two campaign runs
    # (a stop there took 15.1 s)
    assert time.monotonic() - t0 < 45
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        "interrupted: 0 runs finished, 2 resumable; rerun the same command to continue")
    assert "Traceback" not in err
    assert _children(res) == ""  # the run in progress stopped with it
    assert ckpt.exists()  # and kept its last evaluation
    (inv,) = [json.loads(x) for x in (res / "logs" / "invocations.jsonl").read_text().splitlines()]
    assert inv["interrupted"] == "SIGINT" and inv["runs"] == 0
    assert not (res / "table1.md").exists()
    proc = start_and_wait(r"resumed after epoch \d+")  # the same command resumes the run
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert _children(res) == ""


def test_without_the_data_the_committed_table_renders_from_its_records(tmp_path, monkeypatch):
    """A fresh checkout without the authors' files renders the committed Table 1 cells and
    readings unchanged (the data-derived references are kept under results/references/)."""
    committed = store.REPO_ROOT / "results"
    for part in ("records", "variants", "references"):  # a preset row's records may be set
        if (committed / part).is_dir():  # aside in variants/ (its config not the model's)
            shutil.copytree(committed / part, tmp_path / part)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "no-data"))
    # rendered as committed: with the campaign's --since when the committed table has one
    since = re.search(r"made before (\S+) \(--since\)", (committed / "table1.md").read_text())
    assert main(["--render-only", "--results-dir", str(tmp_path)]
                + (["--since", since.group(1)] if since else [])) == 0

    def lines(path):  # a missing dataset's reason names what is missing on this machine, and
        # the last invocation's line comes from a log that is not committed
        return [x for x in path.read_text().splitlines()
                if "data missing (" not in x and "The last `python -m harness.reproduce_table1`" not in x]

    assert lines(tmp_path / "table1.md") == lines(committed / "table1.md")
    md = (tmp_path / "table1.md").read_text()
    assert "**zhihu**, validation-selected" in md and "never occurs as a training target" in md


def test_a_truncated_or_hand_edited_record_is_named_and_not_averaged(reproduced, tmp_path, capsys):
    res, _ = reproduced
    copy = tmp_path / "res"
    shutil.copytree(res / "records", copy / "records")
    cut = store.record_path(copy, "ml-100k", "gru4rec", "validation", 0)
    cut.write_text(cut.read_text()[:100])
    edited = store.record_path(copy, "ml-100k", "dreamrec", "validation", 1)
    rec = json.loads(edited.read_text())
    rec["test"]["hr@20"] += 0.01
    edited.write_text(json.dumps(rec))
    assert main([*SMALL, "--render-only", "--results-dir", str(copy)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {edited} left out of the table: its test HR@20 differ from what its " \
           f"per-row ranks give (hand-edited or damaged)" in err
    md = (copy / "table1.md").read_text()
    assert f"Left out, not averaged: {cut.as_posix()}: not readable JSON" in md
    assert f"Left out, not averaged: {edited.as_posix()}" in md
    rows = list(csv.DictReader((copy / "table1.csv").open()))
    seeds = {(r["model"], r["protocol"]): r["seeds"] for r in rows if r["metric"] == "hr@20"}
    assert seeds[("gru4rec", "validation")] == "1" and seeds[("dreamrec", "validation")] == "1"
    assert seeds[("gru4rec", "published")] == "2"


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--models", "bert4rec"], "unknown model or row 'bert4rec'; valid: "),
    (["--datasets", "netflix"], "unknown dataset 'netflix'; valid: ml-100k, yc, ks, zhihu"),
    (["--set", "bert4rec.lr=1"], "model 'bert4rec' is not in this table"),
])
def test_bad_names_list_the_valid_ones(tmp_path, capsys, args, message):
    assert main([*args, "--results-dir", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "res").exists()


def test_a_table_without_records_names_the_missing_runs_and_the_command(tmp_path, capsys):
    assert main([*SMALL, "--render-only", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished runs" in err and "gru4rec/ml-100k/seed0" in err
    assert "python -m harness.reproduce_table1" in err
    assert not (tmp_path / "table1.md").exists()


def test_summary_report_shows_each_cell_with_its_coverage(reproduced):
    from harness import report
    res, _ = reproduced
    text = report.render(res)
    row = next(line for line in text.splitlines() if "| dreamrec" in line and "| validation" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    recs = [json.loads(store.record_path(res, "ml-100k", "dreamrec", "validation", s).read_text())
            for s in (0, 1)]
    cov = 100 * sum(r["test"]["coverage@20"] for r in recs) / 2
    assert cells[3] == "2" and cells[8] == f"{cov:.1f} (2)"
    assert cells[6] == " ".join(f"{r['selected_epoch']}/{r['epochs_run']}" for r in recs)
    train = recs[0]["config"]["train"]
    if train["patience"] * train["eval_every"] >= train["max_epochs"]:  # the fixture's short runs
        assert cells[7] == f"none ({train['max_epochs']} epochs)"
    else:
        assert cells[7] == f"{train['patience']} × {train['eval_every']} epoch" + (
            "s" if train["eval_every"] != 1 else "")
    assert cells[9] == "—"  # the paper has no ml-100k cell


def test_summary_says_a_run_without_early_stopping_has_none():
    """What stops a run: its patience and cadence, or "none" where the patience outlasts
    max_epochs (no run can go that many evaluations without a gain before its last epoch)."""
    from harness import report

    def rec(patience, every, epochs):
        return {"config": {"train": {"patience": patience, "eval_every": every,
                                     "max_epochs": epochs}}}

    assert report._stopping([rec(1000, 1, 1000)]) == "none (1000 epochs)"
    assert report._stopping([rec(200, 5, 1000), rec(10, 5, 1000)]) == (
        "none (1000 epochs), 10 × 5 epochs")
    assert report._stopping([rec(999, 1, 1000)]) == "999 × 1 epoch"
    assert report._stopping([{"config": {"train": {"patience": 60}}}]) == "60 × 1 epoch"


def test_summary_sets_a_replaced_config_beside_the_current_cell(reproduced, tmp_path):
    """A config that tuning replaced keeps its cell in the summary, beside the current one,
    with the fields that changed (other -> current)."""
    from harness import report
    res, _ = reproduced
    copy = tmp_path / "res"
    shutil.copytree(res / "records", copy / "records")
    old = copy / store.VARIANTS / "0123456789abcdef" / "records" / "ml-100k" / "gru4rec"
    shutil.copytree(res / "records" / "ml-100k" / "gru4rec", old)
    hr = []
    for path in sorted(old.glob("validation/seed*.json")):
        rec = json.loads(path.read_text())
        rec["config"]["train"]["lr"] = 0.5
        rec["config"]["model"]["gone"] = 3
        rec["test"]["hr@20"] = 0.25 + 0.1 * len(hr)
        rec["val"]["ndcg@20"] = 0.125
        hr.append(rec["test"]["hr@20"])
        path.write_text(json.dumps(rec))
    now = [json.loads(p.read_text())["val"]["ndcg@20"] for p in sorted(
        (res / "records" / "ml-100k" / "gru4rec").glob("validation/seed*.json"))]
    text = report.render(copy).split("## Other configs' records")[1]
    row = next(line for line in text.splitlines() if "| gru4rec" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    lr = json.loads(store.record_path(res, "ml-100k", "gru4rec", "validation", 0).read_text())[
        "config"]["train"]["lr"]
    assert cells[2] == "0123456789abcdef" and cells[3] == "2"
    assert cells[4] == "30.00 ± 7.07" and cells[6] == "12.50 ± 0.00" and cells[7] == "2"
    assert cells[10] == report.format_mean_std(now)  # the current config's, to choose by
    assert cells[11] == f"gone 3 → —; lr 0.5 → {lr}"


def test_summary_sets_each_stopping_check_beside_the_run_it_checks(reproduced, tmp_path):
    """A seed run again with a later stop is compared with the record of the same seed and
    config but for its stopping settings, the latest-stopping one where several are; a later
    state is measured in the earlier config's seed std, and a record that differs in anything
    else is no base."""
    from harness import report
    res, _ = reproduced
    copy = tmp_path / "res"
    shutil.copytree(res / "records", copy / "records")
    seeds = {s: json.loads(store.record_path(res, "ml-100k", "gru4rec", "validation", s).read_text())
             for s in (0, 1)}
    patience = seeds[1]["config"]["train"]["patience"]

    def put(root: Path, rec: dict, **train) -> None:
        rec = json.loads(json.dumps(rec))
        rec["config"]["train"].update(train)
        path = store.record_path(root, "ml-100k", "gru4rec", "validation", rec["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))

    # an earlier-stopping config of the same seed, set aside: not the base (the current stops later)
    put(copy / store.VARIANTS / "00000000000000aa", seeds[1], patience=patience - 5)
    cut = json.loads(json.dumps(seeds[1]))
    cut["selected_epoch"] += 7
    cut["epochs_run"] += 30
    cut["val"]["ndcg@20"] += 0.001
    put(copy / "checks" / "patience60", cut, patience=patience + 50)
    put(copy / "checks" / "patience60", seeds[0], patience=patience + 50)  # the same state
    put(copy / "checks" / "patience90", seeds[0], patience=patience + 50, lr=0.5)  # another config
    put(copy / "checks" / "reproduction", seeds[1], patience=patience + 50)  # not a stopping check

    text = report.render(copy).split("## Early-stopping checks")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if "| gru4rec" in line]
    assert [r[2] for r in rows] == ["0", "1"]
    same, later = rows
    assert same[3] == "current" and same[4] == f"patience {patience} → {patience + 50}"
    assert same[5] == "checks/patience60" and same[-1] == "the same state"
    old = seeds[1]
    assert later[6] == (f"{old['selected_epoch']}/{old['epochs_run']} → "
                        f"{old['selected_epoch'] + 7}/{old['epochs_run'] + 30}")
    v = 100 * old["val"]["ndcg@20"]
    assert later[7] == f"{v:.3f} → {v + 0.1:.3f}"
    std = 100 * np.std([seeds[s]["val"]["ndcg@20"] for s in (0, 1)], ddof=1)
    assert later[-1] == f"a later state: +0.100 points ({0.1 / std:+.1f} × the 2 seeds' std, {std:.3f})"


def test_a_tuning_trial_run_on_with_a_later_stop_is_checked_against_that_trial(reproduced,
                                                                              tmp_path):
    """A trial the rule did not choose, run again with a later stop, is set beside the trial's
    own record (not the row's), its gain scaled by the row's seeds; a check of a learning rate
    no trial and no row has stays without a base."""
    from harness import report
    res, _ = reproduced
    copy = tmp_path / "res"
    shutil.copytree(res / "records", copy / "records")
    seeds = [json.loads(store.record_path(res, "ml-100k", "gru4rec", "validation", s).read_text())
             for s in (0, 1)]
    patience = seeds[0]["config"]["train"]["patience"]
    trial = copy / "tuning" / "ml-100k" / "gru4rec" / "lr=0.25,weight_decay=1e-6"

    def put(root: Path, rec: dict, selected: int = 0, gain: float = 0.0, **train) -> dict:
        rec = json.loads(json.dumps(rec))
        rec["config"]["train"].update(train)
        rec["selected_epoch"] += selected
        rec["epochs_run"] += selected
        rec["val"]["ndcg@20"] += gain
        path = store.record_path(root, "ml-100k", "gru4rec", "validation", rec["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
        return rec

    base = put(trial, seeds[0], selected=3, gain=-0.004, lr=0.25)
    put(copy / "checks" / "patience60", seeds[0], selected=40, gain=0.002, lr=0.25,
        patience=patience + 50)
    put(copy / "checks" / "patience60", seeds[1], lr=0.125, patience=patience + 50)  # no base

    text = report.render(copy).split("## Early-stopping checks")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if "| gru4rec" in line]
    assert len(rows) == 1
    (row,) = rows
    assert row[2] == "0" and row[3] == "tuning/ml-100k/gru4rec/lr=0.25,weight_decay=1e-6"
    assert row[6].startswith(f"{base['selected_epoch']}/{base['epochs_run']} → ")
    v = 100 * base["val"]["ndcg@20"]
    assert row[7] == f"{v:.3f} → {v + 0.6:.3f}"
    std = 100 * np.std([s["val"]["ndcg@20"] for s in seeds], ddof=1)
    assert row[-1] == f"a later state: +0.600 points ({0.6 / std:+.1f} × the row's 2 seeds' std, {std:.3f})"


def test_figures_draw_the_validation_curves_and_say_what_is_missing(reproduced, capsys):
    from harness import figures
    res, _ = reproduced
    assert figures.main(["--results-dir", str(res)]) == 0
    for ext in ("png", "pdf"):
        assert (res / "figures" / f"val-curves.{ext}").stat().st_size > 1000
    err = capsys.readouterr().err
    assert "run python -m harness.guidance" in err and "run python -m harness.sampling" in err
    curves = figures.curves(res)
    assert set(curves["ml-100k"]) == {"gru4rec", "dreamrec"}
    assert sorted(curves["ml-100k"]["dreamrec"]) == [0, 1, 2]  # --quick: 3 epochs, each evaluated
    assert all(len(v) == 2 for v in curves["ml-100k"]["dreamrec"].values())  # two seeds


def test_validation_curves_give_a_model_one_colour_in_every_panel(tmp_path, monkeypatch):
    from harness import figures, store

    data = {"ml-100k": {"sasrec": {0: [0.1]}, "dreamrec": {0: [0.02]}},
            "zhihu": {"gru4rec": {0: [0.02]}, "sasrec": {0: [0.03]}, "dreamrec": {0: [0.01]}}}
    saved = []
    monkeypatch.setattr(store, "save_figure", lambda fig, stem: saved.append(fig))
    figures.plot_curves(data, tmp_path / "curves")
    colours = {}
    for ax in saved[0].axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label().split(" (")[0], set()).add(line.get_color())
    assert set(colours) == {"GRU4Rec", "SASRec", "DreamRec"}
    assert all(len(c) == 1 for c in colours.values())  # the same colour in both panels
    assert len({c for cs in colours.values() for c in cs}) == 3  # and a different one per model


def test_validation_curves_have_one_legend_below_the_panels(tmp_path, monkeypatch):
    from harness import figures, store

    data = {"ml-100k": {"sasrec": {0: [0.1, 0.2]}, "dreamrec": {0: [0.02]}},
            "zhihu": {"sasrec": {0: [0.03] * 5}, "dreamrec": {0: [0.01]}}}
    saved = []
    monkeypatch.setattr(store, "save_figure", lambda fig, stem: saved.append(fig))
    figures.plot_curves(data, tmp_path / "curves")
    fig = saved[0]
    assert all(ax.get_legend() is None for ax in fig.axes)  # no legend over any panel's curves
    (legend,) = fig.legends
    # each model once, in the paper's order, with the range of its seed counts over the panels
    assert [t.get_text() for t in legend.get_texts()] == ["SASRec (2-5 seeds)", "DreamRec (1 seed)"]


def test_figures_without_records_is_an_error(tmp_path, capsys):
    from harness import figures
    assert figures.main(["--results-dir", str(tmp_path)]) == 2
    assert "no records to draw from" in capsys.readouterr().err


def test_run_time_names_each_records_devices_and_adds_every_stretch_of_a_resumed_run(tmp_path):
    from harness.table1 import timing

    def put(model, seed, wall):
        store.write_record(store.record_path(tmp_path, "yc", model, "validation", seed),
                           {"schema": store.SCHEMA, "status": "ok", "seed": seed, "device": "cpu",
                            "wall": wall}, None)

    put("dreamrec", 0, {"total_s": 600.0, "train_s": 1200.0, "eval_s": 600.0, "resumed": True,
                        "segments": [{"device": "cuda", "first_epoch": 0, "last_epoch": 54},
                                     {"device": "cpu", "first_epoch": 55, "last_epoch": 59}]})
    put("gru4rec", 0, {"total_s": 120.0, "train_s": 100.0, "eval_s": 10.0, "resumed": False})
    put("gru4rec", 1, {"total_s": 240.0, "train_s": 200.0, "eval_s": 20.0, "resumed": False})
    text = timing(tmp_path, ["yc"], ["gru4rec", "dreamrec"])
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
            for line in text.splitlines() if line.startswith("| yc")}
    # the resumed run counts both stretches (train + eval), not its last process's 10 minutes
    assert rows["DreamRec"] == ["cuda+cpu", "1", "30.0 ± 0.0", "30"]
    assert rows["GRU4Rec"] == ["cpu", "2", "3.0 ± 1.4", "6"]
    # only CPU runs enter the two-cores wall-time estimate
    assert "- yc: 6 minutes of CPU runs in all" in text and "cuda+cpu: the run trained" in text


def test_runs_start_longest_first_from_earlier_records(tmp_path):
    from harness.reproduce_table1 import Task, longest_first
    here, shipped = tmp_path / "here", tmp_path / "shipped"

    def put(res, model, seed, minutes):
        store.write_record(store.record_path(res, "zhihu", model, "validation", seed),
                           {"schema": store.SCHEMA, "status": "ok", "seed": seed,
                            "wall": {"total_s": 60.0 * minutes}}, None)

    put(here, "sasrec", 0, 3.0)
    put(shipped, "sasrec", 0, 30.0)  # the results folder's own records come first
    put(shipped, "diffrec", 0, 20.0)
    put(shipped, "diffrec", 1, 30.0)  # mean 25
    put(shipped, "gru4rec", 0, 2.0)
    tasks = [Task("zhihu", m, s) for m in ("gru4rec", "sasrec", "mymodel", "diffrec")
             for s in (0, 1)]
    order = [t.name for t in longest_first(tasks, [here, shipped])]
    assert order == ["mymodel/zhihu/seed0", "mymodel/zhihu/seed1",  # never timed: first
                     "diffrec/zhihu/seed0", "diffrec/zhihu/seed1",
                     "sasrec/zhihu/seed0", "sasrec/zhihu/seed1",
                     "gru4rec/zhihu/seed0", "gru4rec/zhihu/seed1"]


def test_the_reading_and_the_readme_block_follow_the_records(reproduced, tmp_path, capsys):
    from harness import table1
    res, _ = reproduced
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nintro\n")
    # a README without the markers: one-line error, nothing written, not even the tables
    (res / "table1.md").unlink()
    assert main([*SMALL, "--render-only", "--readme", str(readme), "--results-dir", str(res)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --readme") and err.count("\n") == 1 and "table1:begin" in err
    assert readme.read_text() == "# Project\n\nintro\n" and not (res / "table1.md").exists()

    readme.write_text(f"# Project\n\n{table1.README_BEGIN}\nold text\n{table1.README_END}\n\nafter\n")
    assert main([*SMALL, "--render-only", "--readme", str(readme), "--results-dir", str(res)]) == 0
    text = readme.read_text()
    assert "old text" not in text and text.endswith(f"{table1.README_END}\n\nafter\n")
    rows = list(csv.DictReader((res / "table1.csv").open()))
    hr = {r["model"]: float(r["mean_pct"]) for r in rows
          if r["protocol"] == "validation" and r["metric"] == "hr@20"}
    first, second = sorted(hr, key=lambda m: -hr[m])
    label = {"gru4rec": "GRU4Rec", "dreamrec": "DreamRec"}
    # the reading ranks the models as the records do, and the same reading is in table1.md
    line = next(x for x in text.splitlines() if x.startswith("- **ml-100k**"))
    assert line.index(label[first]) < line.index(label[second])
    assert f"{label[first]} {hr[first]:.2f}" in line
    assert "DreamRec ranks " + ("1" if first == "dreamrec" else "2") + " of 2" in text
    assert "Selection gap, published minus validation-selected" in text
    assert line in (res / "table1.md").read_text()
    from harness.data import load_dataset
    from harness.evaluate import most_popular
    s = load_dataset("ml-100k", None)
    ref = most_popular(s.train, s.test, s.n_items).metrics
    assert (f"scores HR@20 {100 * ref['hr@20']:.2f}, NDCG@20 {100 * ref['ndcg@20']:.2f}" in text)


def test_the_reading_splits_each_models_hits_between_never_trained_targets_and_the_rest():
    import numpy as np
    from harness import table1

    def cell(model, hits):
        c = table1.Cell("d", model, seeds=[0])
        c.row_means["hr@20"] = np.asarray(hits, dtype=float)
        return c

    cells = {("d", "dreamrec"): cell("dreamrec", [1, 1, 0, 0, 0]),
             ("d", "gru4rec"): cell("gru4rec", [0, 0, 1, 1, 0])}
    t = table1.Table("validation", ["d"], ["gru4rec", "dreamrec"], cells, {}, {},
                     cold_rows={"d": np.array([True, True, False, False, False])})
    text = table1.cold_rows_text(t, "d", ["dreamrec", "gru4rec"])
    assert text == ("40.0 % of the test rows have a target that never occurs as a training target; "
                    "HR@20 on those rows / on the others: DreamRec 100.00 / 0.00, "
                    "GRU4Rec 0.00 / 66.67.")
    t.cold_rows["d"] = np.zeros(5, dtype=bool)
    assert table1.cold_rows_text(t, "d", ["dreamrec"]) == ""  # no such rows, no statement


def _cell(dataset, model, hr, ndcg=None, rows=None):
    """A cell with the given per-seed HR@20 (and NDCG@20, default the same) and per-row means."""
    c = table1.Cell(dataset, model, seeds=list(range(len(hr))))
    c.values = {"hr@20": list(hr), "ndcg@20": list(ndcg if ndcg is not None else hr)}
    if rows is not None:
        c.row_means = {"hr@20": np.asarray(rows, float), "ndcg@20": np.asarray(rows, float)}
    return c


def test_a_column_with_one_model_is_not_ranked():
    """yc with DreamRec alone: no bold, no underline, no rank in the CSV, no ranking sentence."""
    cells = {("yc", "dreamrec"): _cell("yc", "dreamrec", [0.02, 0.03])}
    t = table1.Table("validation", ["yc"], ["gru4rec", "dreamrec"], cells, {}, {},
                     references={"yc": {"hr@20": 0.01, "ndcg@20": 0.005}})
    md = table1.markdown(t)
    assert "2.50 ± 0.71" in md and "**" not in md.split("\n\n")[0] and "<u>" not in md
    assert "fewer than two models is not ranked" in md
    assert r"\textbf" not in table1.latex_body(t) and r"\underline" not in table1.latex_body(t)
    rows = list(csv.DictReader(io.StringIO(table1.csv_text([t]))))
    assert [r["rank"] for r in rows if r["model"] == "dreamrec"] == ["", ""]
    text = table1.reading([t])
    assert "best first" not in text and "every model is above it" not in text
    assert "DreamRec 2.50, the only model with results here (not ranked)" in text
    assert "DreamRec is above it in HR@20" in text
    # a second model makes it a ranking
    cells[("yc", "gru4rec")] = _cell("yc", "gru4rec", [0.01, 0.012])
    md = table1.markdown(t)
    assert "**2.50 ± 0.71**" in md and "<u>1.10 ± 0.14</u>" in md
    assert "best first: DreamRec 2.50, GRU4Rec 1.10" in table1.reading([t])


def test_a_one_seed_cell_among_cells_of_several_seeds_is_shown_but_not_ranked():
    """A row whose new config has only its tuning trial yet: its one draw is highest, but it is
    neither bold nor the best baseline until its seeds land."""
    cells = {("d", "dreamrec"): _cell("d", "dreamrec", [0.010, 0.012]),
             ("d", "gru4rec"): _cell("d", "gru4rec", [0.020, 0.022]),
             ("d", "sasrec"): _cell("d", "sasrec", [0.050])}
    t = table1.Table("validation", ["d"], ["gru4rec", "sasrec", "dreamrec"], cells, {}, {})
    md = table1.markdown(t)
    assert "5.00 (1 seed)" in md and "**5.00" not in md and "<u>5.00" not in md
    assert "**2.10 ± 0.14**" in md and "<u>1.10 ± 0.14</u>" in md
    assert "nor is a one-seed cell among cells of several seeds" in md
    assert table1.best_baseline(cells, "d", "hr@20", t.models) == "gru4rec"
    rows = list(csv.DictReader(io.StringIO(table1.csv_text([t]))))
    sas = [r for r in rows if r["model"] == "sasrec"]
    assert [r["rank"] for r in sas] == ["", ""] and "not ranked" in sas[0]["note"]
    assert [r["best_baseline"] for r in rows if r["model"] == "dreamrec"] == ["gru4rec"] * 2
    text = table1.reading([t])
    assert "best first: GRU4Rec 2.10, DreamRec 1.10." in text
    assert "Not ranked, one seed so far: SASRec 5.00." in text
    assert "DreamRec ranks 2 of 2" in text
    # its seeds land: it is ranked, and the best baseline
    cells[("d", "sasrec")] = _cell("d", "sasrec", [0.050, 0.052])
    assert "**5.10 ± 0.14**" in table1.markdown(t)
    assert table1.best_baseline(cells, "d", "hr@20", t.models) == "sasrec"
    # a table of one-seed cells only (a quick look) is ranked as before
    one = {k: _cell("d", k[1], c.values["hr@20"][:1]) for k, c in cells.items()}
    assert "**5.00 (1 seed)**" in table1.markdown(
        table1.Table("validation", ["d"], t.models, one, {}, {}))


def test_the_selection_gap_is_called_a_lower_bound():
    cells = {("d", "dreamrec"): _cell("d", "dreamrec", [0.02, 0.03]),
             ("d", "gru4rec"): _cell("d", "gru4rec", [0.01, 0.012])}
    pub_cells = {k: _cell("d", k[1], [v + 0.01 for v in c.values["hr@20"]]) for k, c in cells.items()}
    val = table1.Table("validation", ["d"], ["gru4rec", "dreamrec"], cells, {}, {})
    pub = table1.Table("published", ["d"], ["gru4rec", "dreamrec"], pub_cells, {}, {})
    for t in (val, pub):
        assert "a lower bound on what selecting on test adds" in table1.markdown(t)
        assert "official DreamRec code trains 1,000 epochs" in table1.markdown(t)
    line = next(x for x in table1.reading([val, pub]).splitlines() if "Selection gap" in x)
    assert "(a lower bound: these runs stop early on validation" in line and "DreamRec +1.00" in line



def test_a_row_trained_without_early_stopping_is_named_beside_the_selection_gap():
    """ml-100k AdaRanker trains its 1,000 epochs (patience 1000): its published protocol reads
    every epoch, as the official code does, so the notes and the reading say so for that row
    and only that row."""
    cells = {("d", "dreamrec"): _cell("d", "dreamrec", [0.02, 0.03]),
             ("d", "gru4rec"): _cell("d", "gru4rec", [0.01, 0.012])}
    pub_cells = {k: _cell("d", k[1], [v + 0.01 for v in c.values["hr@20"]]) for k, c in cells.items()}
    val = table1.Table("validation", ["d"], ["gru4rec", "dreamrec"], cells, {}, {})
    pub = table1.Table("published", ["d"], ["gru4rec", "dreamrec"], pub_cells, {}, {})
    assert "without early stopping" not in table1.markdown(val)
    assert "without early stopping" not in table1.reading([val, pub])
    cells[("d", "gru4rec")].full_length = [1000, 1000]
    assert ("Trained without early stopping, every run to its max_epochs (its published protocol "
            "reads every epoch's test, as the official code does, so no lower bound): "
            "d GRU4Rec (1000 epochs).") in table1.markdown(val)
    line = next(x for x in table1.reading([val, pub]).splitlines() if "Selection gap" in x)
    assert "; without early stopping, GRU4Rec trains all 1000 epochs)" in line
    assert "DreamRec trains" not in line


def test_a_record_trained_without_early_stopping_marks_its_cell(reproduced, tmp_path):
    """Reading the records: a record whose patience outlasts its max_epochs puts its epochs in
    its cell's full_length; one that can stop early does not."""
    res, _ = reproduced
    copy = tmp_path / "res"
    shutil.copytree(res / "records", copy / "records")
    path = store.record_path(copy, "ml-100k", "gru4rec", "validation", 1)
    rec = json.loads(path.read_text())

    def full_length(patience: int) -> list[int]:
        rec["config"]["train"].update(patience=patience, eval_every=1, max_epochs=1000)
        path.write_text(json.dumps(rec))
        return table1.load_cells(copy, "validation", ["ml-100k"], ["gru4rec"])[
            ("ml-100k", "gru4rec")].full_length

    stops = full_length(10)  # seed 0 as the fixture made it (its 3 epochs may outlast it)
    assert full_length(1000) == stops + [1000]  # seed 0's, then seed 1's
    assert 1000 not in full_length(999)
    assert store.fixed_epochs({"patience": 200, "eval_every": 5, "max_epochs": 1000}) == 1000
    assert store.fixed_epochs({"patience": 1000}) is None

def test_the_dagger_test_takes_the_sequence_as_its_unit():
    """DreamRec wins 50 rows of one long sequence, the baseline five one-row sequences: over rows
    the difference is overwhelming, over the six sequences p = 14/64 (no †); without the test
    rows' sequences the notes say so and † is left out."""
    rows_a = [1.0] * 50 + [0.0] * 5
    rows_b = [0.0] * 50 + [1.0] * 5
    cells = {("d", "dreamrec"): _cell("d", "dreamrec", [0.9, 0.92, 0.91], rows=rows_a),
             ("d", "gru4rec"): _cell("d", "gru4rec", [0.1, 0.09, 0.11], rows=rows_b)}
    t = table1.Table("validation", ["d"], ["gru4rec", "dreamrec"], cells,
                     table1.compare(cells, ["d"], ["gru4rec", "dreamrec"]), {})
    c = t.comparisons[("d", "hr@20", "gru4rec")]
    assert np.isnan(c.seq_perm_p) and c.welch_p < 1e-4
    assert "d: no † test: its test rows' sequences come from its files" in table1.markdown(t)
    assert t.marker("d", "hr@20") == "*"
    t.set_data({}, {}, {"d": np.array([0] * 50 + [1, 2, 3, 4, 5])})
    c = t.comparisons[("d", "hr@20", "gru4rec")]
    assert c.seq_perm_p == pytest.approx(14 / 64) and c.seq_perm_p_holm == pytest.approx(14 / 64)
    assert t.marker("d", "hr@20") == "*" and "no † test" not in table1.markdown(t)
    row = next(r for r in csv.DictReader(io.StringIO(table1.csv_text([t])))
               if r["model"] == "gru4rec" and r["metric"] == "hr@20")
    assert float(row["seq_perm_p"]) == pytest.approx(14 / 64)
    assert "sign flips over test sequences 0.22" in table1.reading([t])


def test_references_keep_the_test_sequences(tmp_path):
    cold = np.array([True, False, False, True, False])
    sequence = np.array([0, 0, 0, 1, 1])
    table1.save_references(tmp_path, "d", "abc", {"hr@20": 0.5}, cold, sequence)
    obj = json.loads(table1.reference_path(tmp_path, "d").read_text())
    assert obj["test_sequences"] == {"n_rows": 5, "rows_per_sequence": "3 2"}
    popular, kept_cold, kept_seq = table1.load_references(tmp_path, "d", "abc")
    np.testing.assert_array_equal(kept_seq, sequence)
    np.testing.assert_array_equal(kept_cold, cold)
    assert table1.load_references(tmp_path, "d", "other") is None  # other data, other rows
    del obj["test_sequences"]  # a file written before the sequences were kept
    table1.reference_path(tmp_path, "d").write_text(json.dumps(obj))
    assert table1.load_references(tmp_path, "d", "abc")[2] is None
    with pytest.raises(ValueError, match="not 0, 1, ... with each sequence's rows together"):
        table1.save_references(tmp_path, "d", "abc", {}, cold, np.array([0, 1, 0, 1, 1]))


def test_the_authors_preset_row_is_shown_unranked_and_untested_under_the_tuned_rows():
    """The preset row beats every tuned row here, yet takes no bold, no rank and no test; a
    dataset without a preset file shows "—" in it."""
    cells = {(d, m): _cell(d, m, hr) for d in ("zhihu", "ml-100k") for m, hr in
             (("gru4rec", [0.02, 0.022]), ("dreamrec", [0.01, 0.012]))}
    cells[("zhihu", "dreamrec.authors")] = _cell("zhihu", "dreamrec.authors", [0.05, 0.06])
    t = table1.Table("validation", ["zhihu", "ml-100k"], ["gru4rec", "dreamrec"], cells, {}, {},
                     extras=["dreamrec.authors"])
    assert table1.preset_file("dreamrec.authors", "zhihu").is_file()
    assert not table1.preset_file("dreamrec.authors", "ml-100k").exists()
    md = table1.markdown(t).split("\n\n")[0]
    row = next(x for x in md.splitlines() if x.startswith("| DreamRec, authors' preset"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[1] == "5.50 ± 0.71" and cols[2] == "2.26 ± 0.07"  # ours, then the paper's DreamRec
    assert cols[5] == "—" and "**2.10 ± 0.14**" in md  # ml-100k: no preset; gru4rec stays best
    assert md.index("| DreamRec  ") < md.index("| DreamRec, authors'") < md.index("*DreamRec vs")
    body = table1.latex_body(t)
    assert body.index(r"\midrule", body.index("DreamRec &")) < body.index("DreamRec, authors'")
    rows = [r for r in csv.DictReader(io.StringIO(table1.csv_text([t])))
            if r["model"] == "dreamrec.authors"]
    assert [(r["dataset"], r["rank"], r["welch_p"]) for r in rows] == [("zhihu", "", "")] * 2
    assert "not ranked" in rows[0]["note"]
    assert "DreamRec, authors' preset: HR@20 5.50 (the DreamRec row: 1.10)" in table1.reading([t])


def test_a_preset_row_that_is_the_tuned_config_shows_only_that_configs_records(tmp_path,
                                                                              monkeypatch):
    """The rule comes to choose the published setting before it has run: the model's records/
    still hold the config before, which the model's row shows, marked; the preset row, whose
    records would go to the same folder, shows none of them."""
    import harness.models

    configs = tmp_path / "configs"
    shutil.copytree(harness.models.CONFIG_DIR, configs)
    monkeypatch.setattr(harness.models, "CONFIG_DIR", configs)
    monkeypatch.setattr(table1, "CONFIG_DIR", configs)
    own = configs / "ml-100k" / "dreamrec.toml"
    preset = configs / "ml-100k" / "dreamrec.authors.toml"
    tiny = own.read_text()  # the configured settings themselves, small: records go to records/
    for key, value in (("timesteps", "5"), ("hidden_size", "16"), ("batch_size", "1024"),
                       ("max_epochs", "2"), ("eval_every", "1")):
        tiny = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", tiny)
    own.write_text(tiny)
    preset.write_text(re.sub(r"(?m)^lr = .*$", "lr = 0.004", tiny))
    args = ["--datasets", "ml-100k", "--models", "dreamrec,dreamrec.authors", "--seeds", "1",
            "--device", "cpu", "--jobs", "1", "--results-dir", str(tmp_path / "res")]
    assert main(args) == 0
    before = json.loads(store.record_path(tmp_path / "res", "ml-100k", "dreamrec", "validation",
                                          0).read_text())
    chosen = re.sub(r"(?m)^lr = .*$", "lr = 0.005", tiny)
    own.write_text(chosen)
    preset.write_text(chosen)
    assert main([*args, "--render-only"]) == 0
    lines = (tmp_path / "res" / "table1.md").read_text().splitlines()
    shown = f"{100 * before['test']['hr@20']:.2f}"
    row = next(x for x in lines if x.startswith("| DreamRec "))
    assert shown in row and "°" in row
    row = next(x for x in lines if x.startswith("| DreamRec, authors'"))
    assert shown not in row and "not run" in row


def test_a_reproduction_runs_the_preset_row_apart_and_only_once_when_it_is_the_config(
        tmp_path, monkeypatch):
    """Into an empty folder: the preset's records go to variants/<its hash>/, the tuned config's
    to records/, both rows render; with the preset equal to the config, nothing runs twice."""
    import harness.models
    from harness.run import recorded_home

    configs = tmp_path / "configs"
    shutil.copytree(harness.models.CONFIG_DIR, configs)
    monkeypatch.setattr(harness.models, "CONFIG_DIR", configs)
    monkeypatch.setattr(table1, "CONFIG_DIR", configs)
    own = (configs / "ml-100k" / "dreamrec.toml").read_text()
    preset = configs / "ml-100k" / "dreamrec.authors.toml"
    preset.write_text(re.sub(r"(?m)^lr = .*$", "lr = 0.004", own))
    args = ["--datasets", "ml-100k", "--models", "dreamrec,dreamrec.authors", "--seeds", "1",
            "--quick",
            "--device", "cpu", "--jobs", "2", "--set", "dreamrec.timesteps=5",
            "--set", "dreamrec.hidden_size=16", "--set", "batch_size=1024"]
    res = tmp_path / "res"
    assert main([*args, "--results-dir", str(res)]) == 0
    main_rec = json.loads(store.record_path(res, "ml-100k", "dreamrec", "validation", 0).read_text())
    (apart,) = (res / "variants").glob("*/records/ml-100k/dreamrec/validation/seed0.json")
    preset_rec = json.loads(apart.read_text())
    assert main_rec["config"]["train"]["lr"] != 0.004 and preset_rec["config"]["train"]["lr"] == 0.004
    assert apart.parents[4].name == preset_rec["config_hash"]
    spec = harness.models.get_model("dreamrec")
    found = recorded_home(spec, "ml-100k", *spec.configs("ml-100k", {"timesteps": "5",
                          "hidden_size": "16", "batch_size": "1024", "max_epochs": "3",
                          "eval_every": "1"}, preset), res)
    assert found == apart.parents[4]  # found from the records alone (a render without the data)
    md = (res / "table1.md").read_text().split("\n\n")
    row = next(x for x in "\n\n".join(md).splitlines() if x.startswith("| DreamRec, authors'"))
    assert f"{100 * preset_rec['test']['hr@20']:.2f}" in row
    assert "chose the published setting itself" not in (res / "table1.md").read_text()
    # the preset equal to the config: one run, one row of the same records
    preset.write_text(own)
    res2 = tmp_path / "res2"
    assert main([*args, "--results-dir", str(res2)]) == 0
    (inv,) = [json.loads(x) for x in (res2 / "logs" / "invocations.jsonl").read_text().splitlines()]
    assert inv["runs"] == 1 and not (res2 / "variants").exists()
    assert "(the same config and records as the DreamRec row)" in (res2 / "table1.md").read_text()
    assert ("DreamRec, authors' preset: on ml-100k the tuning rule chose the published setting "
            "itself, so the two rows are one config") in (res2 / "table1.md").read_text()


def test_the_beyond_block_is_tested_against_the_best_baseline_and_never_ranked():
    """Two generative rows under the paper's: PreferDiff beats the best baseline (GRU4Rec here)
    on 12 of 12 sequences, DiffuRec ties; neither takes bold or a rank, each is tested against
    the best baseline with Holm across the block; the paper's columns are empty for them."""
    seq = np.arange(12)
    cells = {("d", "gru4rec"): _cell("d", "gru4rec", [0.20, 0.21, 0.19], rows=[0.2] * 12),
             ("d", "caser"): _cell("d", "caser", [0.10, 0.11, 0.09], rows=[0.1] * 12),
             ("d", "dreamrec"): _cell("d", "dreamrec", [0.05, 0.06, 0.04], rows=[0.05] * 12),
             ("d", "preferdiff"): _cell("d", "preferdiff", [0.60, 0.61, 0.59], rows=[0.6] * 12),
             ("d", "diffurec"): _cell("d", "diffurec", [0.20, 0.22, 0.18], rows=[0.2] * 12)}
    models = ["gru4rec", "caser", "dreamrec"]
    t = table1.Table("validation", ["d"], models, cells, table1.compare(cells, ["d"], models), {},
                     extras=["preferdiff", "diffurec"])
    t.set_data({}, {}, {"d": seq})
    assert t.rows == models + ["preferdiff", "diffurec"]
    c = t.beyond_comparisons[("d", "hr@20", "preferdiff")]
    assert c.baseline == "gru4rec" and c.seq_perm_p == pytest.approx(2 / 2 ** 12)
    assert c.seq_perm_p_holm == pytest.approx(2 * 2 / 2 ** 12)  # Holm over the block's two rows
    assert t.beyond_marker("d", "hr@20", "preferdiff") == "*†"
    assert t.beyond_marker("d", "hr@20", "diffurec") == ""
    md = table1.markdown(t).split("\n\n")[0]
    assert "**20.00 ± 1.00**" in md and "**60" not in md  # GRU4Rec stays the column's best
    lines = md.splitlines()
    title = next(i for i, x in enumerate(lines) if x.startswith("| *Beyond the paper*"))
    pref = next(x for x in lines if x.startswith("| PreferDiff"))
    assert lines.index(pref) == title + 1 and "60.00 ± 1.00*†" in pref
    assert [c.strip() for c in pref.strip("|").split("|")][2] == "—"  # no paper cell
    rows = [r for r in csv.DictReader(io.StringIO(table1.csv_text([t]))) if r["metric"] == "hr@20"]
    pd = next(r for r in rows if r["model"] == "preferdiff")
    assert pd["block"] == "beyond" and pd["rank"] == "" and pd["best_baseline"] == "gru4rec"
    assert float(pd["rel_improvement_vs_best_baseline"]) == pytest.approx(2.0)
    assert next(r for r in rows if r["model"] == "caser")["block"] == "paper"
    body = table1.latex_body(t)
    assert r"\multicolumn{3}{l}{\emph{Beyond the paper}}" in body
    assert body.index("DreamRec &") < body.index("Beyond the paper") < body.index("PreferDiff &")
    text = table1.reading([t])
    assert "Beyond the paper: PreferDiff HR@20 60.00; HR@20 +200.0 % against GRU4Rec, " \
           "significant in both tests" in text


@pytest.mark.parametrize("row", sorted(table1.CONFIG_ROWS))
def test_a_config_rows_run_reads_its_own_file(row):
    import argparse
    from pathlib import Path

    from harness.reproduce_table1 import Task, run_argv

    args = argparse.Namespace(protocol="both", device="cpu", results_dir=Path("r"), data_dir=None)
    argv = run_argv(Task("zhihu", row, 0), args, 1, [])
    assert argv[argv.index("--model") + 1] == table1.row_model(row)
    assert argv[argv.index("--config") + 1] == str(table1.preset_file(row, "zhihu"))
    assert table1.preset_file(row, "zhihu").is_file()


def test_the_notes_say_which_propensity_the_ips_records_use():
    cells = {("a", "ips"): _cell("a", "ips", [0.1, 0.1]), ("b", "ips"): _cell("b", "ips", [0.1, 0.1]),
             ("c", "ips"): _cell("c", "ips", [0.1, 0.1])}
    cells[("a", "ips")].model_configs = [{"propensity": "popularity", "clip_quantile": 0.1}]
    cells[("b", "ips")].model_configs = [{"propensity": "sequential", "clip_quantile": 0.1}]
    cells[("c", "ips")].model_configs = [{"propensity_clip": 0.01}]  # before the redesign
    t = table1.Table("validation", ["a", "b", "c"], ["ips", "dreamrec"], cells, {}, {})
    note = next(n for n in table1.footnotes(t) if n.startswith("‡"))
    assert note.endswith("IPS's propensity in these records: a popularity, b sequential, c "
                         "sequential, the earlier design (a fixed clip of 0.01).")


def test_popularity_groups_put_never_trained_targets_first_and_never_split_a_count():
    counts = np.array([0, 0, 1, 1, 1, 1, 2, 3, 5, 8, 13, 21, 40, 40])
    groups, labels = table1.popularity_groups(counts)
    assert groups[:2].tolist() == [0, 0] and labels[0] == "never a training target"
    for c in np.unique(counts):
        assert len(set(groups[counts == c].tolist())) == 1  # a count's rows share a group
    assert np.all(np.diff(groups) >= 0)  # more popular targets, higher groups
    assert set(groups.tolist()) <= set(range(6)) and groups.max() == 5
    for g in range(1, 6):
        inside = counts[groups == g]
        if inside.size:
            assert labels[g] in (f"{inside.min()}", f"{inside.min()}–{inside.max()}")
        else:
            assert labels[g] == ""


def test_the_popularity_table_marks_where_a_generative_row_beats_the_best_classifier(tmp_path):
    # 40 one-row sequences; targets: 10 rows never trained, the others by count 1..30
    n = 40
    counts = np.array([0] * 10 + list(range(1, 31)))
    groups = table1.popularity_groups(counts)
    seq = np.arange(n)
    best = np.array([0.0] * 10 + [1.0] * 30)  # the classifier hits every trained target
    gen = np.array([1.0] * 10 + [1.0] * 30)   # the generative row also hits the cold ones
    cells = {("d", "sasrec"): _cell("d", "sasrec", [0.75, 0.75], rows=best),
             ("d", "gru4rec"): _cell("d", "gru4rec", [0.1, 0.1], rows=np.zeros(n)),
             ("d", "preferdiff"): _cell("d", "preferdiff", [1.0, 1.0], rows=gen)}
    t = table1.Table("validation", ["d"], ["gru4rec", "sasrec", "dreamrec"], cells, {}, {},
                     extras=["preferdiff"])
    assert table1.popularity_table(t, "d") == ""  # no groups, no table
    t.set_data({}, {}, {"d": seq}, {"d": groups})
    text = table1.popularity_table(t, "d")
    lines = text.splitlines()
    assert "SASRec (best classifier)" in lines[0] and "PreferDiff" in lines[0]
    never = next(x for x in lines if x.startswith("| never a training target"))
    assert "| 0.00 " in never and "100.00†" in never  # 10 sequences all one way: p = 2/1024
    assert not any("†" in x for x in lines[2:] if not x.startswith("| never"))
    assert "Where the generative rows win or lose" in table1.reading([t])
    # kept with the references, for renderings without the data
    table1.save_references(tmp_path, "d", "abc", {"hr@20": 0.5}, counts == 0, seq, groups)
    kept = table1.load_groups(tmp_path, "d", "abc")
    np.testing.assert_array_equal(kept[0], groups[0])
    assert kept[1] == groups[1] and table1.load_groups(tmp_path, "d", "other") is None
    obj = json.loads(table1.reference_path(tmp_path, "d").read_text())
    obj["test_target_groups"]["digits"] = obj["test_target_groups"]["digits"][:-1] + "9"
    table1.reference_path(tmp_path, "d").write_text(json.dumps(obj))
    assert table1.load_groups(tmp_path, "d", "abc") is None  # a damaged file is not read


def test_since_marks_the_cells_with_a_record_made_before_it():
    """A campaign rerunning rows on new code: --since marks (°) each cell with an older record,
    in Markdown and LaTeX, and the notes name them; without it nothing is marked."""
    old = _cell("d", "gru4rec", [0.01, 0.012])
    old.created = ["2026-11-28T10:00:00+00:00", "2026-12-04T10:00:00+00:00"]  # one seed old
    new = _cell("d", "sasrec", [0.02, 0.03])
    new.created = ["2026-12-04T10:00:00+00:00", "2026-12-05T01:00:00+00:00"]
    t = table1.Table("validation", ["d"], ["gru4rec", "sasrec"],
                     {("d", "gru4rec"): old, ("d", "sasrec"): new}, {}, {})
    assert "°" not in table1.markdown(t) and r"\circ" not in table1.latex_body(t)
    t.since = datetime.fromisoformat("2026-12-03T00:00:00+00:00")
    md = table1.markdown(t)
    assert "<u>1.10 ± 0.14</u>°" in md and "**2.50 ± 0.71**°" not in md
    assert "made before 2026-12-03T00:00:00+00:00 (--since)" in md
    assert "is among the cell's: d GRU4Rec." in md
    assert r"$^{\circ}$" in table1.latex_body(t)


def test_a_cell_whose_rows_config_changed_since_its_records_is_marked():
    """A config file edited after its row ran (zhihu DreamRec's patience raised to 30): its
    cell is marked (°), without --since, until the row is rerun; the preset row is read
    against its own file, and a row of the config as it is is not marked."""
    from harness.models import get_model
    from harness.reproduce_table1 import stale_cells
    from harness.run import hash_payload

    def now(model, config=None):
        spec = get_model(model)
        return store.config_hash(hash_payload(spec, "zhihu", *spec.configs("zhihu", {}, config),
                                              "abc"))

    preset = str(table1.preset_file("dreamrec.authors", "zhihu"))
    cells = {}
    for row, chash in (("sasrec", now("sasrec")), ("dreamrec", "0" * 16),
                       ("dreamrec.authors", now("dreamrec", preset))):
        cells[("zhihu", row)] = c = _cell("zhihu", row, [0.01, 0.02])
        c.data_checksum, c.config_hashes = "abc", {chash}
    cells[("zhihu", "sasrec")].config_hashes.add("1" * 16)  # one seed of another config
    t = table1.Table("validation", ["zhihu"], ["sasrec", "dreamrec"], cells, {}, {},
                     extras=["dreamrec.authors"])
    per_model = {"sasrec": [], "dreamrec": []}
    assert stale_cells(t, per_model, ["dreamrec.authors"]) == {("zhihu", "sasrec"),
                                                              ("zhihu", "dreamrec")}
    cells[("zhihu", "sasrec")].config_hashes = {now("sasrec")}
    t.stale = stale_cells(t, per_model, ["dreamrec.authors"])
    md = table1.markdown(t)
    assert md.count("<u>1.50 ± 0.71</u>°") == 2 and md.count("°") == 3  # its cells, its note
    assert "settings other than the row's config as it is now" in md
    assert "is among the cell's: zhihu DreamRec." in md and "--since" not in md
    # a --set is part of the config as it is: the records of the file's config are then stale
    assert ("zhihu", "sasrec") in stale_cells(t, {"sasrec": ["patience=31"], "dreamrec": []},
                                              ["dreamrec.authors"])


def test_since_must_be_a_time_with_a_zone(tmp_path, capsys):
    assert main(["--render-only", "--results-dir", str(tmp_path), "--since", "2026-12-03"]) == 2
    assert "needs a time zone" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
