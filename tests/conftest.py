"""Shared fixtures: small simulated DATA-001 files with known truth (see helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flyrecon.data import save_dataset
from helpers import simulated_dataset, write_study_tree


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
