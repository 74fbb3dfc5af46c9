#!/usr/bin/env bash
# Runs the test suite. The services it needs (Redis, one local Ray cluster) are started by the test
# session itself (tests/conftest.py) and stopped when it ends; this wrapper is the backstop that leaves
# no Ray or Redis process behind even if pytest is killed.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
"$VENV/bin/python" -m pytest -q "$@"
code=$?
"$VENV/bin/ray" stop --force >/dev/null 2>&1 || true
exit $code
