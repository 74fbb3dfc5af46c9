"""Fixtures for the raycluster integration tests: one build of the package jobs ship, per session."""

import pytest


@pytest.fixture(scope="session")
def job_package_cache(tmp_path_factory):
    """Jobs in these tests build and ship wanray from a session folder (never ~/.cache)."""
    cache = tmp_path_factory.mktemp("wanray_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANRAY_CACHE_DIR", str(cache))
        yield cache
