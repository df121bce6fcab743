"""Shared fixtures: a per-session QM9 cache so no test touches the user's cache."""

import pytest


@pytest.fixture(scope="session")
def qdf_cache_dir(tmp_path_factory):
    """A session-wide cache dir for QM9 databases (QDF_CACHE_DIR)."""
    return tmp_path_factory.mktemp("qdf_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(qdf_cache_dir, monkeypatch):
    monkeypatch.setenv("QDF_CACHE_DIR", str(qdf_cache_dir))
