"""Fixtures for the raycluster integration tests: one build of the package jobs ship, per session."""

import json

import pytest


@pytest.fixture(scope="session")
def job_package_cache(tmp_path_factory):
    """Jobs in these tests build and ship wanray from a session folder (never ~/.cache)."""
    cache = tmp_path_factory.mktemp("wanray_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANRAY_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture
def printed_json():
    """The JSON object a command printed, from its `{` line to its `}` line.

    The test process is itself a connected Ray driver, so Ray may print its own lines (e.g. a raylet
    warning about worker processes) into the same captured stdout as the command under test.
    """
    def parse(out: str) -> dict:
        lines = out.splitlines()
        start = lines.index("{")
        end = len(lines) - lines[::-1].index("}")
        return json.loads("\n".join(lines[start:end]))

    return parse
