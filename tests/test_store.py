"""Records: atomic writes, corrupt files, config hashes."""

import numpy as np
import pytest

from harness import store
from harness.errors import HarnessError


def test_a_write_that_fails_midway_leaves_nothing_behind(tmp_path):
    path = tmp_path / "a" / "seed0.json"

    def boom(fh):
        fh.write(b'{"half": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.atomic_write(path, boom)
    assert list(path.parent.iterdir()) == []


def test_a_written_file_has_the_permissions_open_gives_and_a_rewrite_keeps_them(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        path = tmp_path / "table1.md"
        store.write_text(path, "new")
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        path.chmod(0o640)
        store.write_text(path, "again")
        assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == "again"
    finally:
        os.umask(umask)


def test_record_round_trip_and_corrupt_or_foreign_files_read_as_absent(tmp_path):
    path = store.record_path(tmp_path, "zhihu", "dreamrec", "validation", 3)
    rec = {"schema": store.SCHEMA, "status": "ok", "config_hash": "abc", "test": {"hr@20": 0.5}}
    store.write_record(path, rec, np.array([0, 5, 30]))
    assert store.read_record(path) == rec
    assert store.read_ranks(path).tolist() == [0, 5, 30]
    assert store.is_done(path, "abc") and not store.is_done(path, "other")
    path.write_text('{"schema": 1, "status": ')  # truncated by hand
    assert store.read_record(path) is None and not store.is_done(path, "abc")
    path.write_text('{"schema": 99}')  # another format
    assert store.read_record(path) is None


def test_config_hash_ignores_key_order_but_not_values():
    a = store.config_hash({"x": 1, "y": {"b": 2, "a": 1}})
    assert a == store.config_hash({"y": {"a": 1, "b": 2}, "x": 1})
    assert a != store.config_hash({"x": 1, "y": {"b": 2, "a": 1.5}})


def test_unknown_protocol_is_rejected(tmp_path):
    with pytest.raises(HarnessError, match="valid: validation, published"):
        store.record_path(tmp_path, "zhihu", "dreamrec", "best", 0)


def test_removing_a_checkpoint_takes_the_half_written_copies_a_kill_left_and_empty_folders(tmp_path):
    from harness.store import checkpoint_path, remove_checkpoint

    ckpt = checkpoint_path(tmp_path, "ml-100k", "dreamrec", 0)
    other = checkpoint_path(tmp_path, "ml-100k", "dreamrec", 1)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    (ckpt.parent / f".{ckpt.name}.ab12cd.tmp").write_bytes(b"half")  # SIGKILL during a write
    (ckpt.parent / f".{other.name}.ef34gh.tmp").write_bytes(b"half")  # another seed's: kept
    remove_checkpoint(ckpt)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [f".{other.name}.ef34gh.tmp"]
    remove_checkpoint(other)
    assert not (tmp_path / "checkpoints").exists()
