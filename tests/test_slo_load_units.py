"""The pure parts of objectives under load: the SLO file, the requests, the figures, the verdict, the sizing, the
loopback publishing of the played copy and the reading of `podman stats`; and the CLI's refusal of bad SLO files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import known_good_docs

from kubevibe.errors import UsageError
from kubevibe.load.plan import LoadRequest, choose_requests, is_loopback_url, make_job, requests_from_tavern
from kubevibe.load.report import LoadReport, evaluate, percentile, server_process, sized_resources, \
    slo_verdict, summarise_requests, summarise_usage
from kubevibe.slo import SLO, effective_slo, extracted_slo, load_slo_file, parse_slo
from kubevibe.targets.base import ContainerInfo, ContainerUsage, service_port_infos
from kubevibe.targets.local.manifest import played_manifest, publish_loopback
from kubevibe.targets.local.status import parse_duration, parse_size, stats_usage

ISSUE_SLO = """\
load: {rps: 20, duration_s: 10}        # offered load
latency_ms: {p95: 100, p99: 250}       # percentiles to meet at that load
error_rate_max: 0.01                   # non-2xx/3xx share, timeouts included
memory_mib_max: 256                    # peak resident memory under load (optional)
"""


# --- the SLO file ---------------------------------------------------------------------------------------------------


def test_the_issues_slo_file_parses(tmp_path):
    path = tmp_path / "slo.yaml"
    path.write_text(ISSUE_SLO)
    slo = load_slo_file(path)
    assert (slo.load.rps, slo.load.duration_s) == (20, 10)
    assert slo.latency_ms.stated() == {"p95": 100, "p99": 250}
    assert slo.error_rate_max == 0.01 and slo.memory_mib_max == 256
    assert slo.describe() == ("p95 <= 100 ms, p99 <= 250 ms, error rate <= 0.01, peak memory <= 256 MiB "
                              "at 20 rps for 10 s")


@pytest.mark.parametrize("data,field", [
    ({"load": {"rps": 0}}, "load.rps"),
    ({"load": {"rps": 10, "duration_s": 100000}}, "load.duration_s"),
    ({"load": {"rps": 10, "seconds": 3}}, "load.seconds"),
    ({"latency_ms": {"p90": 3}}, "latency_ms.p90"),
    ({"error_rate_max": -0.1}, "error_rate_max"),
    ({"memory_mib_max": "lots"}, "memory_mib_max"),
])
def test_a_bad_field_is_named_in_one_sentence(data, field):
    with pytest.raises(UsageError) as caught:
        parse_slo(data, "slo.yaml")
    message = caught.value.message
    assert message.startswith("The SLO file slo.yaml: field " + field + " ") and message.endswith(".")
    assert "\n" not in message and caught.value.exit_code == 2


def test_a_file_that_is_no_mapping_or_no_yaml_is_refused(tmp_path):
    for text in ("- 1\n- 2\n", "load: {rps: [\n"):
        path = tmp_path / "slo.yaml"
        path.write_text(text)
        with pytest.raises(UsageError):
            load_slo_file(path)
    with pytest.raises(UsageError, match="Cannot read the SLO file"):
        load_slo_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text,field", [
    ("load: {rps: -1, duration_s: 5}\n", "load.rps"),
    ("latency: {p95: 100}\n", "latency"),
    ("latency_ms: {p95: fast}\n", "latency_ms.p95"),
])
def test_the_cli_refuses_a_bad_slo_file_with_exit_2_before_starting_anything(tmp_path, text, field):
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "kubevibe.cli", "run", "anything", "--llm", "embedded", "--slo",
                           str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"field {field} " in proc.stderr and str(path) in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_stated_slo_wins_over_extracted_objectives_and_bad_extracted_ones_are_dropped():
    stated = SLO.model_validate({"latency_ms": {"p95": 50}}).model_dump(mode="json")
    intent = {"slo": {"latency_ms": {"p99": 900}}}
    slo, source = effective_slo(stated, intent)
    assert source == "file" and slo.latency_ms.p95 == 50 and slo.latency_ms.p99 is None
    slo, source = effective_slo(None, intent)
    assert source == "intent" and slo.latency_ms.p99 == 900
    assert extracted_slo({"slo": {"latency_ms": {"p95": -3}}}) is None
    assert extracted_slo({"spec": {"slo": {"error_rate_max": 0.05}}}).error_rate_max == 0.05
    assert effective_slo(None, {"slo": None}) == (None, None)


def test_the_intent_schema_has_an_slo_part_that_never_fails_the_spec():
    from kubevibe.intent import ServiceSpec

    schema = json.dumps(ServiceSpec.model_json_schema())
    assert "latency_ms" in schema and "error_rate_max" in schema
    assert ServiceSpec(name="x", slo={"latency_ms": {"p95": 100}, "load": {"rps": 50}}).slo.load.rps == 50
    assert ServiceSpec(name="x", slo={"latency": "fast"}).slo is None


# --- the requests -------------------------------------------------------------------------------------------------


TAVERN = """\
test_name: validate
stages:
  - name: valid
    request:
      url: "{base_url}/validate"
      method: POST
      json: {card_number: "4539578763621486"}
    response:
      status_code: 200
  - name: bad input
    request: {url: "{base_url}/validate", method: POST, json: {}}
    response: {status_code: 400}
  - name: needs a saved variable
    request: {url: "{base_url}/items/{item_id}", method: GET}
---
test_name: literal braces
stages:
  - request: {url: "{base_url}/echo", method: POST, json: {text: "{{x}}"}}
  - request: {url: "http://elsewhere/x"}
"""


def test_requests_come_from_the_acceptance_file_with_their_expected_status(tmp_path):
    requests = requests_from_tavern(TAVERN)
    assert [(r.method, r.path, r.expected_status) for r in requests] == [
        ("POST", "/validate", 200), ("POST", "/validate", 400), ("POST", "/echo", None)]
    assert requests[0].body == {"card_number": "4539578763621486"}
    assert requests[2].body == {"text": "{x}"}  # Tavern's doubled braces are literal braces
    (tmp_path / "acceptance").mkdir()
    (tmp_path / "acceptance" / "acceptance.tavern.yaml").write_text(TAVERN)
    assert choose_requests(tmp_path, None)[1] == "acceptance"


def test_without_acceptance_tests_the_intents_cases_then_get_root(tmp_path):
    spec = {"test_cases": [{"method": "post", "path": "/items/{id}", "body": {"a": 1}, "expected_status": 201}]}
    requests, source = choose_requests(tmp_path, spec)
    assert source == "intent" and requests == [LoadRequest(method="POST", path="/items/1", body={"a": 1},
                                                           expected_status=201)]
    assert choose_requests(tmp_path, None) == ([LoadRequest()], "GET /")


def test_load_goes_to_loopback_only_and_is_bounded_in_requests():
    assert is_loopback_url("http://127.0.0.1:3000") and is_loopback_url("http://[::1]:80")
    assert not is_loopback_url("http://10.89.0.4:5000") and not is_loopback_url("http://example.com")
    with pytest.raises(ValueError):
        make_job("http://10.89.0.4:5000", [], 10, 5)
    job = make_job("http://127.0.0.1:3000/", [], 10, 5)
    assert job.base_url == "http://127.0.0.1:3000" and job.max_requests == 60 and job.requests == [LoadRequest()]


def test_the_worker_refuses_a_job_that_is_not_on_loopback(tmp_path):
    job = make_job("http://127.0.0.1:1", [], 1, 1).model_copy(update={"base_url": "http://10.89.0.9:5000"})
    path = tmp_path / "job.json"
    path.write_text(job.model_dump_json())
    proc = subprocess.run([sys.executable, "-m", "kubevibe.load.worker", str(path), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "refusing" in proc.stderr
    assert not (tmp_path / "out.json").exists()


# --- figures and verdicts -------------------------------------------------------------------------------------------


def _report(**kw) -> LoadReport:
    return LoadReport(requests_from="intent", base_url="http://127.0.0.1:1", offered_rps=10, duration_s=5, **kw)


def test_percentiles_errors_by_status_and_throughput():
    job = make_job("http://127.0.0.1:1", [LoadRequest(), LoadRequest(expected_status=400)], 10, 5)
    samples = [[i * 0.1, float(i + 1), 200, 0, ""] for i in range(45)]
    samples += [[4.6, 5.0, 400, 1, ""], [4.7, 9.0, 500, 0, ""], [4.8, 5000.0, 0, 0, "timeout"],
                [4.9, 1.0, 0, 0, "connection"], [4.95, 3.0, 404, 0, ""]]
    report = _report()
    summarise_requests(job, {"samples": samples, "users": 10, "load_s": 5.0, "servers": ["gunicorn"]}, report)
    assert report.sent == 50 and report.answered == 48
    assert report.errors_by_status == {"500": 1, "timeout": 1, "connection": 1, "404": 1}  # the 400 was expected
    assert report.error_rate == 0.08 and report.achieved_rps == 10
    assert report.p50_ms == 21 and report.max_ms == 45  # 1..45 plus the 3, 5 and 9 ms answers
    assert percentile([1, 2, 3, 4], 0.95) == 4 and percentile([], 0.5) is None


def test_cpu_is_the_rate_of_cpu_time_and_memory_the_peak():
    usage = lambda cpu, mem: [ContainerUsage(pod="p", container="app", cpu_time_s=cpu, memory_bytes=mem,  # noqa: E731
                                             memory_limit_bytes=256 * 2**20)]
    report = _report()
    summarise_usage([(0.0, usage(1.0, 20 * 2**20)), (1.0, usage(1.5, 30 * 2**20)), (3.0, usage(1.7, 25 * 2**20))],
                    report)
    (c,) = report.containers
    assert c.peak_cpu == 0.5 and c.avg_cpu == pytest.approx(0.233, abs=0.001)
    assert c.peak_memory_mib == 30 and c.memory_limit_mib == 256 and report.peak_memory_mib == 30


def test_objectives_met_missed_and_a_crash_is_always_missed():
    slo = SLO.model_validate({"latency_ms": {"p95": 100}, "error_rate_max": 0.01, "memory_mib_max": 64})
    good = _report(p95_ms=80, error_rate=0.0, achieved_rps=10, peak_memory_mib=30)
    evaluate(good, slo, "file")
    assert good.met is True and good.missed == [] and good.objectives_from == "file"
    bad = _report(p95_ms=312, error_rate=0.5, errors_by_status={"connection": 20}, achieved_rps=5,
                  peak_memory_mib=90, crashed=["p/app"])
    evaluate(bad, slo, "file")
    assert bad.met is False
    assert bad.missed == ["container p/app stopped during the load", "p95 latency 312 ms > 100 ms",
                          "error rate 50.0% > 1.0% (20 x connection)", "peak memory 90.0 MiB > 64 MiB",
                          "throughput 5.0 rps < 80% of the offered 10 rps"]
    none = _report(p95_ms=5000)
    evaluate(none, None, None)
    assert none.met is None and none.missed == []
    crashed = _report(crashed=["p/app"])
    evaluate(crashed, None, None)
    assert crashed.met is False


def test_the_verdict_says_met_only_for_a_measurement_of_the_final_files():
    report = _report(p95_ms=80, achieved_rps=10, met=True).model_dump()
    assert slo_verdict(report, stated=False, verified=True) is None
    assert slo_verdict(report, stated=True, verified=True)["met"] is True
    assert slo_verdict(report, stated=True, verified=False)["met"] is False  # files changed after the measurement
    assert slo_verdict(None, stated=True, verified=False)["p95_ms"] is None


def test_resources_are_sized_from_the_measured_peak_with_the_stated_margin():
    report = _report(containers=[{"pod": "p", "container": "app", "peak_memory_mib": 30.2, "peak_cpu": 0.1234}])
    assert sized_resources(report.model_dump(), "app") == {
        "requests": {"cpu": "124m", "memory": "31Mi"}, "limits": {"cpu": "248m", "memory": "62Mi"}}
    tiny = _report(containers=[{"pod": "p", "container": "app", "peak_memory_mib": 2.0, "peak_cpu": 0.0}])
    assert sized_resources(tiny.model_dump())["requests"] == {"cpu": "10m", "memory": "16Mi"}
    assert sized_resources(_report().model_dump()) is None and sized_resources(None) is None


def test_the_server_process_is_named_from_logs_and_headers():
    logs = {"p/app": " * Serving Flask app 'myapp'\nWARNING: This is a development server. Do not use it\n"}
    assert server_process(logs, ["Werkzeug/3.1"]).startswith("Werkzeug development server")
    assert server_process({"p/app": "[INFO] Booting worker with pid: 7"}, []) == "gunicorn"
    assert server_process({}, []) is None


# --- the local engine: loopback publishing, podman stats -------------------------------------------------------------


def test_the_played_copy_publishes_each_service_target_port_on_loopback_only():
    docs = known_good_docs()
    played, _notes = played_manifest(docs, "img:1", "20261124T101500Z-abc123")
    ports = iter([41001, 41002])
    published = publish_loopback(played, service_port_infos(docs), lambda: next(ports))
    assert [(p.workload, p.container_port, p.host_ip, p.host_port) for p in published] == [
        ("credit-card-abc123", 5000, "127.0.0.1", 41001)]
    (container,) = played[0]["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"containerPort": 5000, "hostIP": "127.0.0.1", "hostPort": 41001}]


def test_podman_stats_are_read_into_usage():
    entries = [{"name": "pod-infra", "cpu_time": "5ms", "mem_usage": "600kB / 25.28GB"},
               {"name": "pod-0-app", "cpu_time": "1m2.5s", "mem_usage": "12.69MB / 268.4MB"}]
    known = {"pod-0-app": ContainerInfo(pod="pod-0", name="app", engine_name="pod-0-app")}
    (usage,) = stats_usage(entries, known)
    assert (usage.pod, usage.container, usage.cpu_time_s) == ("pod-0", "app", 62.5)
    assert usage.memory_bytes == 12_690_000 and usage.memory_limit_bytes == 268_400_000
    assert parse_size("128MiB") == 128 * 2**20 and parse_size("n/a") is None
    assert parse_duration("64.28ms") == pytest.approx(0.06428) and parse_duration("soon") is None


def test_kubectl_top_is_read_into_usage():
    from kubevibe.targets.kubernetes.status import top_usage

    (usage,) = top_usage("web-1 app 3m 21Mi\nother-pod app 1m 1Mi\nnot a line\n", {"web-1"})
    assert (usage.pod, usage.container, usage.cpu_cores, usage.memory_bytes) == ("web-1", "app", 0.003, 21 * 2**20)
