"""Pure parts of Build, Deploy and Connect (no container engine): image tags, the played copy of the manifest,
readiness, log merging, and Connect's probing and checks against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubevibe.owner import owner_labels
from helpers import KNOWN_GOOD_MANIFEST, known_good_docs

from kubevibe.errors import UsageError
from kubevibe.intent import Endpoint, TestCase, json_subset_problems
from kubevibe.manifests import dns_label, load_manifest
from kubevibe.stages.build import (
    failing_step,
    image_tag,
    mapping_records,
    service_name,
)
from kubevibe.stages.connect import (
    _Checker,
    case_problems,
    concrete_path,
    endpoint_problem,
    http_client,
    listening_in_logs,
    probe,
)
from kubevibe.targets import get_target
from kubevibe.targets.base import (
    ContainerInfo,
    DeploymentInfo,
    PodInfo,
    ServicePortInfo,
    service_port_infos,
)
from kubevibe.targets.labels import RUN_LABEL, label_value
from kubevibe.targets.local.manifest import network_name, played_manifest, run_token
from kubevibe.targets.local.status import container_infos, merge_timestamped, parse_listening, pod_ip, readiness, split_listening

RUN_ID = "20261124T101500Z-abc123"
IMAGE = "127.0.0.1:5005/kubevibe/credit-card:20261124t101500z-abc123-s3"

# --- image tags -----------------------------------------------------------------------------------------------------


def test_image_tag_is_unique_per_run_and_build_and_never_latest():
    first = image_tag("127.0.0.1:5005", "credit-card", RUN_ID, 3)
    assert first == "127.0.0.1:5005/kubevibe/credit-card:20261124t101500z-abc123-s3"
    assert image_tag("127.0.0.1:5005", "credit-card", RUN_ID, 7) != first
    assert image_tag("127.0.0.1:5005", "credit-card", "20261124T101500Z-ffffff", 3) != first
    assert not first.endswith(":latest")


def test_service_name_prefers_the_spec_then_the_deployment_and_is_dns_safe():
    assert service_name({"spec": {"name": "Credit Card_Validator!"}}, KNOWN_GOOD_MANIFEST) == "credit-card-validator"
    assert service_name({"spec": None}, KNOWN_GOOD_MANIFEST) == "credit-card"
    assert service_name(None, "kind: [broken") == "service"
    assert service_name(None, "") == "service"
    assert dns_label("--" + "a" * 80) == "a" * 63
    assert dns_label("___") == "service"


def test_mapping_records_become_text_and_failing_step_drops_podman_parser_dumps():
    records = [{"line": 1, "from": "python:3.11-slim", "to": "localhost/kubevibe/python:3.11-bookworm",
                "status": "mapped", "dropped_flags": ["--platform=linux/arm64"], "note": None}]
    assert mapping_records(records) == [{"line": "1", "from": "python:3.11-slim",
                                         "to": "localhost/kubevibe/python:3.11-bookworm", "status": "mapped",
                                         "dropped_flags": "--platform=linux/arm64"}]
    out = ('STEP 5/7: COPPY myapp.py .\n'
           'Error: building at STEP "COPPY ": Unknown instruction: "COPPY" &imagebuilder.Step{Env:[]}')
    assert failing_step(out) == 'Error: building at STEP "COPPY ": Unknown instruction: "COPPY"'


# --- the played copy of the manifest --------------------------------------------------------------------------------


def test_played_manifest_avoids_host_ports_and_name_clashes_and_labels_the_pods():
    docs = known_good_docs()
    docs[0]["spec"]["replicas"] = 3
    original = json.dumps(docs, sort_keys=True)
    played, notes = played_manifest(docs, IMAGE, RUN_ID)

    assert json.dumps(docs, sort_keys=True) == original  # the input is not modified
    assert [d["kind"] for d in played] == ["Deployment"]  # the Service is not played
    deployment = played[0]
    assert deployment["metadata"]["name"] == "credit-card-abc123"
    assert deployment["spec"]["replicas"] == 1
    template = deployment["spec"]["template"]
    # The owner label names this process, so that gc removes at once what a dead process left.
    assert template["metadata"]["labels"] == {"app": "credit-card", RUN_LABEL: RUN_ID, **owner_labels()}
    assert template["spec"]["restartPolicy"] == "Never"
    container = template["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "ports" not in container and "readinessProbe" not in container
    assert container["env"] == [{"name": "FLASK_ENV", "value": "production"}]  # the rest is kept
    assert any("replicas 3 -> 1" in n for n in notes)
    assert any("dropped ports, readinessProbe" in n for n in notes)
    assert any("Service" in n for n in notes)


def test_service_ports_come_from_the_original_manifest_even_when_named():
    text = KNOWN_GOOD_MANIFEST.replace("- containerPort: 5000", "- containerPort: 5000\n              name: web")
    text = text.replace("targetPort: 5000", "targetPort: web")
    ports = service_port_infos(load_manifest(text))
    assert ports == [ServicePortInfo(service="credit-card", port=80, target_port=5000, selector={"app": "credit-card"})]


def test_resource_names_of_a_run():
    assert run_token(RUN_ID) == "abc123"
    assert len(run_token("odd run id!")) == 8
    assert network_name(RUN_ID) == "kubevibe-20261124T101500Z-abc123"
    assert label_value("x" * 80 + "-") == "x" * 63


# --- reading podman's answers ---------------------------------------------------------------------------------------

PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 44829 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000200590A:1388 0000000000000000FFFF00000100590A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 44830 1 0 100 0 0 10 0
"""
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 37487 1 0 100 0 0 10 0
"""


def test_parse_listening_keeps_only_listening_sockets_with_their_address():
    assert parse_listening(PROC_NET_TCP6) == {("::", 5000)}
    assert parse_listening(PROC_NET_TCP) == {("127.0.0.1", 8080)}
    assert parse_listening("  sl  local_address\n") == set()


def test_split_listening_tells_loopback_only_ports_apart():
    sockets = {("0.0.0.0", 5000), ("127.0.0.1", 5000), ("127.0.0.1", 8080), ("::1", 9000), ("10.89.0.2", 7000)}
    assert split_listening(sockets) == ([5000, 7000], [8080, 9000])


def test_container_infos_and_pod_ip_from_podman_inspect():
    inspected = [{
        "Name": "credit-card-abc123-pod-0-app", "Pod": "p1", "RestartCount": 0,
        "State": {"Status": "exited", "ExitCode": 1, "Pid": 0},
        "NetworkSettings": {"Networks": {"kubevibe-x": {"IPAddress": "10.89.0.7"}}},
    }]  # fmt: skip
    (info,) = container_infos(inspected, {"p1": "credit-card-abc123-pod-0"})
    assert (info.name, info.state, info.exit_code, info.failed) == ("app", "exited", 1, True)
    assert pod_ip(inspected, "p1", "kubevibe-x") == "10.89.0.7"
    assert pod_ip(inspected, "p2", "kubevibe-x") is None


def _info(state: str = "running", listening: list[int] | None = None, pods: int = 1) -> DeploymentInfo:
    return DeploymentInfo(
        target="local", run_id=RUN_ID, expected_pods=pods,
        pods=[PodInfo(name="web-pod-0", ip="10.89.0.2", listening=listening)],
        containers=[ContainerInfo(pod="web-pod-0", name="app", engine_name="web-pod-0-app", state=state)],
    )  # fmt: skip


def test_readiness_needs_running_containers_that_listen_or_stay_up():
    assert readiness(_info(listening=[5000]), {"web-pod-0-app": 10.0}, now=10.1) is None
    assert readiness(_info(listening=[]), {"web-pod-0-app": 10.0}, now=11.0, settle=5) == \
        "pod web-pod-0 listens on no TCP port yet"
    assert readiness(_info(listening=None), {"web-pod-0-app": 10.0}, now=15.5, settle=5) is None
    assert readiness(_info(state="created"), {}, now=0) == "container app of pod web-pod-0 is created"
    assert readiness(_info(pods=2), {}, now=0) == "1 of 2 pods exist"


def test_merge_timestamped_interleaves_streams_and_strips_colours():
    stdout = "2026-11-24T23:53:03.5Z starting\n2026-11-24T23:53:04.100000000Z \x1b[33mdone\x1b[0m\n"
    stderr = "2026-11-24T23:53:03.900000001Z Traceback (most recent call last):\n"
    assert merge_timestamped(stdout, stderr) == "starting\nTraceback (most recent call last):\ndone\n"


def test_listening_in_logs_reads_common_servers():
    logs = " * Running on http://127.0.0.1:5000\nINFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C)\n" \
           "[INFO] Listening at: http://0.0.0.0:8080 (1)\n"
    assert listening_in_logs(logs) == [5000, 8000, 8080]


# --- pure checks ----------------------------------------------------------------------------------------------------


def test_json_subset_allows_extra_keys_and_names_each_difference():
    assert json_subset_problems({"valid": True}, {"valid": True, "card": "4111"}) == []
    assert json_subset_problems({"valid": True}, {"valid": 1}) == ["$.valid: expected true, got 1"]
    assert json_subset_problems({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == ["$.a.b[1]: expected 2, got 3"]
    assert json_subset_problems({"x": 1}, []) == ["$: expected an object, got []"]
    assert json_subset_problems({"x": 1}, {}) == ["$.x: missing"]


def test_endpoint_problem_and_path_placeholders():
    get = Endpoint(method="GET", path="/health")
    assert endpoint_problem(get, 200) is None and endpoint_problem(get, 400) is None
    assert "404" in endpoint_problem(get, 404)
    assert "405" in endpoint_problem(get, 405)
    assert "500" in endpoint_problem(get, 500)
    assert endpoint_problem(Endpoint(method="GET", path="/items/{id}"), 404) is None  # the item may not exist
    assert concrete_path("items/{id}/<name>") == "/items/1/1"


# --- against a real HTTP server on loopback -------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict | str) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/boom":
            self._send(500, "Internal Server Error: ZeroDivisionError")
        else:
            self._send(404, "not found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        if self.path != "/validate":
            self._send(405 if self.path == "/health" else 404, "no")
        elif not isinstance(body, dict) or "card_number" not in body:
            self._send(400, {"error": "card_number is required"})
        else:
            self._send(200, {"card_number": body["card_number"], "valid": body["card_number"] == "4111111111111111"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_probe_counts_a_404_as_reachable(server):
    with http_client() as client:
        result = probe(client, server + "/", deadline=time.monotonic() + 5)
    assert (result.reachable, result.status, result.attempts) == (True, 404, 1)


def test_probe_waits_for_a_server_that_starts_late():
    port = _free_port()
    servers: list[ThreadingHTTPServer] = []

    def start_later():
        time.sleep(0.6)  # until then connections are refused
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), _Handler))
        servers[0].serve_forever(poll_interval=0.05)

    threading.Thread(target=start_later, daemon=True).start()
    try:
        with http_client() as client:
            result = probe(client, f"http://127.0.0.1:{port}/health", deadline=time.monotonic() + 10)
        assert result.reachable and result.status == 200
        assert result.attempts > 1 and result.elapsed_s >= 0.5
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


def test_probe_gives_up_at_the_deadline_on_5xx_and_on_refused_connections(server):
    with http_client() as client:
        started = time.monotonic()
        result = probe(client, server + "/boom", deadline=time.monotonic() + 1.0)
        assert not result.reachable and result.status == 500 and result.attempts > 2
        assert time.monotonic() - started < 3

        refused = probe(client, f"http://127.0.0.1:{_free_port()}/", deadline=time.monotonic() + 0.5)
        assert not refused.reachable and refused.status is None and "connect" in (refused.error or "").lower()


def test_probe_stops_early_when_told_waiting_is_pointless():
    with http_client() as client:
        started = time.monotonic()
        result = probe(client, f"http://127.0.0.1:{_free_port()}/", deadline=time.monotonic() + 30,
                       give_up=lambda elapsed: "the pod listens on port 5000, not on 5001" if elapsed > 1 else None)
    assert result.stopped == "the pod listens on port 5000, not on 5001"
    assert time.monotonic() - started < 5


@pytest.fixture
def checker(server: str) -> Iterator[_Checker]:
    """Connect's checks against the loopback server, as if it were the pod (no target: nothing to ask)."""
    with http_client() as client:
        checker = _Checker(None, _info(), client, target=None)  # type: ignore[arg-type]
        checker.base = (server, checker.info.pods[0])
        yield checker


def test_test_cases_match_status_and_body_subset(checker, server):
    spec = {"test_cases": [
        {"name": "valid", "method": "POST", "path": "/validate", "body": {"card_number": "4111111111111111"},
         "expected_status": 200, "expected_json": {"valid": True}},
        {"name": "missing", "method": "POST", "path": "/validate", "body": {}, "expected_status": 400,
         "expected_contains": "required"},
        {"name": "wrong", "method": "POST", "path": "/validate", "body": {"card_number": "4111111111111112"},
         "expected_status": 200, "expected_json": {"valid": True}},
    ]}  # fmt: skip
    checker.check_spec(spec)
    assert [t["passed"] for t in checker.report["tests"]] == [True, True, False]
    (failure,) = checker.failures
    assert failure.title == "test case 'wrong' failed: $.valid: expected true, got false"
    assert failure.request.startswith("POST " + server + "/validate with JSON body {\"card_number\"")
    assert failure.response.startswith("200 OK (content-type: application/json")
    evidence = checker.evidence({"web-pod-0/app": "line 1\nline 2\n"})
    assert evidence[0].kind == "http" and "line 2" in evidence[0].detail


def test_declared_endpoints_must_exist(checker):
    spec = {"endpoints": [{"method": "GET", "path": "/health"}, "POST /validate", {"method": "GET", "path": "/nope"},
                          {"method": "POST", "path": "/health"}, {"method": "GET", "path": "/boom"}]}
    checker.check_spec(spec)
    statuses = [(e["path"], e["status"], e["passed"]) for e in checker.report["endpoints"]]
    assert statuses == [("/health", 200, True), ("/validate", 400, True), ("/nope", 404, False),
                        ("/health", 405, False), ("/boom", 500, False)]
    assert [f.title for f in checker.failures] == [
        "declared endpoint GET /nope: 404 Not Found: the app has no route /nope",
        "declared endpoint POST /health: 405 Method Not Allowed: the app has no POST handler for /health",
        "declared endpoint GET /boom: server error 500",
    ]


def test_endpoints_covered_by_a_test_case_are_not_called_twice(checker):
    case = TestCase(method="GET", path="/health", expected_status=200, expected_json={"status": "ok"})
    checker.check_spec({"endpoints": [{"method": "GET", "path": "/health"}], "test_cases": [case.model_dump()]})
    assert len(checker.report["tests"]) == 1 and checker.report["endpoints"] == []
    assert case_problems(case, 200, '{"status": "ok"}') == []
    assert case_problems(case, 200, "ok") == ['the body is not JSON, expected it to contain {"status": "ok"}']


def test_a_service_that_selects_no_pod_is_named(checker):
    checker.info.service_ports = [ServicePortInfo(service="svc", port=80, target_port=5000, selector={"app": "x"})]
    checker.info.pods[0].labels = {"app": "web"}
    checker.check_ports(1.0)
    assert checker.failures[0].title == \
        "Service svc port 80: its selector {app=x} matches no pod (pod labels: web-pod-0: {app=web})."


def test_unknown_targets_are_usage_errors():
    with pytest.raises(UsageError, match="Unknown target 'nowhere'"):
        get_target("nowhere")


def test_connect_leaves_the_specs_cases_to_accept_when_they_are_the_acceptance_tests():
    """A stateful service must see each acceptance request once: Connect runs the spec's cases only when Accept's
    tests come from elsewhere (the user, a benchmark, the test writer)."""
    from types import SimpleNamespace

    from kubevibe.pipeline.context import RunState
    from kubevibe.stages.connect import _cases_are_acceptance_tests

    def ctx(**fields):
        return SimpleNamespace(state=RunState(prompt="p", **fields))

    assert _cases_are_acceptance_tests(ctx())  # Accept will freeze the reference's or the intent's cases
    assert _cases_are_acceptance_tests(ctx(acceptance={"source": "reference"}))
    assert _cases_are_acceptance_tests(ctx(acceptance={"source": "intent"}))
    assert not _cases_are_acceptance_tests(ctx(acceptance={"source": "user"}))
    assert not _cases_are_acceptance_tests(ctx(acceptance={"source": "benchmark"}))
    assert not _cases_are_acceptance_tests(ctx(test_writer={"tests": 4, "model": "m"}))
