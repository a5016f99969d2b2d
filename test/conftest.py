"""Shared pytest fixtures for bevanet_ros.

- ``shared_data``: the real-data folder (``$BEVANET_DATA`` or ``<repo>/../shared/data``),
  skipping the test with a reason that names the path when it is absent.
- every test starts from the same seeds (python, numpy, torch), so random models and
  inputs are identical run to run.
- torch uses at most 2 intra-op threads: the CI box has 2 cores.
- a failure is printed (its test id and the end of its report) the moment it happens, besides in
  the summary at the end: a run that crashes or is killed later still says what failed.
- a crash (SIGSEGV, SIGABRT, ...) writes every thread's Python stack to ``$BEVANET_CRASH_LOG``
  when that is set (``scripts/test.sh`` sets it and prints the file): the fault handler is armed
  again before each test, since a native library may install its own handler over it.
"""

from __future__ import annotations

import faulthandler
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the package-layout checks run without torch too
    torch = None

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = 0

if torch is not None:
    torch.set_num_threads(2)

_CRASH_LOG = None
if os.environ.get("BEVANET_CRASH_LOG"):
    _CRASH_LOG = open(os.environ["BEVANET_CRASH_LOG"], "a", buffering=1)  # noqa: SIM115 (open for the whole run)


def pytest_runtest_logstart(nodeid, location) -> None:
    if _CRASH_LOG is not None:
        _CRASH_LOG.write(f"[start] {nodeid}\n")
        faulthandler.enable(file=_CRASH_LOG, all_threads=True)


def pytest_runtest_logreport(report) -> None:
    if not report.failed:
        return
    lines = str(report.longrepr).splitlines()[-25:]
    print(f"\n[failed] {report.nodeid} ({report.when})", *("  " + line for line in lines), sep="\n", flush=True)


def shared_data_root() -> Path:
    """Shared data folder: ``$BEVANET_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("BEVANET_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the colcon package folder)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data folder; skips the test when it does not exist."""
    root = shared_data_root()
    if not root.is_dir():
        origin = "$BEVANET_DATA" if os.environ.get("BEVANET_DATA") else "<repo>/../shared/data"
        pytest.skip(
            f"shared data folder missing: {root} ({origin}); set BEVANET_DATA or put shared/ beside the repository"
        )
    return root


@pytest.fixture(autouse=True)
def _seed_everything() -> Iterator[None]:
    """Seed python, numpy and torch before every test."""
    random.seed(SEED)
    np.random.seed(SEED)
    if torch is not None:
        torch.manual_seed(SEED)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on two shared, busy cores two OpenMP threads mostly wait
    on each other. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def camvid_subset(shared_data):
    """A factory of small CamVid copies: `camvid_subset(root, train=2, val=1)` copies the first
    `train` pairs of train.lst and the first `val` of val.lst (or, with `val_from_train=True`, of
    train.lst) under `root` with their list files, and returns `root`."""

    def make(root: Path, train: int = 2, val: int = 1, val_from_train: bool = False) -> Path:
        src = shared_data / "camvid"
        root.mkdir(parents=True, exist_ok=True)
        chosen = {
            "train.lst": (src / "train.lst").read_text().splitlines()[:train],
            "val.lst": (src / ("train.lst" if val_from_train else "val.lst")).read_text().splitlines()[:val],
        }
        for list_name, lines in chosen.items():
            for line in lines:
                for rel in line.split():
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src / rel, root / rel)
            (root / list_name).write_text("\n".join(lines) + "\n")
        return root

    return make
