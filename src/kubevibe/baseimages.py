"""Faithful local stand-ins for the official `python:3.X-slim` images, and which one a FROM line gets.

No public registry is reachable here, so `FROM python:3.11-slim` cannot be pulled. The stand-ins are built from
Debian packages (debootstrap) and laid out like the official images (docker-library/python), because correct
Dockerfiles rely on that layout:

* Python under /usr/local: `python`, `python3`, `pip`, `pip3` in /usr/local/bin, packages in
  /usr/local/lib/pythonX.Y/site-packages, where `pip install`, `pip install --prefix=/install` + `COPY --from`,
  and console scripts (`/usr/local/bin/uvicorn`, `gunicorn`) land. Made as a venv whose prefix *is* /usr/local
  over Debian's python3 (so PEP 668 does not apply and `sys.prefix` is /usr/local), with system site packages
  on (so `pip install --user` works as in the official image; Debian's own dist-packages is empty here).
* The official environment: PATH with /usr/local/bin first, LANG=C.UTF-8, PYTHON_VERSION (the Debian build's
  exact version), PYTHON_PIP_VERSION; user root, WORKDIR /, CMD ["python3"].
* Nothing pre-installed beyond what the official image ships (pip; setuptools and wheel on 3.11), so a
  requirements.txt that forgets gunicorn fails here as it would there.

One stand-in per Debian suite that is reachable: 3.11 from bookworm, 3.13 from trixie. Every other python tag
maps to the nearest, and the mapping note (recorded, and shown to Fix) says what differs. docs/local-engine.md
lists the differences from the official images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubevibe.imageref import DOCKER_HUB_NAMES, parse_image_ref

IMAGE_REPOSITORY = "localhost/kubevibe/python-std"  # a new name: the older venv image stays for older checkouts
ROOTFS_REPOSITORY = "localhost/kubevibe/debian-minbase"
# What the official slim image's Debian layer has (ca-certificates, netbase, tzdata) plus python3 and its venv
# module (ensurepip), and adduser (present in the official images' Debian base).
DEBOOTSTRAP_INCLUDE = ("python3", "python3-venv", "ca-certificates", "netbase", "tzdata", "adduser")


@dataclass(frozen=True)
class StandIn:
    """One local stand-in image: a Python minor version from one Debian suite."""

    python: str  # "3.11"
    suite: str  # "bookworm"
    extra_packages: tuple[str, ...] = ()  # what the official image adds beyond pip (PyPI names)
    # Other versions mapped here: /usr/local/lib/pythonX.Y and /usr/local/bin/pythonX.Y point to this one, so
    # `COPY --from=builder /usr/local/lib/python3.12/site-packages ...` and `CMD ["python3.12", ...]` still work.
    aliases: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.python}-slim-{self.suite}"

    @property
    def rootfs_image(self) -> str:
        return f"{ROOTFS_REPOSITORY}:{self.suite}"

    @property
    def minor(self) -> int:
        return int(self.python.split(".")[1])


# The official 3.11 images ship setuptools and wheel next to pip; 3.12 and later ship pip only.
STAND_INS = (
    StandIn("3.11", "bookworm", ("setuptools==79.0.1", "wheel==0.45.1"), aliases=("3.8", "3.9", "3.10", "3.12")),
    StandIn("3.13", "trixie", aliases=("3.14", "3.15")),
)
DEFAULT_STAND_IN = STAND_INS[0]  # built by `kubevibe setup`; the others on first need


def stand_in_for_version(python: str) -> StandIn:
    for stand_in in STAND_INS:
        if stand_in.python == python:
            return stand_in
    raise KeyError(python)


def stand_in_by_image(image: str) -> StandIn | None:
    return next((s for s in STAND_INS if s.image == image), None)


# --- the choice for one FROM image (pure) ---------------------------------------------------------------------------

_TAG_RE = re.compile(r"^(?P<version>3(?:\.\d+){0,2})?(?:-?(?P<variant>[a-z][a-z0-9.-]*))?$")
NEWEST_OFFICIAL_MINOR = 13  # what `python:latest`, `python:3` and `python:slim` stand for here (the newest stand-in)

ALPINE_ADVICE = (
    "the image here is Debian, not Alpine: `apk` is not available and BusyBox `adduser -D`/`-S` does not exist. "
    "Use `FROM python:{version}-slim`, `apt-get update && apt-get install -y --no-install-recommends PACKAGES` "
    "(Debian package names) instead of `apk add`, and `useradd --create-home --uid 1000 NAME` (or `adduser "
    "--disabled-password --gecos '' NAME`) instead of `adduser -D NAME`"
)


@dataclass(frozen=True)
class Choice:
    stand_in: StandIn
    notes: tuple[str, ...]  # how the stand-in differs from what was asked (empty: a faithful match)
    requested: str  # "3.11", "3.12.4", "latest"...
    variant: str  # "slim", "slim-bookworm", "alpine", "" (the full image)...


def choose_stand_in(ref: str) -> Choice | None:
    """The stand-in for an official python image reference, or None if it is not one (other images, Windows)."""
    parsed = parse_image_ref(ref)
    if parsed.registry is not None and parsed.registry not in DOCKER_HUB_NAMES:
        return None
    if parsed.repository not in ("python", "library/python"):
        return None
    tag = parsed.tag or "latest"
    m = _TAG_RE.match(tag)
    if not m or (m.group("version") is None and m.group("variant") is None):
        return None
    version, variant = m.group("version"), m.group("variant") or ""
    if "windows" in variant or "nanoserver" in variant:
        return None
    if variant == "latest":
        variant = ""
    minor = int(version.split(".")[1]) if version and "." in version else NEWEST_OFFICIAL_MINOR
    # Ties (3.12) go to the older Python: requirements pinned for 3.12 nearly always have 3.11 wheels, while
    # older pins of compiled packages (pydantic-core, uvloop, numpy...) have no 3.13 wheels and would not build.
    stand_in = min(STAND_INS, key=lambda s: (abs(s.minor - minor), s.minor))
    notes: list[str] = []
    if version and "." in version and version.split(".")[1] != str(stand_in.minor):
        notes.append(f"Python {version} requested, the nearest local stand-in has Python {stand_in.python} "
                     f"(stand-ins exist for {', '.join(s.python for s in STAND_INS)})")  # fmt: skip
    elif version and version.count(".") == 2:
        notes.append(f"Python {version} requested, the local stand-in has Debian's {stand_in.python} patch release")
    elif not version or "." not in version:
        notes.append(f"`python:{tag}` taken as Python {stand_in.python}")
    suites = {s.suite for s in STAND_INS} | {"bullseye", "buster"}
    asked_suite = next((s for s in suites if s in variant), None)
    if asked_suite and asked_suite != stand_in.suite:
        notes.append(f"Debian {asked_suite} requested, the stand-in is Debian {stand_in.suite}")
    if "alpine" in variant:
        notes.append(ALPINE_ADVICE.format(version=stand_in.python))
    elif "slim" not in variant:
        notes.append("the full (non-slim) image is stood in for by the slim layout: compilers and -dev libraries "
                     "(gcc, libpq-dev...) and curl/git are not pre-installed; install them with apt-get")  # fmt: skip
    return Choice(stand_in, tuple(notes), version or "latest", variant)


def python_image_match(ref: str) -> tuple[bool, str | None]:
    """(is an official python 3 image, note about how the stand-in differs or None)."""
    choice = choose_stand_in(ref)
    if choice is None:
        return False, None
    return True, ("; ".join(choice.notes) or None)


# --- the stand-in's Containerfile (pure) ----------------------------------------------------------------------------


def render_containerfile(stand_in: StandIn, *, python_version: str, pip_version: str, ca_bundle_path: str) -> str:
    """Layer 2 of a stand-in, on its debootstrap root file system. One RUN, no pip cache left behind."""
    py = stand_in.python
    aliases = "".join(f" \\\n && ln -sT python{py} /usr/local/lib/python{a} && ln -sT python3 /usr/local/bin/python{a}"
                      for a in stand_in.aliases)
    extra = " ".join(stand_in.extra_packages)
    install_extra = (f" \\\n && pip install --no-cache-dir --no-compile --disable-pip-version-check {extra}"
                     if extra else "")  # fmt: skip
    return f"""\
# Generated by KubeVibe (kubevibe.baseimages): a local stand-in for the official python:{py}-slim-{stand_in.suite}.
FROM {stand_in.rootfs_image}
LABEL org.opencontainers.image.title="kubevibe-python-std" \\
      org.opencontainers.image.description="Debian {stand_in.suite} python{py} laid out like python:{py}-slim"
# Trust the host's CA bundle (it may include a TLS-intercepting proxy's CA): pip, requests and OpenSSL use it.
COPY ca-certificates.crt {ca_bundle_path}
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 \\
    PYTHON_VERSION={python_version} \\
    PYTHON_PIP_VERSION={pip_version} \\
    SSL_CERT_FILE={ca_bundle_path} \\
    REQUESTS_CA_BUNDLE={ca_bundle_path} \\
    PIP_CERT={ca_bundle_path}
# A venv whose prefix is /usr/local: python, pip and site-packages where the official image has them.
RUN set -eux \\
 && rm -f /usr/lib/python{py}/EXTERNALLY-MANAGED \\
 && python3 -m venv --system-site-packages /usr/local \\
 && rm -f /usr/local/bin/activate /usr/local/bin/activate.* /usr/local/bin/Activate.ps1 \\
 && ln -sfT python3 /usr/local/bin/python \\
 && ln -sfT pip3 /usr/local/bin/pip{install_extra}{aliases} \\
 && python -c "import sys; assert sys.prefix == '/usr/local', sys.prefix" \\
 && rm -rf /root/.cache /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
WORKDIR /
CMD ["python3"]
"""
