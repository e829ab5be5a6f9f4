"""Shared fixtures: small simulated DATA-001 files with known truth (see helpers.py)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyrecon.data import save_dataset
from helpers import simulated_dataset, write_study_tree


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_the_tests() -> Iterator[None]:
    """Give SIGINT Python's usual handler for the session.

    A shell that starts the suite in the background (`pytest &`, a CI step run that way)
    hands it SIGINT ignored, and the processes it starts inherit that: the Ctrl-C tests
    would then test nothing. A handled signal is reset to the default in a started process,
    so this covers the subprocesses as well.
    """
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1e5-photon dataset (32x32 patterns) saved as DATA-001."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_dataset(path, simulated_dataset())
    return path


@pytest.fixture(scope="session")
def study_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A complete 3-dose study tree (read-only: copy it before changing anything)."""
    return write_study_tree(tmp_path_factory.mktemp("study"))


@pytest.fixture
def tree(study_tree: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the study tree (phase_c/ and phase_d/); returns its root."""
    root = tmp_path / "study"
    shutil.copytree(study_tree[0], root / "phase_c")
    shutil.copytree(study_tree[1], root / "phase_d")
    return root
