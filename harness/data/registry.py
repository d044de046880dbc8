"""Named datasets → :class:`SequenceSplits`, through a checksum-keyed ``.npz`` cache.

- ``yc``, ``ks``, ``zhihu``: the DreamRec authors' pickles in ``<data_dir>/<name>/``.
- ``ml-100k``: built with :func:`harness.data.builder.build_splits` from the copy shipped in the
  ``recbole`` wheel; every rating is an interaction (implicit feedback).

The cache file name carries a hash of the source files' md5s (plus the format/builder version), so
a changed source gets a new cache entry and an unchanged one is never unpickled twice.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.splits import SequenceSplits, Split, content_checksum
from harness.errors import DataError

DATASETS = ("ml-100k", "yc", "ks", "zhihu")
AUTHORS_DATASETS = ("yc", "ks", "zhihu")
CACHE_VERSION = "2"  # bump when the npz layout or the pickle validation changes (2: sequence ids)

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTHORS_ORIGIN = "the DreamRec authors' release (github.com/YangZhengyi98/DreamRec, data/{name}/)"
AUTHORS_FILES = ("data_statis.df", "train_data.df", "val_data.df", "test_data.df")
KNOWN_MD5 = {
    "yc/data_statis.df": "2574f7a7b51d5a99deeeddecbe14c5b0",
    "yc/train_data.df": "fb40e8c53bd4393819d5f7a36a8314f0",
    "yc/val_data.df": "0b0a4dc267e04b36558cf45d6a727ac9",
    "yc/test_data.df": "7ccfc1ab1f2af69d6c2e78a253fac5f5",
    "zhihu/data_statis.df": "bfdd451b03e9a47f9773241956655dad",
    "zhihu/train_data.df": "669ea02a7e9b49dfcbe8f752ab9720bf",
    "zhihu/val_data.df": "9ee4b46ebe6489de5dcb1ffe0bda61fc",
    "zhihu/test_data.df": "d476be2672e9f1ecc765166b0827ac38",
    "ks/data_statis.df": "35d0b8dc204681c488264a6885a6931b",
    "ks/val_data.df": "8b978edf2e3a1e13debf4a6de9ede57c",
    "ks/test_data.df": "8d667e7752ce97c0272e999f4bb9c462",
}
ML100K_RELPATH = Path("dataset_example", "ml-100k", "ml-100k.inter")
SPLIT_FIELDS = ("history", "length", "target", "sequence")  # the arrays of a split in the cache


@dataclass(frozen=True)
class SourceFile:
    """One source file of a dataset, its md5, and the md5 of the known release (None if unknown)."""

    path: Path
    md5: str
    known_md5: str | None = None

    @property
    def matches_release(self) -> bool | None:
        """True/False against the known release; None when the file has no known md5."""
        return None if self.known_md5 is None else self.md5 == self.known_md5


def default_data_dir() -> Path:
    """Folder holding ``yc/``, ``ks/``, ``zhihu/``: ``$HARNESS_DATA_DIR`` if set, else
    ``<repo>/../shared/data/dreamrec`` (``<repo>`` is the parent of the ``harness`` package)."""
    env = os.environ.get("HARNESS_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "dreamrec"


def default_cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR`` if set, else ``<repo>/.cache/data`` (git-ignored)."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "data"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ml100k_path() -> Path:
    """``ml-100k.inter`` inside the installed recbole package, located without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / ML100K_RELPATH
        if path.is_file():
            return path
    raise DataError(
        "ml-100k comes from the recbole wheel (recbole/dataset_example/ml-100k/ml-100k.inter), which was not "
        f"found (recbole at {locations or 'not installed'}); install it with: pip install --no-deps recbole==1.2.1"
    )


def check_dataset_name(name: str) -> None:
    """Raise a DataError listing the valid names when ``name`` is not one of :data:`DATASETS`."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


def source_files(name: str, data_dir: str | Path | None = None) -> tuple[SourceFile, ...]:
    """The files ``name`` is made from, with md5s; missing files raise a DataError naming them."""
    check_dataset_name(name)
    if name == "ml-100k":
        path = ml100k_path()
        return (SourceFile(path, _md5(path)),)
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    origin = AUTHORS_ORIGIN.format(name=name)
    if not (directory / name).is_dir():
        raise DataError(
            f"dataset folder {directory / name} does not exist; copy {', '.join(AUTHORS_FILES)} there from {origin}, "
            "or point --data-dir / HARNESS_DATA_DIR at the folder that holds yc/, ks/, zhihu/"
        )
    out = []
    for fname in AUTHORS_FILES:
        path = directory / name / fname
        if not path.is_file():
            if name == "ks" and fname == "train_data.df":
                raise DataError(
                    f"file {path} is missing: ks has no train split in this copy (only val and test were "
                    f"obtainable); copy train_data.df from {origin} to use ks"
                )
            raise DataError(f"file {path} is missing; copy {fname} from {origin}")
        out.append(SourceFile(path, _md5(path), KNOWN_MD5.get(f"{name}/{fname}")))
    return tuple(out)


def _cache_path(name: str, sources: tuple[SourceFile, ...], cache_dir: Path) -> Path:
    from harness.data.builder import BUILDER_VERSION

    key = hashlib.sha256(f"cache={CACHE_VERSION};builder={BUILDER_VERSION};{name}".encode())
    for src in sources:
        key.update(f";{src.path.name}={src.md5}".encode())
    return cache_dir / f"{name}-{key.hexdigest()[:16]}.npz"


def _read_cache(path: Path, name: str) -> SequenceSplits | None:
    """The cached splits, or None when the file is absent, unreadable or fails its checksum."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            parts = {
                which: Split(*(np.asarray(z[f"{which}_{f}"], dtype=np.int64) for f in SPLIT_FIELDS))
                for which in ("train", "val", "test")
            }
            n_items, checksum = int(z["n_items"]), str(z["checksum"])
    except Exception:  # any damage (truncated zip, missing key, bad dtype) means: rebuild
        return None
    if content_checksum(parts["train"], parts["val"], parts["test"], n_items) != checksum:
        return None
    return SequenceSplits(name=name, n_items=n_items, checksum=checksum, **parts)


def _write_cache(path: Path, splits: SequenceSplits) -> None:
    """Write atomically (temp file + os.replace); a cache that cannot be written only warns."""
    arrays = {
        f"{which}_{f}": getattr(splits.split(which), f)
        for which in ("train", "val", "test")
        for f in SPLIT_FIELDS
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as fh:
            tmp = Path(fh.name)
            np.savez(fh, n_items=np.int64(splits.n_items), checksum=np.str_(splits.checksum), **arrays)
        os.chmod(tmp, 0o644)  # NamedTemporaryFile creates 0600; a cache is plain readable data
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the data cache {path} ({exc}); the dataset will be rebuilt next time")


def _build(name: str, sources: tuple[SourceFile, ...]) -> SequenceSplits:
    if name == "ml-100k":
        import pandas as pd

        from harness.data.builder import build_splits

        log = pd.read_csv(sources[0].path, sep="\t", usecols=["user_id:token", "item_id:token", "timestamp:float"])
        log.columns = ["user", "item", "timestamp"]
        return build_splits(log, name)
    from harness.data import pickles

    return pickles.load_authors_splits(sources[0].path.parent, name, AUTHORS_ORIGIN.format(name=name))


def load_dataset(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> SequenceSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`) as train/val/test rows (history [N,10], length [N], target [N],
    sequence [N]).

    ``data_dir`` defaults to :func:`default_data_dir`, ``cache_dir`` to :func:`default_cache_dir`.
    A source file whose md5 differs from the known release is used anyway, with a warning.
    """
    sources = source_files(name, data_dir)
    for src in sources:
        if src.matches_release is False:
            warnings.warn(
                f"{src.path}: md5 {src.md5} differs from the authors' release ({src.known_md5}); using it anyway — "
                "results identify the data by its content checksum",
                stacklevel=2,
            )
    path = _cache_path(name, sources, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    splits = _read_cache(path, name)
    if splits is None:
        splits = _build(name, sources)
        _write_cache(path, splits)
    return splits
