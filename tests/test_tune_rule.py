"""The tuning rule of ``harness.tune``: which trials it runs, what it chooses, what it writes.

The trials' training is replaced by a stand-in that writes a record whose validation NDCG@20
is a known function of the trial's settings, so the rule's decisions are checked exactly.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import harness.models
from harness import run, store, tune
from harness.tune import beyond

LR = tune.PAPER_GRID["lr"]
WD = tune.PAPER_GRID["weight_decay"]


@pytest.mark.parametrize("tried, best, expect", [
    (["1e-2", "1e-3", "1e-4"], "1e-3", None),  # interior: done
    (["1e-2", "1e-3", "1e-4"], "1e-2", None),  # the paper's grid ends above 1e-2
    (["1e-2", "1e-3", "1e-4"], "1e-4", "5e-5"),  # lower edge: the next paper value
    (["1e-2", "1e-3", "1e-4", "5e-5"], "5e-5", None),  # ... until the grid ends
])
def test_learning_rate_goes_outward_from_an_edge_until_interior_or_the_grids_end(tried, best, expect):
    assert beyond(LR, tried, best) == expect


@pytest.mark.parametrize("better, expect", [("1e-6", "1e-7"), ("1e-4", "1e-3")])
def test_weight_decay_takes_the_paper_value_beyond_the_better_of_two(better, expect):
    assert beyond(WD, ["1e-6", "1e-4"], better) == expect


def fake_runs(monkeypatch, value, calls):
    """harness.run.command replaced: each trial's record, val NDCG@20 = value(settings)."""
    def command(args, progress=None):
        prep = run.prepare(args)
        train_cfg = prep.train_cfg
        if store.is_done(store.record_path(prep.home, args.dataset, args.model, "published", 0),
                         prep.chash):
            return 0  # finished: skipped, as harness.run skips it
        calls.append((train_cfg.lr, train_cfg.weight_decay))
        ndcg = value(train_cfg.lr, train_cfg.weight_decay)  # None: the training diverges
        for protocol in ("validation", "published"):
            path = store.record_path(prep.home, args.dataset, args.model, protocol, 0)
            rec = dict(prep.base, seed=0, schema=store.SCHEMA, protocol=protocol,
                       status="failed", error="training loss became nan in epoch 0")
            if ndcg is not None:
                rec.update(status="ok", error=None, selected_epoch=3,
                           val={"ndcg@20": ndcg, "hr@20": 2 * ndcg},
                           test={"ndcg@20": 0.5, "hr@20": 0.5}, wall={"total_s": 60.0})
            store.write_record(path, rec, np.zeros(3, dtype=np.int64))
        return 0 if ndcg is not None else 1
    monkeypatch.setattr(run, "command", command)


@pytest.fixture
def configs(tmp_path, monkeypatch):
    shutil.copytree(harness.models.CONFIG_DIR, tmp_path / "configs")
    monkeypatch.setattr(harness.models, "CONFIG_DIR", tmp_path / "configs")
    return tmp_path / "configs"


def test_the_rule_runs_its_stages_chooses_on_validation_and_adopts_seed0(tmp_path, configs,
                                                                          monkeypatch):
    # best learning rate at the lower edge (5e-5 tried next, best there too), weight decay
    # best at 1e-4 (so 1e-3 is tried beyond it)
    def value(lr, wd):
        return 0.1 - abs(math.log10(lr) - math.log10(5e-5)) / 100 - abs(
            math.log10(wd) + 4) / 1000
    calls = []
    fake_runs(monkeypatch, value, calls)
    res = tmp_path / "res"
    assert tune.main(["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir", str(res),
                      "--jobs", "1"]) == 0
    # lr outward; at lr 5e-5 AdamW cannot apply a decay of 1e-4 or 1e-7 (1 - lr wd rounds to 1
    # in float32): those trials would repeat (5e-5, 1e-6) bit for bit and are not trained
    assert calls == [(1e-2, 1e-6), (1e-3, 1e-6), (1e-4, 1e-6), (5e-5, 1e-6)]
    report = (res / "tuning" / "ml-100k-gru4rec.md").read_text()
    assert "Chosen by validation NDCG@20: **lr=5e-5, weight_decay=1e-6**" in report
    assert "Not trained: weight decay 1e-4, 1e-7 at lr 5e-5" in report
    assert "4 trials, 4 CPU-minutes" in report
    written = (configs / "ml-100k" / "gru4rec.toml").read_text()
    assert "lr = 5e-05" in written and "weight_decay = 1e-06" in written
    # the winning trial ran the config's own settings: its records are the config's seed 0
    prep = run.prepare(run.build_parser().parse_args(
        ["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir", str(res)]))
    for protocol in store.PROTOCOLS:
        path = store.record_path(res, "ml-100k", "gru4rec", protocol, 0)
        assert store.is_done(path, prep.chash)
        assert json.loads(path.read_text())["val"]["ndcg@20"] == pytest.approx(value(5e-5, 1e-6))
    assert "The chosen trial's records are the config's seed-0 run" in report
    # a rerun trains nothing more, chooses the same and writes the same report
    calls.clear()
    assert tune.main(["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir", str(res),
                      "--jobs", "1"]) == 0
    assert calls == []
    assert (res / "tuning" / "ml-100k-gru4rec.md").read_text() == report


def test_a_failed_trial_is_reported_with_its_records_reason_and_the_rule_goes_on(
        tmp_path, configs, monkeypatch):
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: None if lr == 1e-2 else 0.1 - abs(math.log10(lr) + 3)
              / 100 - abs(math.log10(wd) + 6) / 1000, calls)
    res = tmp_path / "res"
    tune.main(["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(res),
               "--jobs", "1", "--no-write-config"])
    report = (res / "tuning" / "ml-100k-sasrec.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| lr ") and "1e-2" in line)
    assert "failed: training loss became nan in epoch 0" in row
    assert "Chosen by validation NDCG@20: **lr=1e-3, weight_decay=1e-6**" in report
    calls.clear()  # a rerun trains nothing: the failed trial would fail again the same way
    tune.main(["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(res),
               "--jobs", "1", "--no-write-config"])
    assert calls == []
    assert (res / "tuning" / "ml-100k-sasrec.md").read_text() == report


def test_an_interior_learning_rate_stops_the_outward_search(tmp_path, configs, monkeypatch):
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - abs(math.log10(lr) + 3) / 100
              - abs(math.log10(wd) + 6) / 1000, calls)
    assert tune.main(["--model", "sasrec", "--dataset", "ml-100k", "--results-dir",
                      str(tmp_path / "res"), "--jobs", "1", "--no-write-config"]) == 0
    assert [lr for lr, _ in calls] == [1e-2, 1e-3, 1e-4, 1e-3]
    # 1e-6 was the lr stage's; 1e-7 beyond it is a no-op at lr 1e-3 (not trained)
    assert [wd for _, wd in calls][3:] == [1e-4]


def test_trials_within_one_seed_std_are_reported_as_ties(tmp_path, configs, monkeypatch):
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: {1e-2: 0.1, 1e-3: 0.1005, 1e-4: 0.05}.get(lr, 0.0)
              - abs(math.log10(wd) + 6) / 1000, calls)
    res = tmp_path / "res"
    # five recorded seeds of the tuned config whose validation NDCG@20 spreads by about 0.002,
    # and three of another config of the model (the config before, not yet set aside) that
    # spread far wider: the ties go by the tuned config's
    for seed, v in zip((5, 6, 7), (0.02, 0.2, 0.1)):
        store.write_record(store.record_path(res, "ml-100k", "sasrec", "validation", seed),
                           {"schema": store.SCHEMA, "status": "ok", "val": {"ndcg@20": v},
                            "config_hash": "x"}, np.zeros(1, dtype=np.int64))
    prep = run.prepare(run.build_parser().parse_args(
        ["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(res)]))
    for seed, v in enumerate((0.100, 0.102, 0.098, 0.101, 0.099)):
        store.write_record(store.record_path(prep.home, "ml-100k", "sasrec", "validation", seed),
                           {"schema": store.SCHEMA, "status": "ok", "val": {"ndcg@20": v},
                            "config_hash": prep.chash}, np.zeros(1, dtype=np.int64))
    assert tune.main(["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(res),
                      "--jobs", "1", "--no-write-config"]) == 0
    report = (res / "tuning" / "ml-100k-sasrec.md").read_text()
    assert "in the 5 recorded runs of sasrec on ml-100k with the settings of" in report
    line = next(x for x in report.splitlines() if "| 1e-2 " in x and "| lr " in x)
    assert "tie (within one seed std)" in line
    assert "tie" not in next(x for x in report.splitlines() if "| 1e-4 " in x and "| lr " in x)


def test_the_rule_refuses_a_set_of_a_setting_it_searches(tmp_path, capsys):
    assert tune.main(["--model", "sasrec", "--results-dir", str(tmp_path / "res"),
                      "--set", "lr=1e-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set lr=") and "\n" not in err
    assert not (tmp_path / "res").exists()


def test_a_guided_model_without_a_t_stage_tunes_the_learning_rate_and_scores_every_w(
        tmp_path, configs, monkeypatch):
    """PreferDiff: the learning rate by the rule at its config's T and weight decay 0, every
    trial with the w variants, no weight-decay or T stage."""
    seen = []
    original = run.prepare

    def spy(args):
        prep = original(args)
        if "tuning" in Path(args.results_dir).parts:  # a trial's (not the report's own read)
            seen.append((prep.model_cfg.timesteps, args.w_variants))
        return prep
    monkeypatch.setattr(run, "prepare", spy)
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - abs(math.log10(lr) + 3) / 100, calls)
    res = tmp_path / "res"
    assert tune.main(["--model", "preferdiff", "--dataset", "ml-100k", "--results-dir",
                      str(res), "--jobs", "1", "--no-write-config"]) == 0
    assert calls == [(1e-2, 0.0), (1e-3, 0.0), (1e-4, 0.0)]  # interior at once: three trials
    assert {s for s in seen} == {(2000, "0,2,4,6,8,10")}
    report = (res / "tuning" / "ml-100k-preferdiff.md").read_text()
    assert "the config's T and no weight decay" in report and "scores w in {0, 2" in report


def test_a_weight_decay_adamw_can_apply_is_searched_beyond_the_better(tmp_path, configs,
                                                                        monkeypatch):
    """At lr 1e-2 a decay of 1e-4 acts (1 - 1e-6 is a float32 below 1): it is tried, found
    better, and 1e-3 beyond it is tried too."""
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - abs(math.log10(lr) + 2) / 100
              - abs(math.log10(wd) + 3.5) / 1000, calls)
    assert tune.main(["--model", "sasrec", "--dataset", "ml-100k", "--results-dir",
                      str(tmp_path / "res"), "--jobs", "1", "--no-write-config"]) == 0
    assert calls[3:] == [(1e-2, 1e-4), (1e-2, 1e-3)]
    assert tune.inert_decay("1e-2", "1e-6") and not tune.inert_decay("1e-2", "1e-5")
    assert tune.inert_decay("5e-5", "1e-4") and not tune.inert_decay("5e-5", "1e-3")
    report = (tmp_path / "res" / "tuning" / "ml-100k-sasrec.md").read_text()
    assert "Not trained" not in report


def test_a_resumed_trial_counts_every_stretch_of_its_run_time():
    from harness.tune import trial_minutes
    resumed = {"wall": {"train_s": 425.0, "eval_s": 281.0, "total_s": 116.0, "resumed": True}}
    whole = {"wall": {"train_s": 50.0, "eval_s": 10.0, "total_s": 120.0, "resumed": False}}
    assert trial_minutes([resumed]) == pytest.approx(706 / 60)
    assert trial_minutes([whole]) == pytest.approx(2.0)
    assert trial_minutes([{"wall": {}}]) == 0.0


def test_tuning_rewrites_the_train_line_of_a_config_header_and_keeps_its_sources(
        tmp_path, configs, monkeypatch):
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - abs(math.log10(lr) + 3) / 100
              - abs(math.log10(wd) + 6) / 1000, calls)
    path = configs / "ml-100k" / "gru4rec.toml"
    body = path.read_text().split("\n[model]", 1)[1]
    argv = ["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir",
            str(tmp_path / "res"), "--jobs", "1"]
    path.write_text("# GRU4Rec: the paper's facts.\n# [train]: not yet tuned.\n\n[model]" + body)
    assert tune.main(argv) == 0
    text = path.read_text()
    assert text.startswith("# GRU4Rec: the paper's facts.\n# [train]: lr 1e-3, weight_decay 1e-6 "
                           "chosen on validation NDCG@20 by\n")
    assert "not yet tuned" not in text
    # a header without a [train]: line keeps every line it had (its sources are not dropped)
    path.write_text("# Source A.\n# Source B.\n\n[model]" + body)
    assert tune.main(argv) == 0
    assert path.read_text().startswith("# Source A.\n# Source B.\n# [train]: lr 1e-3")


def test_a_trial_is_expected_to_take_what_the_searchs_finished_trials_took(tmp_path, configs,
                                                                          monkeypatch):
    # the time-left estimate of a resumed or later stage counts each trial at the median run
    # time of the trials finished before it (none before the first stage: "never timed")
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - lr - wd, calls)  # best at the lowest lr, wd
    minutes = {1e-2: 1.0, 1e-3: 3.0, 1e-4: 4.0}
    command = run.command

    def timed(args, progress=None):
        code = command(args, progress)
        prep = run.prepare(args)
        for protocol in ("validation", "published"):
            path = store.record_path(prep.home, args.dataset, args.model, protocol, 0)
            rec = json.loads(path.read_text())
            rec["wall"] = {"total_s": 60.0 * minutes.get(prep.train_cfg.lr, 10.0)}
            path.write_text(json.dumps(rec))
        return code

    monkeypatch.setattr(run, "command", timed)
    expected = []
    run_jobs = tune.execute.run_jobs

    def watched(todo, *a, **kw):
        expected.append([j.expected_s for j in todo])
        return run_jobs(todo, *a, **kw)

    monkeypatch.setattr(tune.execute, "run_jobs", watched)
    assert tune.main(["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir",
                      str(tmp_path / "res"), "--jobs", "1"]) == 0
    assert expected[0] == [None, None, None]  # lr 1e-2, 1e-3, 1e-4: nothing timed yet
    assert expected[1] == [180.0]  # lr 5e-5: the median of 1, 3 and 4 minutes


def test_the_rules_report_sets_a_plain_grids_trials_in_its_folder_against_its_choice(
        tmp_path, configs, monkeypatch):
    """A plain grid searched first in the same folder (as the paper's DreamRec grid is):
    the rule reuses the trials it shares and its report says whether the grid's best is its
    own choice."""
    calls = []
    # best at lr 5e-3, which the rule never tries (1e-2 is its edge best and the grid ends)
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - abs(math.log10(lr) - math.log10(5e-3)) / 100,
              calls)
    res = tmp_path / "res"
    common = ["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(res),
              "--jobs", "1", "--no-write-config"]
    assert tune.main([*common, "--grid", "lr=1e-2,5e-3", "--grid", "weight_decay=1e-6"]) == 0
    assert calls == [(1e-2, 1e-6), (5e-3, 1e-6)]
    calls.clear()
    assert tune.main(common) == 0
    assert (1e-2, 1e-6) not in calls  # the grid's trial, reused
    report = (res / "tuning" / "ml-100k-sasrec.md").read_text()
    assert "Chosen by validation NDCG@20: **lr=1e-2, weight_decay=" in report
    line = next(x for x in report.splitlines() if "beyond the rule's" in x)
    assert "**lr=5e-3, weight_decay=1e-6**" in line and "ml-100k-sasrec-grid.md" in line
    assert "no seed spread to call a tie by" in line
    assert "1 finished trial(s)" in line  # lr 1e-2 is the rule's own trial, not counted twice


def test_a_grid_whose_best_the_rule_chose_too_is_said_to_agree(tmp_path, configs, monkeypatch):
    calls = []
    fake_runs(monkeypatch, lambda lr, wd: 0.1 - abs(math.log10(lr) + 3) / 100
              - abs(math.log10(wd) + 6) / 1000, calls)
    res = tmp_path / "res"
    common = ["--model", "sasrec", "--dataset", "ml-100k", "--results-dir", str(res),
              "--jobs", "1", "--no-write-config"]
    assert tune.main([*common, "--grid", "lr=5e-3,5e-4", "--grid", "weight_decay=1e-6"]) == 0
    assert tune.main(common) == 0
    report = (res / "tuning" / "ml-100k-sasrec.md").read_text()
    assert "Chosen by validation NDCG@20: **lr=1e-3, weight_decay=1e-6**" in report
    assert "none is above the rule's choice" in report
    assert "the wider search chooses what the rule chose" in report


def test_a_config_file_made_the_models_own_finds_its_trials_without_training(tmp_path, configs,
                                                                             monkeypatch):
    # IPS's popularity propensity won on validation: ips.popularity.toml became ips.toml and
    # the sequential one ips.sequential.toml, their tuning folders and reports renamed with
    # them. The trials recorded apart (another config file's) are now the configured config's,
    # and those recorded as the model's are now apart: every search finds its trials, trains
    # nothing, and its report names the command that reproduces it
    def value(lr, wd):
        return 0.1 - abs(math.log10(lr) + 3) / 100 - abs(math.log10(wd) + 6) / 1000
    calls = []
    fake_runs(monkeypatch, value, calls)
    res, d = tmp_path / "res", configs / "ml-100k"
    (d / "gru4rec.alt.toml").write_text(
        (d / "gru4rec.toml").read_text().replace("dropout_prob = 0.3", "dropout_prob = 0.2"))
    alt = ["--config", str(d / "gru4rec.alt.toml")]
    for extra in ([], alt):
        assert tune.main(["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir",
                          str(res), "--jobs", "1", *extra]) == 0
    assert len(calls) == 2 * 4  # each search's lr stage and one weight decay
    before = {label: (res / "tuning" / f"ml-100k-{label}.md").read_text()
              for label in ("gru4rec", "gru4rec.alt")}
    # the swap
    (d / "gru4rec.toml").rename(d / "gru4rec.base.toml")
    (d / "gru4rec.alt.toml").rename(d / "gru4rec.toml")
    tuning = res / "tuning"
    (tuning / "ml-100k" / "gru4rec").rename(tuning / "ml-100k" / "gru4rec.base")
    (tuning / "ml-100k" / "gru4rec.alt").rename(tuning / "ml-100k" / "gru4rec")
    (tuning / "ml-100k-gru4rec.md").rename(tuning / "ml-100k-gru4rec.base.md")
    (tuning / "ml-100k-gru4rec.alt.md").rename(tuning / "ml-100k-gru4rec.md")
    calls.clear()
    for extra in ([], ["--config", str(d / "gru4rec.base.toml")]):
        assert tune.main(["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir",
                          str(res), "--jobs", "1", *extra]) == 0
    assert calls == []
    after = {label: (res / "tuning" / f"ml-100k-{label}.md").read_text()
             for label in ("gru4rec", "gru4rec.base")}
    chosen = "Chosen by validation NDCG@20: **lr=1e-3, weight_decay=1e-6**"
    assert chosen in before["gru4rec.alt"] and chosen in after["gru4rec"]
    assert "Cost: 4 trials" in after["gru4rec"] and "Cost: 4 trials" in after["gru4rec.base"]
    assert f"--config {d / 'gru4rec.alt.toml'}`" in before["gru4rec.alt"]
    assert f"--config {d / 'gru4rec.base.toml'}`" in after["gru4rec.base"]
    assert "--config" not in after["gru4rec"].splitlines()[2]
