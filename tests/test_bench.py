"""The benchmark commands: the official-code timer (on a stand-in checkout) and their bad input."""

import json

import pytest

from harness import bench, bench_cost, bench_official
from harness.errors import HarnessError
from tests.helpers import to_authors_pickle
from harness.models import CONFIG_DIR, get_model

# A stand-in for github.com/YangZhengyi98/DreamRec: the same command line, the same end-of-epoch
# line, the same module-level names the timer uses, and a known cost per epoch.
FAKE_OFFICIAL = '''
import argparse, time, os
import pandas as pd
import torch
from Modules_ori import *
parser = argparse.ArgumentParser()
for flag in ("--data", "--beta_sche", "--diffuser_type", "--optimizer"):
    parser.add_argument(flag, default="")
for flag in ("--epoch", "--random_seed", "--batch_size", "--hidden_factor", "--timesteps"):
    parser.add_argument(flag, type=int, default=0)
for flag in ("--beta_start", "--beta_end", "--lr", "--l2_decay", "--dropout_rate", "--w", "--p"):
    parser.add_argument(flag, type=float, default=0.0)
args = parser.parse_args()
SLEEP = 0.05
EPOCH = 0.2
class Tenc:
    def __init__(self, hidden, item_num, seq_size, dropout, kind, device):
        self.shape = (hidden, item_num, seq_size)
class diffusion:
    def __init__(self, timesteps, beta_start, beta_end, w):
        self.timesteps = timesteps
def evaluate(model, test_data, diff, device):
    assert os.path.isfile(os.path.join(data_directory, test_data)), data_directory
    assert torch.get_num_threads() == THREADS
    time.sleep(SLEEP)
if __name__ == "__main__":
    assert os.path.isfile("./data/" + args.data + "/train_data.df")
    for i in range(args.epoch):
        time.sleep(EPOCH * (i + 1))
        print("Epoch {:03d}; Train loss: 0.1; Time cost: 00: 00: 00".format(i))
'''


@pytest.fixture
def official(tmp_path):
    d = tmp_path / "DreamRec"
    d.mkdir()
    (d / "DreamRec.py").write_text(FAKE_OFFICIAL)
    (d / "Modules_ori.py").write_text("THREADS = 1\n")
    (d / "utility.py").write_text("")
    return d


@pytest.fixture
def data_dir(tmp_path):
    import pandas as pd

    d = tmp_path / "data" / "zhihu"
    d.mkdir(parents=True)
    rows = pd.DataFrame({"seq": [[0, 1]] * 250, "len_seq": [2] * 250, "next": [3] * 250})
    for name in ("train_data.df", "val_data.df", "test_data.df"):
        to_authors_pickle(rows, d / name)
    to_authors_pickle(pd.DataFrame({"seq_size": [10], "item_num": [4]}), d / "data_statis.df")
    return d.parent


def test_the_official_epochs_are_timed_from_their_own_epoch_lines(official, data_dir):
    # the authors' published zhihu preset: T 500, w 4
    model_cfg, train_cfg = get_model("dreamrec").configs(
        "zhihu", {}, CONFIG_DIR / "zhihu" / "dreamrec.authors.toml")
    argv = bench_official.official_argv("zhihu", model_cfg, train_cfg, 4)
    assert argv[argv.index("--timesteps") + 1] == "500" and argv[argv.index("--w") + 1] == "4.0"
    out = bench_official.measure(official, data_dir, "train", 1, argv)
    # epoch i sleeps 0.2 (i + 1) s; the first epoch is the warm-up, then the gaps between epoch
    # lines: 0.4, 0.6 and 0.8 s. A busy machine only lengthens a gap, so each is at least its
    # sleep, and short of the time since the first line (0.4, 1.0, 1.8 s) that a clock read
    # from the wrong line would give
    expected = [0.4, 0.6, 0.8]
    assert len(out["seconds"]) == 3
    for seconds, sleep in zip(out["seconds"], expected):
        assert sleep - 0.005 <= seconds < sleep + 0.15, out["seconds"]


def test_the_official_evaluation_runs_val_then_test_at_the_given_threads(official, data_dir):
    model_cfg, train_cfg = get_model("dreamrec").configs("zhihu")
    argv = bench_official.official_argv("zhihu", model_cfg, train_cfg, 1)
    out = bench_official.measure(official, data_dir, "generate", 1, argv)
    assert out["seconds"][0] == pytest.approx(0.1, abs=0.03)
    assert out["rows"] == 400  # 250 rows a split, whole batches of 100 only
    (official / "Modules_ori.py").write_text("THREADS = 2\n")
    with pytest.raises(HarnessError, match="the official code failed"):  # its assert fails
        bench_official.measure(official, data_dir, "generate", 1, argv)


@pytest.mark.parametrize("args,message", [
    (["--against-official", "{missing}"], "not a checkout of the official DreamRec code "
                                          "(missing DreamRec.py, Modules_ori.py, utility.py)"),
    (["--against-official", "{official}", "--model", "sasrec"],
     "--against-official times the official DreamRec code; drop it for --model sasrec"),
    (["--against-official", "{official}", "--dataset", "ml-100k"],
     "--against-official needs one of the authors' datasets (yc, ks, zhihu)"),
])
def test_bench_against_official_bad_input_is_one_line_and_exit_2(args, message, official,
                                                                   tmp_path, capsys):
    args = [a.format(missing=tmp_path / "nowhere", official=official) for a in args]
    assert bench.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("args,message", [
    (["--models", "sasrec,nosuch"], "nosuch"),
    (["--before", "0000000000000000000000000000000000000000"], "not a revision of this repository"),
    (["--steps", "-1"], "--steps and --warmup must be >= 0"),
    (["--device", "tpu"], "--device takes cpu or cuda, got 'tpu'"),
])
def test_bench_cost_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert bench_cost.main(["--dataset", "zhihu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_cost_estimate_counts_epochs_evaluations_and_the_test_pass(tmp_path):
    t = {"step_s": 0.01, "steps_per_epoch": 100, "val_s": 36.0, "val_rows": 1000,
         "test_rows": 500, "eval_every": 5}
    # 12 epochs of 1 s, ceil(12 / 5) = 3 val passes of 36 s, one test pass of 18 s
    assert bench_cost.cpu_hours(t, 12) == pytest.approx((12 + 108 + 18) / 3600)
    folder = tmp_path / "records" / "zhihu" / "sasrec" / "validation"
    folder.mkdir(parents=True)
    for seed, (status, epochs) in enumerate([("ok", 10), ("ok", 20), ("failed", 99)]):
        (folder / f"seed{seed}.json").write_text(json.dumps({"status": status,
                                                             "epochs_run": epochs}))
    (folder / "seed9.json").write_text("{ truncated")
    assert bench_cost.recorded_epochs(tmp_path, "zhihu", "sasrec") == 15
    assert bench_cost.recorded_epochs(tmp_path, "zhihu", "caser") is None


def test_the_ray_benchmark_refuses_bad_input_before_starting_ray(capsys):
    from harness import bench_ray

    assert bench_ray.main(["--jobs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --jobs and --repeats must be >= 1, got 0 and 3"
