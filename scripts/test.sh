#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine (Debian packages, venv, helm/kubectl, base image,
# registry), then run the whole test suite against the real local engine.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not engine"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test
# The registry is started by setup for the tests; leave no daemon behind when they end (runs restart it on demand).
trap '.venv/bin/kubevibe setup --stop-registry >/dev/null 2>&1 || true' EXIT
.venv/bin/python -m pytest "$@"
