#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine (Debian packages, venv, helm/kubectl, base image,
# registry), then run the whole test suite against the real local engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
