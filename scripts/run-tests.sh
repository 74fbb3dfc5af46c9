#!/usr/bin/env bash
# Runs the test suite. The services it needs (a Redis server, one local Ray cluster) are started by the
# test session itself (tests/conftest.py and the area conftests) and stopped when it ends; each Ray
# cluster runs in its own process session and is ended by session, so no other Ray on the machine is
# touched (this script never calls `ray stop`, which would end every Ray cluster of the user).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
exec "$VENV/bin/python" -m pytest -q "$@"
