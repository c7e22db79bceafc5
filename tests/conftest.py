"""Shared fixtures: the tiny model (built once per session) and a sample split in a temporary folder."""

from pathlib import Path

import pytest

from solution.config import load_config
from solution.sample_split import make_sample_split


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from solution.model import build_model

    return build_model(tiny_cfg)


@pytest.fixture(scope="session")
def sample_tasks(tmp_path_factory) -> Path:
    """tasks.json of the generated sample split (4 QA, 2 captioning tasks with real encoded media)."""
    return make_sample_split(tmp_path_factory.mktemp("sample") / "split")
