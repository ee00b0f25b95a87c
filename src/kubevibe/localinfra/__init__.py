"""Local infrastructure that KubeVibe sets up once and then reuses.

  apt.py        the Debian mirror debootstrap uses (KUBEVIBE_DEBIAN_MIRROR, else this machine's apt sources)
  baseimage.py  the stand-ins for the official python images (debootstrap, podman import, the python layer)
  registry.py   the loopback registry on 127.0.0.1:$KUBEVIBE_REGISTRY_PORT, started on demand
  doctor.py     `kubevibe doctor` (one check per need, each with its fix), `kubevibe setup`, status
  common.py     where their files live (under KUBEVIBE_HOME), the podman binary

From the command line: `kubevibe setup`, `kubevibe doctor`, `kubevibe setup --stop-registry`.
"""
