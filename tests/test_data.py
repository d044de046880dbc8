"""Tests of the data layer: safe pickle loading, validation, the builder's protocol, the cache, the CLI."""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import to_authors_pickle

from harness.data import (SEQ_LEN, Split, build_splits, history_counts, load_dataset, pickles,
                          prefix_sequences, target_counts)
from harness.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "dreamrec"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"authors' data not present at {SHARED}")

P = 5  # pad id of the toy authors' data (item_num = 5)


# --------------------------------------------------------------------------- helpers


def toy_frame(naming: tuple[str, str, str] = ("seq", "len_seq", "next"), float_ids: bool = False) -> pd.DataFrame:
    """Three rows of one sequence [2, 4, 0] in the authors' layout; float ids mimic yc/ks (floats mixed with ints)."""
    seqs = [[P] * 10, [2] + [P] * 9, [2, 4] + [P] * 8]
    target = [2, 4, 0]
    if float_ids:
        seqs = [[np.float64(v) if v != P else v for v in s] for s in seqs]
        target = [float(t) for t in target]
    return pd.DataFrame({naming[0]: seqs, naming[1]: [1, 1, 2], naming[2]: target})


def write_authors_dir(directory: Path, frames: dict[str, pd.DataFrame], item_num: int = P, seq_size: int = 10) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    to_authors_pickle(pd.DataFrame({"seq_size": [seq_size], "item_num": [item_num]}),
                      directory / "data_statis.df")
    for which, df in frames.items():
        to_authors_pickle(df, directory / f"{which}_data.df")
    return directory


def toy_dir(directory: Path, **frames: pd.DataFrame) -> Path:
    base = {"train": toy_frame(), "val": toy_frame(), "test": toy_frame()}
    return write_authors_dir(directory, {**base, **frames})


def load_toy(directory: Path) -> None:
    pickles.load_authors_splits(directory, "toy")


EXPECTED_TOY_HISTORY = np.array([[P] * 10, [2] + [P] * 9, [2, 4] + [P] * 8])


# --------------------------------------------------------------------------- pickle loader


@pytest.mark.parametrize("naming", pickles.COLUMN_NAMINGS)
@pytest.mark.parametrize("float_ids", [False, True])
def test_both_column_namings_and_id_types(tmp_path: Path, naming: tuple[str, str, str], float_ids: bool) -> None:
    frame = toy_frame(naming, float_ids)
    splits = pickles.load_authors_splits(toy_dir(tmp_path, train=frame, val=frame, test=frame), "toy")
    assert splits.n_items == P and splits.pad_id == P
    for which in ("train", "val", "test"):
        s = splits.split(which)
        assert s.history.dtype == s.length.dtype == s.target.dtype == np.int64
        np.testing.assert_array_equal(s.history, EXPECTED_TOY_HISTORY)
        np.testing.assert_array_equal(s.length, [1, 1, 2])
        np.testing.assert_array_equal(s.target, [2, 4, 0])
    # the checksum depends on content only, not on the column naming or the id dtype
    assert splits.checksum == pickles.load_authors_splits(toy_dir(tmp_path / "ref"), "toy").checksum


class _Reduce:
    """Pickles as a call of ``func(*args)``: what a malicious file does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen", "inside_dataframe"])
def test_malicious_pickle_is_refused_without_execution(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    cmd = f"touch {shlex.quote(str(marker))}"
    payload = {
        "os.system": lambda: _Reduce(os.system, cmd),
        "builtins.eval": lambda: _Reduce(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess.Popen": lambda: _Reduce(subprocess.Popen, ["touch", str(marker)]),
        "inside_dataframe": lambda: pd.DataFrame({"seq": [_Reduce(os.system, cmd)], "len_seq": [1], "next": [0]}),
    }[kind]()
    path = tmp_path / "train_data.df"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError) as err:
        pickles.read_frame(path)
    refused = {"os.system": "posix.system", "builtins.eval": "builtins.eval",
               "subprocess.Popen": "subprocess.Popen", "inside_dataframe": "posix.system"}[kind]
    assert refused in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_truncated_pickle(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "val_data.df"
    to_authors_pickle(toy_frame(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match=r"val_data.df is truncated or not a pickle; re-copy it from"):
        pickles.read_frame(path)


def test_wrong_columns(tmp_path: Path) -> None:
    bad = toy_frame().rename(columns={"len_seq": "length"})
    with pytest.raises(DataError) as err:
        load_toy(toy_dir(tmp_path, val=bad))
    msg = str(err.value)
    assert "length" in msg and "len_seq" in msg and "val_data.df" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "row, rule",
    [
        ({"next": P}, "next lies in [0, item_num=5)"),
        ({"next": -1}, "next lies in [0, item_num=5)"),
        ({"seq": [2, P + 1] + [P] * 8, "len_seq": 2}, "history ids lie in [0, item_num=5]"),
        ({"seq": [2, -3] + [P] * 8, "len_seq": 2}, "history ids lie in [0, item_num=5]"),
        ({"len_seq": 0}, "len_seq lies in [1, 10]"),
        ({"len_seq": 11}, "len_seq lies in [1, 10]"),
        ({"seq": [2, 4, 1] + [P] * 7, "len_seq": 2}, "position >= len_seq is the pad id"),
        ({"seq": [2, P, 4] + [P] * 7, "len_seq": 3}, "are real items"),
        ({"seq": [P, 2] + [P] * 8, "len_seq": 2}, "are real items"),
        ({"seq": [2, 4] + [P] * 7}, "seq has exactly 10 entries"),
        ({"next": 1.5}, "next holds whole numbers"),
    ],
)
def test_protocol_violations(tmp_path: Path, row: dict, rule: str) -> None:
    cols = {k: list(v) for k, v in toy_frame().to_dict("list").items()}
    for col, value in row.items():
        cols[col][2] = value  # break the last of the three rows
    with pytest.raises(DataError) as err:
        load_toy(toy_dir(tmp_path, test=pd.DataFrame(cols)))
    msg = str(err.value)
    assert rule in msg and "test_data.df" in msg and "1 of 3 rows" in msg and "\n" not in msg


def two_sequences() -> pd.DataFrame:
    """The toy sequence [2, 4, 0] followed by the sequence [1, 3]: five rows, two sequences."""
    second = pd.DataFrame({"seq": [[P] * 10, [1] + [P] * 9], "len_seq": [1, 1], "next": [1, 3]})
    return pd.concat([toy_frame(), second], ignore_index=True)


def test_authors_rows_carry_their_sequence() -> None:
    s = pickles.split_from_frame(two_sequences(), P, Path("test_data.df"))
    np.testing.assert_array_equal(s.sequence, [0, 0, 0, 1, 1])
    assert s.sequence.dtype == np.int64


@pytest.mark.parametrize(
    "rows, first",
    [
        ([1, 0, 2, 3, 4], 0),  # the first row does not start a sequence
        ([0, 1, 3, 2, 4], 3),  # a row taken out of its sequence
        ([0, 2, 1, 3, 4], 1),
    ],
)
def test_rows_out_of_prefix_order_are_refused(tmp_path: Path, rows: list[int], first: int) -> None:
    frame = two_sequences().iloc[rows].reset_index(drop=True)
    with pytest.raises(DataError) as err:
        load_toy(toy_dir(tmp_path, test=frame))
    msg = str(err.value)
    assert "rows list each sequence's prefixes in order" in msg and f"(first: row {first})" in msg
    assert "test_data.df" in msg and "\n" not in msg


def test_prefix_order_with_a_sliding_window() -> None:
    """Past ten items the history drops its oldest item: the row still continues its sequence;
    a row whose history skips an item does not."""
    items = np.arange(13)
    history = np.full((13, SEQ_LEN), 99)
    length = np.ones(13, dtype=np.int64)
    for i in range(1, 13):
        past = items[max(0, i - SEQ_LEN):i]
        history[i, :past.size] = past
        length[i] = past.size
    sequence, broken = prefix_sequences(history, length, items, 99)
    np.testing.assert_array_equal(sequence, np.zeros(13))
    assert not broken.any()
    history[12, :SEQ_LEN] = np.arange(1, 11)  # should be 2..11
    assert np.flatnonzero(prefix_sequences(history, length, items, 99)[1]).tolist() == [12]


def test_empty_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no rows"):
        load_toy(toy_dir(tmp_path, val=toy_frame().iloc[:0]))


def test_statis_seq_size(tmp_path: Path) -> None:
    write_authors_dir(tmp_path, {"train": toy_frame(), "val": toy_frame(), "test": toy_frame()}, seq_size=50)
    with pytest.raises(DataError, match="seq_size is 50"):
        load_toy(tmp_path)


# --------------------------------------------------------------------------- registry


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DataError, match="ml-100k, yc, ks, zhihu"):
        load_dataset("movielens")


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"zhihu does not exist.*github.com/YangZhengyi98/DreamRec, data/zhihu/"):
        load_dataset("zhihu", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    toy_dir(tmp_path / "zhihu").joinpath("val_data.df").unlink()
    with pytest.raises(DataError, match=r"val_data.df is missing.*github.com/YangZhengyi98/DreamRec"):
        load_dataset("zhihu", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    toy_dir(tmp_path / "ks").joinpath("train_data.df").unlink()
    with pytest.raises(DataError, match=r"train_data.df is missing: ks has no train split in this copy"):
        load_dataset("ks", data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_cache_is_reused_and_corrupt_cache_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toy_dir(tmp_path / "data" / "zhihu")
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="differs from the authors' release"):  # toy files are not the release
        first = load_dataset("zhihu", data_dir=tmp_path / "data", cache_dir=cache)
    (npz,) = cache.glob("zhihu-*.npz")
    assert not list(cache.glob("*.tmp"))

    def refuse(*args, **kwargs):
        raise AssertionError("the unpickler ran although a valid cache exists")

    real_read_frame = pickles.read_frame
    warnings.simplefilter("ignore")  # pytest restores the filters after the test
    monkeypatch.setattr(pickles, "read_frame", refuse)
    second = load_dataset("zhihu", data_dir=tmp_path / "data", cache_dir=cache)
    assert second.checksum == first.checksum
    np.testing.assert_array_equal(second.train.history, first.train.history)
    np.testing.assert_array_equal(second.test.sequence, first.test.sequence)
    assert second.test.sequence.dtype == np.int64

    for damage in (b"not a zip file", npz.read_bytes()[:100]):
        npz.write_bytes(damage)
        with pytest.raises(AssertionError, match="unpickler ran"):  # a corrupt cache is not used ...
            load_dataset("zhihu", data_dir=tmp_path / "data", cache_dir=cache)
        monkeypatch.setattr(pickles, "read_frame", real_read_frame)  # ... but rebuilt
        assert load_dataset("zhihu", data_dir=tmp_path / "data", cache_dir=cache).checksum == first.checksum
        monkeypatch.setattr(pickles, "read_frame", refuse)
        assert load_dataset("zhihu", data_dir=tmp_path / "data", cache_dir=cache).checksum == first.checksum

    # a changed source file gets a new cache entry
    monkeypatch.setattr(pickles, "read_frame", real_read_frame)
    toy_dir(tmp_path / "data" / "zhihu", test=toy_frame().iloc[:2])
    assert len(load_dataset("zhihu", data_dir=tmp_path / "data", cache_dir=cache).test) == 2
    assert len(list(cache.glob("zhihu-*.npz"))) == 2


def test_ml100k(tmp_path: Path) -> None:
    a = load_dataset("ml-100k", cache_dir=tmp_path / "a")
    b = load_dataset("ml-100k", cache_dir=tmp_path / "b")  # built again from scratch: deterministic
    assert a.checksum == b.checksum
    assert a.n_items == 1349 and a.pad_id == 1349
    assert (len(a.train), len(a.val), len(a.test)) == (82552, 7333, 9402)
    for s in (a.train, a.val, a.test):
        assert len(s) > 0 and s.history.shape == (len(s), SEQ_LEN)
        real = np.arange(SEQ_LEN) < s.length[:, None]
        no_history = s.history[:, 0] == a.pad_id
        assert np.all(s.history[~real] == a.pad_id)
        assert np.all(s.history[real & ~no_history[:, None]] < a.n_items)
        assert np.all(s.length[no_history] == 1) and s.target.max() < a.n_items and s.target.min() >= 0
    assert a.train.n_sequences(a.pad_id) + a.val.n_sequences(a.pad_id) + a.test.n_sequences(a.pad_id) == 943
    for s in (a.train, a.val, a.test):  # the builder lists rows as the authors do
        sequence, broken = prefix_sequences(s.history, s.length, s.target, a.pad_id)
        np.testing.assert_array_equal(s.sequence, sequence)
        assert not broken.any() and s.sequence[-1] + 1 == s.n_sequences(a.pad_id)


def test_ml100k_does_not_import_recbole(tmp_path: Path) -> None:
    code = ("import sys; from harness.data import load_dataset; load_dataset('ml-100k', cache_dir=sys.argv[1]); "
            "assert 'recbole' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, check=True)


# --------------------------------------------------------------------------- builder

# A hand-written log. Item 99 has 4 interactions (< 5: dropped); item 10 has exactly 5 (kept).
# User 7 keeps 2 items after that (< 3: dropped). User 3 has a timestamp tie (input order wins);
# users 1 and 2 start at the same time (user id wins). Rows are deliberately not in time order.
LOG = pd.DataFrame(
    [
        (2, 40, 10), (2, 30, 11), (2, 99, 13), (2, 20, 12),
        (1, 40, 21), (1, 10, 14), (1, 20, 11), (1, 30, 12), (1, 40, 13), (1, 10, 10),
        (1, 20, 15), (1, 30, 16), (1, 40, 17), (1, 10, 18), (1, 20, 19), (1, 30, 20),
        (5, 20, 1), (5, 10, 2), (5, 99, 3), (5, 30, 4),
        (3, 10, 5), (3, 40, 5), (3, 20, 6), (3, 99, 7),
        (7, 30, 2), (7, 99, 9), (7, 40, 3),
    ],
    columns=["user", "item", "timestamp"],
)
# Items by first appearance in time order: 20 -> 0, 10 -> 1, 30 -> 2, 40 -> 3; pad = 4.
# Sequences by first timestamp: user 5 [0 1 2], user 3 [1 3 0], user 1 [1 0 2 3]x3, user 2 [3 2 0].
_ = 4
EXPECTED = {
    "train": (
        [[_, _, _, _, _, _, _, _, _, _],
         [0, _, _, _, _, _, _, _, _, _],
         [0, 1, _, _, _, _, _, _, _, _],
         [_, _, _, _, _, _, _, _, _, _],
         [1, _, _, _, _, _, _, _, _, _],
         [1, 3, _, _, _, _, _, _, _, _]],
        [1, 1, 2, 1, 1, 2],
        [0, 1, 2, 1, 3, 0],
    ),
    "val": (
        [[_, _, _, _, _, _, _, _, _, _],
         [1, _, _, _, _, _, _, _, _, _],
         [1, 0, _, _, _, _, _, _, _, _],
         [1, 0, 2, _, _, _, _, _, _, _],
         [1, 0, 2, 3, _, _, _, _, _, _],
         [1, 0, 2, 3, 1, _, _, _, _, _],
         [1, 0, 2, 3, 1, 0, _, _, _, _],
         [1, 0, 2, 3, 1, 0, 2, _, _, _],
         [1, 0, 2, 3, 1, 0, 2, 3, _, _],
         [1, 0, 2, 3, 1, 0, 2, 3, 1, _],
         [1, 0, 2, 3, 1, 0, 2, 3, 1, 0],
         [0, 2, 3, 1, 0, 2, 3, 1, 0, 2]],
        [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10],
        [1, 0, 2, 3, 1, 0, 2, 3, 1, 0, 2, 3],
    ),
    "test": (
        [[_, _, _, _, _, _, _, _, _, _],
         [3, _, _, _, _, _, _, _, _, _],
         [3, 2, _, _, _, _, _, _, _, _]],
        [1, 1, 2],
        [3, 2, 0],
    ),
}


def test_builder_hand_written_rows() -> None:
    splits = build_splits(LOG, "tiny", ratios=(0.5, 0.25, 0.25))
    assert splits.name == "tiny" and splits.n_items == 4 and splits.pad_id == 4
    for which, (history, length, target) in EXPECTED.items():
        s = splits.split(which)
        np.testing.assert_array_equal(s.history, history, err_msg=which)
        np.testing.assert_array_equal(s.length, length, err_msg=which)
        np.testing.assert_array_equal(s.target, target, err_msg=which)
        assert s.history.dtype == s.length.dtype == s.target.dtype == np.int64
    # the result does not depend on the input row order, except for ties (user 3's t=5 rows keep theirs)
    shuffled = LOG.sample(frac=1.0, random_state=0)
    tie = shuffled.index.isin([20, 21])
    shuffled.loc[tie] = LOG.loc[[20, 21]].to_numpy()
    assert build_splits(shuffled, "tiny", ratios=(0.5, 0.25, 0.25)).checksum == splits.checksum


def test_builder_sequence_ids() -> None:
    """Each row's sequence, 0-based within its split (train: users 5 and 3; val: user 1, twelve
    rows; test: user 2), and the same ids the authors' order gives."""
    splits = build_splits(LOG, "tiny", ratios=(0.5, 0.25, 0.25))
    expected = {"train": [0, 0, 0, 1, 1, 1], "val": [0] * 12, "test": [0, 0, 0]}
    for which, ids in expected.items():
        s = splits.split(which)
        np.testing.assert_array_equal(s.sequence, ids, err_msg=which)
        assert s.sequence.dtype == np.int64
        sequence, broken = prefix_sequences(s.history, s.length, s.target, splits.pad_id)
        np.testing.assert_array_equal(sequence, ids, err_msg=which)
        assert not broken.any()
    grid = build_splits(pd.DataFrame([(u, i, 3 * u + k) for u in range(10) for k, i in enumerate((7, 8, 9))],
                                     columns=["user", "item", "timestamp"]), "grid")
    np.testing.assert_array_equal(grid.train.sequence, np.repeat(np.arange(8), 3))


def test_builder_default_ratios_split_whole_sequences() -> None:
    with pytest.raises(DataError, match="4 sequences survive filtering"):
        build_splits(LOG, "tiny")  # 8:1:1 of 4 sequences leaves val empty
    for n, sizes in ((10, (8, 1, 1)), (25, (20, 2, 3)), (19, (15, 1, 3))):
        rows = [(u, i, 3 * u + k) for u in range(n) for k, i in enumerate((7, 8, 9))]
        log = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
        s = build_splits(log, "grid")
        assert tuple(x.n_sequences(s.pad_id) for x in (s.train, s.val, s.test)) == sizes
        assert tuple(len(x) for x in (s.train, s.val, s.test)) == tuple(3 * k for k in sizes)


def test_builder_missing_columns() -> None:
    with pytest.raises(DataError, match=r"lacks columns \['timestamp'\]"):
        build_splits(LOG.drop(columns="timestamp"), "tiny")


# --------------------------------------------------------------------------- the authors' real files


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@needs_shared
def test_real_zhihu(shared_cache: Path) -> None:
    z = load_dataset("zhihu", data_dir=SHARED, cache_dir=shared_cache)
    assert z.n_items == 4838
    assert (len(z.train), len(z.val), len(z.test)) == (61641, 8160, 7911)
    assert tuple(s.n_sequences(z.pad_id) for s in (z.train, z.val, z.test)) == (9371, 1171, 1172)
    np.testing.assert_array_equal(z.train.history[:3, :3], [[4838, 4838, 4838], [4700, 4838, 4838], [4700, 3160, 4838]])
    np.testing.assert_array_equal(z.train.length[:3], [1, 1, 2])
    np.testing.assert_array_equal(z.train.target[:3], [4700, 3160, 4377])
    assert load_dataset("zhihu", data_dir=SHARED, cache_dir=shared_cache).checksum == z.checksum
    # each test row's sequence: 1,172 sequences, numbered in order, each one's rows together
    assert np.unique(z.test.sequence).size == 1172 and z.test.sequence[-1] == 1171
    assert np.all(np.diff(z.test.sequence) >= 0) and np.all(np.diff(z.test.sequence) <= 1)
    assert np.all(z.test.length[np.flatnonzero(np.diff(z.test.sequence)) + 1] == 1)
    assert z.train.sequence[-1] + 1 == 9371 and z.val.sequence[-1] + 1 == 1171
    # the content checksum the records carry does not depend on the sequence ids
    assert z.checksum == "0b309d2e7bd845f6d193c8ad486c73d9f6e73e3de0b9a8522cfca620a6dc0ee2"


@needs_shared
def test_real_yc(shared_cache: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shared copy matches the release md5s: no warning
        yc = load_dataset("yc", data_dir=SHARED, cache_dir=shared_cache)
    assert yc.n_items == 9514 and (len(yc.val), len(yc.test)) == (57062, 55245)
    assert len(yc.train) == 427129
    assert np.unique(yc.test.sequence).size == 12847 and yc.test.sequence[-1] == 12846
    assert np.all(np.diff(yc.test.sequence) >= 0)
    assert yc.checksum == "6b59228108f1515a962124834b5de2b5808266e28b67a66140bd2ece8c8faf7a"


@needs_shared
def test_real_ks_has_no_train(shared_cache: Path) -> None:
    with pytest.raises(DataError, match="ks has no train split in this copy"):
        load_dataset("ks", data_dir=SHARED, cache_dir=shared_cache)


@needs_shared
def test_cli_describe(tmp_path: Path) -> None:
    env = {**os.environ, "HARNESS_DATA_DIR": str(SHARED), "HARNESS_CACHE_DIR": str(tmp_path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "harness.data", *args], cwd=REPO, env=env,
                                       capture_output=True, text=True)
    out = run("describe", "zhihu")
    assert out.returncode == 0, out.stderr
    for text in ("61,641", "8,160", "7,911", "9,371", "4,838", "9e95acf060298eb4", "bb990d671926e7f2"):
        assert text in out.stdout
    bad = run("describe", "ks")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "no train split" in bad.stderr


def test_split_checksum_follows_content() -> None:
    hist = np.full((2, SEQ_LEN), 9, dtype=np.int64)
    hist[:, 0] = [3, 4]
    a = Split(hist, np.array([1, 1]), np.array([5, 6]))
    b = Split(hist.astype(np.int32), np.array([1, 1], dtype=np.int32), np.array([5, 6], dtype=np.int32))
    c = Split(hist, np.array([1, 1]), np.array([5, 7]))
    assert a.checksum() == b.checksum()  # dtype-independent
    assert a.checksum() != c.checksum() and len(a.checksum()) == 16


def test_a_frame_with_pyarrow_strings_is_refused_with_how_to_resave_it(tmp_path: Path) -> None:
    """pandas >= 3 with pyarrow (which Ray brings) pickles string labels as pyarrow arrays; the
    reader does not unpickle pyarrow buffers and says how to write the file instead."""
    pytest.importorskip("pyarrow")  # a dependency of ray[tune]: always here in this install
    path = tmp_path / "train_data.df"
    toy_frame().to_pickle(path)  # pandas' own default: pyarrow-backed column labels
    with pytest.raises(DataError, match=r"holds pandas strings stored by pyarrow .*"
                       r"df.columns = df.columns.astype\(object\)"):
        pickles.read_frame(path)


def test_history_and_target_counts_count_real_items_only():
    pad = 5
    history = np.full((3, SEQ_LEN), pad)
    history[0, 0] = pad  # the authors' empty-history row: length 1, the pad in position 0
    history[1, :2] = [0, 2]
    history[2, :3] = [2, 2, 4]
    split = Split(history, np.array([1, 2, 3]), np.array([0, 1, 1]))
    assert history_counts(split, pad).tolist() == [1, 0, 3, 0, 1]
    assert target_counts(split, pad).tolist() == [1, 2, 0, 0, 0]
