"""The Debian mirror that debootstrap uses: KUBEVIBE_DEBIAN_MIRROR, else the one this machine's apt reads.

Also the host's Debian suite (/etc/debian_version), the default suite of the base image.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubevibe.errors import KubeVibeError
from kubevibe.settings import machine_setting

DEBIAN_CODENAMES = {11: "bullseye", 12: "bookworm", 13: "trixie", 14: "forky"}


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_one_line_sources(text: str) -> list[AptSource]:
    """`deb [options] URI SUITE COMPONENTS...` lines (sources.list format); deb-src and comments skipped."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [signed-by=... arch=...]
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            out.append(AptSource(parts[1].rstrip("/"), (parts[2],), tuple(parts[3:])))
    return out


def parse_deb822_sources(text: str) -> list[AptSource]:
    """The `.sources` format: stanzas of `Types:`, `URIs:`, `Suites:`, `Components:`, separated by blank lines."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "").split())))  # fmt: skip
    return out


def read_apt_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    """All `deb` sources apt itself would read (sources.list, sources.list.d/*.list and *.sources)."""
    sources: list[AptSource] = []
    main = root / "sources.list"
    if main.is_file():
        sources += parse_one_line_sources(main.read_text(errors="replace"))
    for path in sorted(glob.glob(str(root / "sources.list.d" / "*"))):
        if path.endswith(".list"):
            sources += parse_one_line_sources(Path(path).read_text(errors="replace"))
        elif path.endswith(".sources"):
            sources += parse_deb822_sources(Path(path).read_text(errors="replace"))
    return sources


def choose_debian_mirror(sources: Sequence[AptSource], suite: str = "bookworm") -> str | None:
    """A main Debian archive (not security/updates/backports): one that lists `suite` first, else any Debian one."""

    def is_archive(src: AptSource) -> bool:
        return (
            src.uri.startswith(("http://", "https://", "file:/"))
            and "security" not in src.uri
            and "main" in src.components
            and any(s and "-" not in s and "/" not in s for s in src.suites)
        )

    candidates = [s for s in sources if is_archive(s)]
    for src in candidates:
        if suite in src.suites:
            return src.uri
    for src in candidates:
        if "debian" in src.uri:
            return src.uri
    return None


def debian_mirror(suite: str | None = None) -> str:
    """KUBEVIBE_DEBIAN_MIRROR if set, else the Debian mirror this machine's apt uses (for `suite` if listed)."""
    override = machine_setting("debian_mirror")
    if override:
        return override
    mirror = choose_debian_mirror(read_apt_sources(), suite or host_debian_suite() or "bookworm")
    if mirror is None:
        raise KubeVibeError(
            "No Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d.",
            "Set KUBEVIBE_DEBIAN_MIRROR, e.g. KUBEVIBE_DEBIAN_MIRROR=http://deb.debian.org/debian.",
        )
    return mirror


def host_debian_suite(path: Path = Path("/etc/debian_version")) -> str | None:
    """The host's Debian suite from /etc/debian_version ("12.11" -> bookworm, "trixie/sid" -> trixie)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    major = text.split(".", 1)[0]
    if major.isdigit():
        return DEBIAN_CODENAMES.get(int(major))
    return text.split("/", 1)[0] or None
