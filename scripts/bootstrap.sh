#!/usr/bin/env bash
# Set up a fresh Debian (bookworm) machine for KubeVibe development and CI. Idempotent: every step is skipped
# when already done, so running it again is cheap.
#
#   1. Debian packages: podman and its runtime/network helpers, debootstrap, docker-registry, graphviz, python3-venv
#   2. .venv in the repository root, with `pip install -e ".[dev,embedded]"` (--test: also the `ray` extra)
#   3. pinned helm and kubectl binaries in .venv/bin  (python -m kubevibe.tools install)
#   4. `kubevibe setup`: podman config, local base image (debootstrap + build), local registry
#
# Usage: scripts/bootstrap.sh [--no-setup] [--test]
#   --no-setup   stop after step 3 (no base image, no registry)
#   --test       also install what only the tests need (headless Chromium for the report test)
#
# Needs root for apt-get (or sudo) and for the base image (debootstrap). System files are not edited: podman is
# configured through a containers.conf under KubeVibe's data directory (CONTAINERS_CONF), not /etc/containers.
set -euo pipefail


REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.kubevibe-install-stamp"

# Why each package:
#   podman runc         - the engine; runc because the default crun fails on hybrid cgroups (podman_conf.py)
#   uidmap catatonit    - podman helpers (user namespaces; catatonit builds the pause image for `kube play`)
#   netavark aardvark-dns iptables - container networking (bridge, DNS, port publishing)
#   fuse-overlayfs slirp4netns     - storage/network for rootless podman (not needed as root, small)
#   debootstrap debian-archive-keyring gpgv wget - the local base image without a public registry
#   docker-registry     - the local image registry (CNCF distribution 2.8)
#   graphviz            - `dot`, to render the pipeline charts
#   python3-venv        - to create .venv; tar, ca-certificates - base image import and TLS
PACKAGES=(
  podman runc uidmap catatonit netavark aardvark-dns iptables fuse-overlayfs slirp4netns
  debootstrap debian-archive-keyring gpgv wget docker-registry graphviz python3-venv tar ca-certificates
)
# Only for the tests (--test): the HTML report's browser test (the fonts are only a recommend of chromium).
TEST_PACKAGES=(chromium fonts-liberation)

RUN_SETUP=1
EXTRAS="dev,embedded"
for arg in "$@"; do
  case "$arg" in
    --no-setup) RUN_SETUP=0 ;;
    --test)
      PACKAGES+=("${TEST_PACKAGES[@]}")
      EXTRAS="dev,embedded,ray" # the Ray executor's tests start a real local Ray cluster
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "bootstrap: unknown option: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
step_start() { STEP_T0=$SECONDS; }
step_done() { say "$1 ($((SECONDS - STEP_T0))s)"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "bootstrap: '$*' needs root; run this script as root or install sudo" >&2
    exit 1
  fi
}

# --- 1. Debian packages -----------------------------------------------------------------------------------------
step_start
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  say "Debian packages: all ${#PACKAGES[@]} present (skipped)"
else
  say "Debian packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  # --no-install-recommends: the list above is complete; recommends would add buildah, dbus and more.
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  step_done "Debian packages installed"
fi

# --- 2. virtualenv + project ------------------------------------------------------------------------------------
step_start
if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "bootstrap: KubeVibe needs Python >= 3.11; python3 is $(python3 --version 2>&1)" >&2
  exit 1
fi
if [ -x "$VENV/bin/python" ]; then
  say "virtualenv: $VENV exists (skipped)"
else
  say "virtualenv: creating $VENV"
  python3 -m venv "$VENV"
fi

# Reinstall only when the dependency declaration changed since the last successful install.
want_stamp="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1) $EXTRAS"
have_stamp="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want_stamp" = "$have_stamp" ] && "$VENV/bin/python" -c 'import kubevibe' 2>/dev/null; then
  say "Python packages: up to date with pyproject.toml (skipped)"
else
  say "Python packages: pip install -e \".[$EXTRAS]\" (a few minutes on a fresh machine)"
  step_start
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO_ROOT[$EXTRAS]"
  echo "$want_stamp" >"$STAMP"
  step_done "Python packages installed"
fi

# --- 3. helm + kubectl ------------------------------------------------------------------------------------------
step_start
say "helm/kubectl: checking pinned binaries in $VENV/bin"
"$VENV/bin/python" -m kubevibe.tools install "$VENV/bin"
step_done "helm/kubectl ready"

# --- 4. kubevibe setup ------------------------------------------------------------------------------------------
if [ "$RUN_SETUP" -eq 0 ]; then
  say "kubevibe setup: skipped (--no-setup)"
  exit 0
fi
step_start
say "kubevibe setup: podman config, base image, registry (about 2 minutes the first time)"
"$VENV/bin/kubevibe" setup
step_done "kubevibe setup done"
say "Ready. Check with: $VENV/bin/kubevibe doctor"
