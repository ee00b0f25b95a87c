"""A stand-in Kubernetes API server on loopback, for driving the REAL kubectl and helm binaries in tests.

What it is: a small in-memory HTTP server (stdlib ThreadingHTTPServer, plain HTTP on 127.0.0.1) that answers the
subset of the Kubernetes REST API that KubeVibe's kubectl and helm commands send, in the JSON shapes the real API
server uses:
  * discovery: /version, /api, /api/v1, /apis, /apis/<group>/<version> (legacy, non-aggregated discovery: kubectl
    and helm fall back to it when the answer is plain application/json); /openapi/v3 lists each group-version and
    its document holds only each kind's PATCH operation with its query parameters (kubectl reads them to decide it
    may send fieldValidation=Strict); /openapi/v2 answers 404;
  * namespaces: create, get, list with label selectors, delete (the namespace turns Terminating and disappears
    after `namespace_delete_delay` seconds, taking its objects with it, as the namespace controller does);
  * namespaced objects (pods, services, configmaps, secrets, events, serviceaccounts, deployments, ...): create
    (POST), server-side apply (PATCH application/apply-patch+yaml), JSON merge patch (kubectl annotate), get, list
    (labelSelector with `k=v`, `k!=v`, `k`), delete; `dryRun=All` validates without storing; creating in a missing
    or terminating namespace fails like the real server;
  * pods/<name>/log with `container`, `previous`, `tailLines`;
  * pods/<name>/portforward over SPDY/3.1 (the protocol kubectl falls back to when the WebSocket upgrade it tries
    first is refused, which the stand-in does): each forwarded connection is relayed to a TCP port on loopback that
    the test registered with `forward(namespace, pod, port, local_port)`, standing in for the container; a port
    with nothing registered or nothing listening gets the kubelet's error on the error stream.
Admission is a short, real-looking rule set (`admission()`): names must be DNS-1123, containers need an image, a
Service needs ports; failures come back as 422 Status objects with causes, worded like the real server's.

What it is NOT: no controllers run. A Deployment does not create ReplicaSets or pods by itself; a test decides
what the "cluster" does by calling `standin.on_apply` (a hook that may add pods and events, usually copied from
the recorded real JSON in tests/fixtures/k8s/) or `standin.put(...)`. No watch, no scheduling, no kubelet (pod
"containers" are whatever the test forwards to), no WebSocket streams, no exec/attach, no authentication, no
OpenAPI schemas (only the PATCH parameters kubectl looks for), no aggregated discovery, no strategic merge
semantics (server-side apply replaces the stored object with the applied one). So tests against it show
that the commands KubeVibe builds are accepted by real kubectl/helm, that their requests reach the API paths
expected, and that KubeVibe reads the answers correctly; they do not show how a real cluster behaves.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

SERVER_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kubevibe-standin", "gitCommit": "standin",
                  "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                  "compiler": "gc", "platform": "linux/amd64"}  # fmt: skip

# (group, version) -> [(plural, kind, namespaced)], the resources the stand-in serves (each with all of _VERBS).
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [("namespaces", "Namespace", False), ("pods", "Pod", True), ("services", "Service", True),
                 ("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("events", "Event", True),
                 ("serviceaccounts", "ServiceAccount", True), ("persistentvolumeclaims", "PersistentVolumeClaim", True),
                 ("nodes", "Node", False)],
    ("apps", "v1"): [("deployments", "Deployment", True), ("replicasets", "ReplicaSet", True),
                     ("statefulsets", "StatefulSet", True), ("daemonsets", "DaemonSet", True)],
    ("batch", "v1"): [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    ("networking.k8s.io", "v1"): [("ingresses", "Ingress", True), ("networkpolicies", "NetworkPolicy", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
}  # fmt: skip
_SUBRESOURCES = {("", "v1"): [("pods/log", "Pod", True), ("pods/portforward", "PodPortForwardOptions", True),
                              ("namespaces/finalize", "Namespace", False)],
                 ("apps", "v1"): [("deployments/scale", "Scale", True)]}  # fmt: skip
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict[str, Any]:
    """A metav1.Status as the API server sends it for errors."""
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "code": code}  # fmt: skip
    if details:
        out["details"] = details
    return out


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b,c!=d,e` (what kubectl -l and helm send)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class KubeStandIn:
    """Start with `with KubeStandIn() as api:`; `api.kubeconfig(tmp_path)` writes a kubeconfig pointing at it."""

    def __init__(self, *, namespace_delete_delay: float = 0.3):
        self.namespace_delete_delay = namespace_delete_delay
        # (group, version, plural, namespace or "", name) -> object
        self.objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str, bool], str] = {}  # (namespace, pod, container, previous) -> text
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []  # (method, path, query)
        self.bodies: list[Any] = []  # parsed bodies of POST/PATCH/PUT requests, in order
        self.on_apply: Callable[[KubeStandIn, dict[str, Any]], None] | None = None
        self.forwards: dict[tuple[str, str, int], int] = {}  # (namespace, pod, pod port) -> loopback port
        self.forwarded: list[tuple[str, str, int]] = []  # connections relayed, in order
        self.lock = threading.RLock()
        self._deleting: dict[str, float] = {}  # namespace -> time it goes away
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rv = 1000

    # -- life cycle ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> "KubeStandIn":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, directory: Path, context: str = "standin") -> Path:
        """A kubeconfig with one cluster/user/context, `context`, pointing at this server over plain HTTP."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin-token-not-a-secret"}}],
            "contexts": [{"name": context, "context": {"cluster": "standin", "user": "standin"}}],
        }  # fmt: skip
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    # -- state, for tests ---------------------------------------------------------------------------------------------
    def put(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Store an object as the cluster would have it (e.g. a recorded pod), filling in metadata."""
        group, version = _split_api_version(obj["apiVersion"])
        plural = _plural_of(group, version, obj["kind"])
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if namespace is not None:
            meta["namespace"] = namespace
        self._fill_metadata(meta)
        with self.lock:
            self.objects[(group, version, plural, meta.get("namespace", ""), meta["name"])] = obj
        return obj

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        group, version = _split_api_version(api_version)
        with self.lock:
            self._reap()
            return self.objects.get((group, version, _plural_of(group, version, kind), namespace, name))

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        group, version = _split_api_version(api_version)
        plural = _plural_of(group, version, kind)
        with self.lock:
            self._reap()
            return [o for (g, v, p, ns, _), o in sorted(self.objects.items())
                    if (g, v, p) == (group, version, plural) and (namespace is None or ns == namespace)]  # fmt: skip

    def namespaces(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.list("v1", "Namespace")]

    def set_log(self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False) -> None:
        self.logs[(namespace, pod, container, previous)] = text

    def forward(self, namespace: str, pod: str, port: int, local_port: int) -> None:
        """Connections port-forwarded to `port` of `pod` go to 127.0.0.1:local_port (the stand-in's container)."""
        self.forwards[(namespace, pod, port)] = local_port

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.requests if method is None or m == method]

    # -- internals ----------------------------------------------------------------------------------------------------
    def _fill_metadata(self, meta: dict[str, Any]) -> None:
        self._rv += 1
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        meta["resourceVersion"] = str(self._rv)
        meta.setdefault("generation", 1)

    def _reap(self) -> None:
        """Finish namespace deletions whose time has come: the namespace and everything in it disappear."""
        now = time.monotonic()
        for namespace, when in list(self._deleting.items()):
            if now >= when:
                del self._deleting[namespace]
                for key in list(self.objects):
                    if key[3] == namespace or (key[2] == "namespaces" and key[4] == namespace):
                        del self.objects[key]


class _Handler(BaseHTTPRequestHandler):
    api: KubeStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------------------------------
    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self._raw
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "")
        if "protobuf" in ctype:
            raise _Reply(415, status(415, "UnsupportedMediaType", "the stand-in speaks JSON and YAML only"))
        data = yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw)
        self.api.bodies.append(data)
        return data

    def _dispatch(self, method: str) -> None:
        # Read the body first, always: an error answer must not leave it in the connection for the next request.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        with self.api.lock:
            self.api.requests.append((method, parts.path, query))
        try:
            code, body = self._route(method, parts.path.rstrip("/") or "/", query)
        except _Upgrade as upgrade:
            self._port_forward(upgrade.namespace, upgrade.pod)
            return
        except _Reply as reply:
            code, body = reply.code, reply.body
        except Exception as exc:  # a bug in a test's hook: answer like the real server would, and keep serving
            code, body = 500, status(500, "InternalError", f"stand-in error: {exc!r}")
        if isinstance(body, tuple):  # (text, content type)
            self._send(code, body[0], body[1])
        else:
            self._send(code, body)

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PUT = lambda self: self._dispatch("PUT")  # noqa: E731
    do_PATCH = lambda self: self._dispatch("PATCH")  # noqa: E731
    do_DELETE = lambda self: self._dispatch("DELETE")  # noqa: E731

    # -- routing ------------------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == "/version":
            return 200, SERVER_VERSION
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.api.url.removeprefix("http://")}]}
        if path == "/apis":
            groups = []
            for (group, version) in RESOURCES:
                if group:
                    gv = {"groupVersion": f"{group}/{version}", "version": version}
                    groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/openapi/v3":
            return 200, {"paths": {_gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash=standin"}
                                   for (g, v) in RESOURCES}}
        if path.startswith("/openapi/v3/"):
            return 200, _openapi_v3(path.removeprefix("/openapi/v3/"))
        m = re.fullmatch(r"/api/(v1)(/.*)?|/apis/([^/]+)/([^/]+)(/.*)?", path)
        if not m:
            raise _Reply(404, status(404, "NotFound", "the server could not find the requested resource"))
        group, version, rest = ("", m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4), m.group(5))
        if (group, version) not in RESOURCES:
            raise _Reply(404, status(404, "NotFound", "the server could not find the requested resource"))
        if not rest:
            return 200, _resource_list(group, version)
        segments = rest.strip("/").split("/")
        namespace = ""
        if segments[0] == "namespaces" and len(segments) >= 3:
            namespace, segments = segments[1], segments[2:]
        plural = segments[0]
        name = segments[1] if len(segments) > 1 else None
        sub = segments[2] if len(segments) > 2 else None
        info = _resource(group, version, plural)
        if info is None:
            raise _Reply(404, status(404, "NotFound", "the server could not find the requested resource"))
        with self.api.lock:
            self.api._reap()
            return self._serve(method, group, version, info, namespace, name, sub, query)

    def _serve(self, method: str, group: str, version: str, info: tuple[str, str, bool], namespace: str,
               name: str | None, sub: str | None, query: dict[str, list[str]]) -> tuple[int, Any]:
        plural, kind, namespaced = info
        api = self.api
        api_version = f"{group}/{version}" if group else version
        gr = f"{plural}.{group}" if group else plural
        key = (group, version, plural, namespace, name or "")
        dry_run = "All" in query.get("dryRun", [])
        if sub == "log":
            return self._log(namespace, name or "", query)
        if sub == "portforward":
            if method != "POST" or self.headers.get("Upgrade", "").lower() != "spdy/3.1":
                # kubectl tries a WebSocket upgrade first (GET) and falls back to SPDY when it is refused.
                raise _Reply(400, status(400, "BadRequest", "Upgrade request required"))
            pod = api.objects.get(("", "v1", "pods", namespace, name or ""))
            if pod is None:
                raise _Reply(404, status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}))
            raise _Upgrade(namespace, name or "")
        if sub is not None:
            raise _Reply(404, status(404, "NotFound", "the server could not find the requested resource"))
        if namespaced and namespace and method in ("POST", "PATCH", "PUT"):
            ns = api.objects.get(("", "v1", "namespaces", "", namespace))
            if ns is None:
                raise _Reply(404, status(404, "NotFound", f'namespaces "{namespace}" not found',
                                         {"name": namespace, "kind": "namespaces"}))
            if ns["status"].get("phase") == "Terminating":
                raise _Reply(403, status(403, "Forbidden", f'{gr} "{name or ""}" is forbidden: unable to create new '
                                         f"content in namespace {namespace} because it is being terminated"))
        if method == "GET" and name is None:
            selector = (query.get("labelSelector") or [""])[0]
            items = [copy.deepcopy(o) for (g, v, p, ns, _), o in sorted(api.objects.items())
                     if (g, v, p) == (group, version, plural) and (not namespace or ns == namespace)
                     and selector_matches(selector, o.get("metadata", {}).get("labels") or {})]  # fmt: skip
            return 200, {"kind": f"{kind}List", "apiVersion": api_version,
                         "metadata": {"resourceVersion": str(api._rv)}, "items": items}
        if method == "GET":
            obj = api.objects.get(key)
            if obj is None:
                raise _Reply(404, status(404, "NotFound", f'{gr} "{name}" not found',
                                         {"name": name, "group": group, "kind": plural}))
            return 200, obj
        if method == "POST" and name is None:
            obj = self._body() or {}
            return self._store(obj, group, version, plural, kind, namespace, create_only=True, dry_run=dry_run)
        if method == "PATCH" and name is not None:
            ctype = self.headers.get("Content-Type", "")
            obj = self._body() or {}
            if "merge-patch" in ctype:  # kubectl annotate/label: RFC 7386 JSON merge patch of a stored object
                current = api.objects.get(key)
                if current is None:
                    raise _Reply(404, status(404, "NotFound", f'{gr} "{name}" not found',
                                             {"name": name, "group": group, "kind": plural}))
                patched = _merge_patch(copy.deepcopy(current), obj)
                if not dry_run:
                    api._fill_metadata(patched["metadata"])
                    api.objects[key] = patched
                return 200, patched
            if "apply-patch" not in ctype:
                raise _Reply(415, status(415, "UnsupportedMediaType", f"the stand-in supports only server-side apply "
                                         f"and merge patches, not {ctype}"))
            if obj.get("metadata", {}).get("name") not in (None, name):
                raise _Reply(400, status(400, "BadRequest", "the name of the object does not match the name on the "
                                         "URL"))
            obj.setdefault("metadata", {})["name"] = name
            return self._store(obj, group, version, plural, kind, namespace, create_only=False, dry_run=dry_run)
        if method == "DELETE" and name is not None:
            obj = api.objects.get(key)
            if obj is None:
                raise _Reply(404, status(404, "NotFound", f'{gr} "{name}" not found',
                                         {"name": name, "group": group, "kind": plural}))
            if dry_run:
                return 200, obj
            if plural == "namespaces":
                if obj["status"].get("phase") != "Terminating":
                    obj["status"]["phase"] = "Terminating"
                    obj["metadata"]["deletionTimestamp"] = now_iso()
                    api._deleting[name] = time.monotonic() + api.namespace_delete_delay
                return 200, obj
            del api.objects[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": group, "kind": plural, "uid": obj["metadata"]["uid"]}}
        raise _Reply(405, status(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                 "resource"))

    def _store(self, obj: dict[str, Any], group: str, version: str, plural: str, kind: str, namespace: str, *,
               create_only: bool, dry_run: bool) -> tuple[int, Any]:
        api = self.api
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        if meta.get("namespace") not in (None, namespace) and namespace:
            raise _Reply(400, status(400, "BadRequest", "the namespace of the provided object does not match the "
                                     "namespace sent on the request"))
        if namespace:
            meta["namespace"] = namespace
        causes = admission(obj, kind)
        if causes:
            gk = f"{kind}.{group}" if group else kind
            text = "; ".join(f"{c['field']}: {c['message']}" for c in causes) if len(causes) == 1 else \
                "[" + ", ".join(f"{c['field']}: {c['message']}" for c in causes) + "]"
            raise _Reply(422, status(422, "Invalid", f'{gk} "{name}" is invalid: {text}',
                                     {"name": name, "group": group, "kind": kind, "causes": causes}))
        key = (group, version, plural, namespace, name)
        existing = api.objects.get(key)
        if existing is not None and create_only:
            gr = f"{plural}.{group}" if group else plural
            raise _Reply(409, status(409, "AlreadyExists", f'{gr} "{name}" already exists',
                                     {"name": name, "group": group, "kind": plural}))
        stored = copy.deepcopy(obj)
        if existing is not None:
            stored["metadata"]["uid"] = existing["metadata"]["uid"]
            stored["metadata"]["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
        if kind == "Namespace":
            stored["status"] = {"phase": "Active"}
            stored["spec"] = {"finalizers": ["kubernetes"]}
        api._fill_metadata(stored["metadata"])
        if dry_run:
            return (200 if existing else 201), stored
        api.objects[key] = stored
        if api.on_apply is not None and kind != "Namespace":
            api.on_apply(api, copy.deepcopy(stored))
        return (200 if existing else 201), stored

    def _port_forward(self, namespace: str, pod: str) -> None:
        self.send_response(101, "Switching Protocols")
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "SPDY/3.1")
        self.send_header("X-Stream-Protocol-Version", "portforward.k8s.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        _SpdyPortForward(self.api, namespace, pod, self.rfile, self.connection).serve()

    def _log(self, namespace: str, pod: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        obj = self.api.objects.get(("", "v1", "pods", namespace, pod))
        if obj is None:
            raise _Reply(404, status(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"}))
        names = [c["name"] for c in obj.get("spec", {}).get("containers", [])]
        container = (query.get("container") or [names[0] if len(names) == 1 else ""])[0]
        if not container:
            raise _Reply(400, status(400, "BadRequest", f"a container name must be specified for pod {pod}, "
                                     f"choose one of: [{' '.join(names)}]"))
        previous = (query.get("previous") or ["false"])[0] == "true"
        text = self.api.logs.get((namespace, pod, container, previous))
        if text is None:
            if previous:
                raise _Reply(400, status(400, "BadRequest", f'previous terminated container "{container}" in pod '
                                         f'"{pod}" not found'))
            text = ""
        tail = (query.get("tailLines") or [""])[0]
        if tail:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        return 200, (text, "text/plain")


class _Upgrade(Exception):
    def __init__(self, namespace: str, pod: str):
        super().__init__(pod)
        self.namespace, self.pod = namespace, pod


class _Reply(Exception):
    def __init__(self, code: int, body: Any):
        super().__init__(code)
        self.code, self.body = code, body


def admission(obj: dict[str, Any], kind: str) -> list[dict[str, str]]:
    """A few of the API server's validation rules, with its wording (field paths, "Required value", ...)."""
    causes = []
    name = obj.get("metadata", {}).get("name", "")
    if not name:
        causes.append({"reason": "FieldValueRequired", "message": "Required value: name or generateName is required",
                       "field": "metadata.name"})
    elif kind in ("Namespace", "Service") and not _DNS1123_LABEL.match(name):
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                       "message": f"Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case "
                                  "alphanumeric characters or '-', and must start and end with an alphanumeric "
                                  "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                                  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"})  # fmt: skip
    elif not _DNS1123_SUBDOMAIN.match(name):
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                       "message": f"Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower "
                                  "case alphanumeric characters, '-' or '.', and must start and end with an "
                                  "alphanumeric character (e.g. 'example.com', regex used for validation is "
                                  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"})  # fmt: skip
    pod_spec = None
    if kind == "Pod":
        pod_spec, prefix = obj.get("spec") or {}, "spec"
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "Job"):
        pod_spec, prefix = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}, "spec.template.spec"
    if pod_spec is not None:
        for i, container in enumerate(pod_spec.get("containers") or []):
            if not container.get("image"):
                causes.append({"reason": "FieldValueRequired", "message": "Required value",
                               "field": f"{prefix}.containers[{i}].image"})
    spec = obj.get("spec") or {}
    if kind == "Service" and not spec.get("ports") and spec.get("type") != "ExternalName":
        causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.ports"})
    return causes


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    target = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _openapi_v3(gv_path: str) -> dict[str, Any]:
    """The part of an OpenAPI v3 group-version document kubectl reads before it sends fieldValidation=Strict: each
    kind's PATCH operation with its x-kubernetes-group-version-kind and its query parameters. No schemas."""
    for (group, version), resources in RESOURCES.items():
        if _gv_path(group, version) != gv_path:
            continue
        paths = {}
        for plural, kind, namespaced in resources:
            scope = "namespaces/{namespace}/" if namespaced else ""
            item = f"/{gv_path}/{scope}{plural}/{{name}}"
            params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                      for n in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")]
            paths[item] = {"patch": {"operationId": f"patch{kind}", "parameters": params,
                                     "x-kubernetes-action": "patch",
                                     "x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                                         "kind": kind}}}  # fmt: skip
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes (stand-in)", "version": "v1.33.0"}, "paths": paths,
                "components": {"schemas": {}}}
    raise _Reply(404, status(404, "NotFound", "the server could not find the requested resource"))


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _plural_of(group: str, version: str, kind: str) -> str:
    for plural, k, _ in RESOURCES.get((group, version), []):
        if k == kind:
            return plural
    raise KeyError(f"the stand-in does not serve {kind} in {group or 'core'}/{version}")


def _resource(group: str, version: str, plural: str) -> tuple[str, str, bool] | None:
    return next((r for r in RESOURCES[(group, version)] if r[0] == plural), None)


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources = []
    for plural, kind, namespaced in RESOURCES[(group, version)]:
        resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                          "verbs": _VERBS})
    for plural, kind, namespaced in _SUBRESOURCES.get((group, version), []):
        resources.append({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
                          "verbs": ["get"] if plural.endswith("/log") else ["create", "get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


# --- port-forward: SPDY/3.1 (draft 3 of the SPDY protocol, as moby/spdystream speaks it for kubectl) -----------------

# The SPDY/3 header compression dictionary (from the protocol draft): 65 length-prefixed words, then a tail.
_SPDY3_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
)
_SPDY3_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Au"
    "thoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidd"
    "en404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr Ma"
    "y Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,imag"
    "e/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicpri"
    "vatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
SPDY3_DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _SPDY3_WORDS) + _SPDY3_TAIL.encode()
assert len(SPDY3_DICTIONARY) == 1423 and zlib.adler32(SPDY3_DICTIONARY) == 0xE3C6A7C2

_SYN_STREAM, _SYN_REPLY, _RST_STREAM, _PING, _GOAWAY, _HEADERS = 1, 2, 3, 6, 7, 8
_FLAG_FIN = 0x01


class _SpdyPortForward:
    """The server side of one `kubectl port-forward` connection: for each forwarded TCP connection kubectl opens
    an error stream and a data stream (headers streamtype, port, requestid); the data stream is relayed to the
    registered loopback port, and a failure to connect is written to the error stream, as the kubelet does."""

    def __init__(self, api: KubeStandIn, namespace: str, pod: str, rfile: Any, sock: socket.socket):
        self.api, self.namespace, self.pod = api, namespace, pod
        self.rfile, self.sock = rfile, sock
        self.inflate = zlib.decompressobj(zdict=SPDY3_DICTIONARY)
        self.deflate = zlib.compressobj(zdict=SPDY3_DICTIONARY)
        self.send_lock = threading.Lock()
        self.requests: dict[str, dict[str, int]] = {}  # requestid -> {"error": stream id, "data": stream id}
        self.upstreams: dict[int, socket.socket] = {}  # data stream id -> connection to the "container"

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def _send(self, frame: bytes) -> None:
        with self.send_lock:
            try:
                self.sock.sendall(frame)
            except OSError:
                pass

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        self._send(struct.pack(">HHB", 0x8000 | 3, kind, flags) + len(payload).to_bytes(3, "big") + payload)

    def _data(self, stream: int, data: bytes, fin: bool = False) -> None:
        self._send(struct.pack(">IB", stream & 0x7FFFFFFF, _FLAG_FIN if fin else 0) + len(data).to_bytes(3, "big")
                   + data)

    def _headers(self, block: bytes) -> dict[str, str]:
        raw = self.inflate.decompress(block)
        count, pos, out = struct.unpack(">I", raw[:4])[0], 4, {}
        for _ in range(count):
            (n,) = struct.unpack(">I", raw[pos:pos + 4])
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack(">I", raw[pos:pos + 4])
            out[name.lower()] = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
        return out

    def _empty_headers(self) -> bytes:
        return self.deflate.compress(struct.pack(">I", 0)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def serve(self) -> None:
        try:
            while True:
                head = self._read(8)
                length = int.from_bytes(head[5:8], "big")
                payload = self._read(length) if length else b""
                if head[0] & 0x80:
                    kind = struct.unpack(">H", head[2:4])[0]
                    if kind == _SYN_STREAM:
                        stream = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                        self._syn_stream(stream, self._headers(payload[10:]))
                    elif kind == _HEADERS:
                        self._headers(payload[4:])  # keeps the decompressor in step
                    elif kind == _PING:
                        self._control(_PING, 0, payload)
                    elif kind == _RST_STREAM:
                        self._close(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF)
                    elif kind == _GOAWAY:
                        return
                else:
                    stream, flags = struct.unpack(">I", head[:4])[0] & 0x7FFFFFFF, head[4]
                    upstream = self.upstreams.get(stream)
                    if upstream is not None:
                        try:
                            if payload:
                                upstream.sendall(payload)
                            if flags & _FLAG_FIN:
                                upstream.shutdown(socket.SHUT_WR)
                        except OSError:
                            self._close(stream)
        except (EOFError, OSError, struct.error, zlib.error):
            return
        finally:
            for stream in list(self.upstreams):
                self._close(stream)

    def _syn_stream(self, stream: int, headers: dict[str, str]) -> None:
        self._control(_SYN_REPLY, 0, struct.pack(">I", stream) + self._empty_headers())
        request = self.requests.setdefault(headers.get("requestid", ""), {})
        request[headers.get("streamtype", "")] = stream
        if "data" not in request or "error" not in request:
            return
        port = int(headers.get("port") or 0)
        target = self.api.forwards.get((self.namespace, self.pod, port))
        try:
            if target is None:
                raise ConnectionRefusedError("connection refused")
            upstream = socket.create_connection(("127.0.0.1", target), timeout=5)
            upstream.settimeout(None)
        except OSError as exc:
            reason = "connect: connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            message = (f"error forwarding port {port} to pod {self.pod}, uid : failed to connect to localhost:{port} "
                       f"inside namespace \"{self.namespace}\", IPv4: dial tcp4 127.0.0.1:{port}: {reason} ")
            self._data(request["error"], message.encode(), fin=True)
            self._data(request["data"], b"", fin=True)
            return
        self.api.forwarded.append((self.namespace, self.pod, port))
        self.upstreams[request["data"]] = upstream
        threading.Thread(target=self._pump, args=(request["data"], request["error"], upstream), daemon=True).start()

    def _pump(self, stream: int, error_stream: int, upstream: socket.socket) -> None:
        try:
            while True:
                chunk = upstream.recv(32768)
                if not chunk:
                    break
                self._data(stream, chunk)
        except OSError:
            pass
        self._data(stream, b"", fin=True)
        self._data(error_stream, b"", fin=True)

    def _close(self, stream: int) -> None:
        upstream = self.upstreams.pop(stream, None)
        if upstream is not None:
            try:
                upstream.close()
            except OSError:
                pass
