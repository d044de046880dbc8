"""How the suite is spread over pytest-xdist workers (``--dist loadgroup``, tox.ini).

A test that uses a module-scoped fixture of its test file (a trained run, a reproduced table)
joins that fixture's group: the whole group runs on one worker, in file order, so the fixture
is built once and the tests that build on one another's changes to it see them. Every other
test is handed out on its own, so that one long file no longer holds the suite's wall time.
"""

from __future__ import annotations

import os

import pytest


def shared_fixture(item: pytest.Item) -> str | None:
    """The first module-scoped fixture of the test's own file that the test uses, itself or
    through another fixture, or None. A fixture that only comes in as autouse does not count:
    that is per-worker set-up (an environment variable), not shared work."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in info.names_closure:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if getattr(fixturedef, "_autouse", False):  # pytest >= 8.1 marks them
                continue
            if fixturedef.scope == "module" and item.nodeid.startswith(fixturedef.baseid or "\0"):
                return name
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist tags the grouped node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = shared_fixture(item)
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}::{name}"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker trains on its share of the cores (torch's default is all
    of them in every worker: two workers on two cores ran four threads and took 29 minutes
    instead of about half that)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // int(workers)))


@pytest.fixture(autouse=True)
def _keep_the_workers_thread_count():
    """Every test leaves torch's thread count as it found it. The command-line mains a test calls
    in-process (``harness.run.main`` and the others) set it to their ``--threads``, by default
    every core: left so, every later test on that worker ran two threads beside the other
    worker's, and one 100-second test (IPS on zhihu) took 993 s in the suite."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
