"""Least privilege for builds of generated Dockerfiles, and whether the engine is known to be escapable.

What was measured on these machines (Debian 12, rootful podman 4.3.1 with buildah 1.28.2, runc):
- `--cap-drop=ALL --cap-add=<BUILD_CAPABILITIES>` works: pip installs, file ownership in the image is right.
  It takes away NET_BIND_SERVICE, SETPCAP and SYS_CHROOT from podman's default build set; what is left is what
  package managers need (chown, setuid/setgid for apt's sandbox user, file capabilities for dpkg).
- `--security-opt=no-new-privileges` is refused by `podman build` 4.3 ("no-new-privileges is not supported").
- A user namespace for the build (`--userns=auto` with a `containers` range in /etc/subuid, or explicit
  `--userns-uid-map/--userns-gid-map`) builds, but the layers it commits keep the host-side IDs: files the build
  creates are owned by uid 2147483647 (or 1000000) in the image. A broken image is not hardening, so it is not used.
- No host devices: podman build passes none unless `--device` is given, and KubeVibe never gives it; a Dockerfile's
  `RUN --device` is refused by the pre-check (kubevibe.dockerfile).
Docker's `docker build` (BuildKit) has no flags for capabilities; there the pre-check is the mitigation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Capabilities a build step keeps (everything else is dropped).
BUILD_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETFCAP", "SETGID", "SETUID")
# First releases with the fix for the RUN --mount symlink escape (CVE-2024-1753).
FIXED_PODMAN = (5, 0, 1)
FIXED_BUILDAH = (1, 35, 3)


def podman_hardening_flags() -> list[str]:
    return ["--cap-drop=ALL", f"--cap-add={','.join(BUILD_CAPABILITIES)}"]


def _version(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(x or 0) for x in m.groups()) if m else None


@dataclass(frozen=True)
class EscapeStatus:
    podman: str | None
    buildah: str | None
    vulnerable: bool | None  # None: versions unknown
    mitigations: tuple[str, ...]

    def text(self) -> str:
        versions = f"podman {self.podman or '?'}, buildah {self.buildah or '?'}"
        if self.vulnerable is None:
            state = "versions unknown"
        elif self.vulnerable:
            state = (f"known vulnerable to build-time escapes (CVE-2024-1753 class; fixed in podman "
                     f"{'.'.join(map(str, FIXED_PODMAN))} / buildah {'.'.join(map(str, FIXED_BUILDAH))}; Debian 13's "
                     f"podman 5.4 has the fix)")
        else:
            state = "not known vulnerable to build-time escapes"
        return f"{versions}: {state}; mitigations in force: {'; '.join(self.mitigations)}"


def escape_status(podman_version: str | None, buildah_version: str | None) -> EscapeStatus:
    podman, buildah = _version(podman_version), _version(buildah_version)
    vulnerable = None
    if podman is not None or buildah is not None:
        vulnerable = (podman is not None and podman < FIXED_PODMAN) or (buildah is not None and buildah < FIXED_BUILDAH)
    mitigations = (
        "Dockerfile pre-check before every build (bind/cache mounts from stages, writable binds, --network, "
        "--security, --device refused)",
        f"build capabilities limited to {', '.join(BUILD_CAPABILITIES)}",
        "no host devices",
        "no user namespace (podman 4.3 commits host-side IDs into the image; see docs/security.md)",
    )
    return EscapeStatus(podman_version, buildah_version, vulnerable, mitigations)
