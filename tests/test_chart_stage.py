"""The Chart stage with the real helm and kubernetes-validate (no mocks)."""

from __future__ import annotations

import tarfile

import kubernetes_validate
import pytest
import yaml
from helpers import KNOWN_GOOD_IMAGE, KNOWN_GOOD_MANIFEST, built_state, known_good_artifacts, make_context

from kubevibe import exec as kexec
from kubevibe.manifests import load_manifest
from kubevibe.pipeline.artifacts import MANIFEST
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.stages import chart
from kubevibe.tools import find_tool

HELM = find_tool("helm")
pytestmark = pytest.mark.skipif(HELM is None, reason="helm not found: run scripts/bootstrap.sh "
                                                     "(or `python -m kubevibe.tools install`)")


def run_chart(tmp_path, manifest=None, **kw):
    artifacts = known_good_artifacts(**({MANIFEST: manifest} if manifest else {}))
    ctx = make_context(tmp_path, artifacts, state=kw.pop("state", built_state()), stage=State.CHART, **kw)
    return ctx, chart.run(ctx)


def helm_template(*args):
    result = kexec.run([HELM, "template", *args, "--kube-version", "1.33.0"], timeout=60)
    assert result.ok, result.output
    return load_manifest(result.stdout, filename="helm output")


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    ctx, result = run_chart(tmp_path_factory.mktemp("chart"))
    assert result.outcome == Outcome.OK, [e.render() for e in result.evidence]
    return ctx, result, ctx.rundir.path / result.updates["chart"]


def test_known_good_set_becomes_a_packaged_chart(packaged):
    ctx, result, tgz = packaged
    assert result.updates["chart"] == "chart/credit-card-0.1.0.tgz"
    assert tgz.is_file()
    assert result.updates == {"chart": "chart/credit-card-0.1.0.tgz"}
    assert (ctx.rundir.path / "chart" / "credit-card" / "templates" / "_helpers.tpl").is_file()


def test_chart_metadata_app_version_is_the_image_tag(packaged):
    _, _, tgz = packaged
    with tarfile.open(tgz) as tar:
        meta = yaml.safe_load(tar.extractfile("credit-card/Chart.yaml").read())
        values = yaml.safe_load(tar.extractfile("credit-card/values.yaml").read())
        names = tar.getnames()
    assert meta["apiVersion"] == "v2" and meta["name"] == "credit-card" and meta["version"] == "0.1.0"
    assert meta["appVersion"] == KNOWN_GOOD_IMAGE.rsplit(":", 1)[1]
    assert values["image"] == {"repository": "127.0.0.1:5005/kubevibe/credit-card",
                               "tag": meta["appVersion"], "pullPolicy": "IfNotPresent"}
    assert values["service"] == {"type": "ClusterIP", "port": 80, "targetPort": 5000}
    assert values["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    assert "credit-card/templates/NOTES.txt" in names and "credit-card/.helmignore" in names


def test_packaged_chart_renders_valid_objects_that_keep_the_manifest(packaged):
    _, _, tgz = packaged
    docs = helm_template("credit-card", str(tgz))
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "credit-card"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == KNOWN_GOOD_IMAGE
    assert container["env"] == [{"name": "FLASK_ENV", "value": "production"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 5000}
    assert container["ports"] == [{"containerPort": 5000}]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 5000}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert labels["app"] == "credit-card"  # the manifest's own labels stay


def test_values_change_the_rendered_objects(packaged):
    _, _, tgz = packaged
    docs = helm_template("shop", str(tgz), "--set", "replicaCount=3", "--set", "service.targetPort=8080",
                         "--set", "image.tag=v2")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["name"] == "shop-credit-card"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "127.0.0.1:5005/kubevibe/credit-card:v2"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["port"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == 8080


def test_a_second_attempt_replaces_the_chart_and_extra_objects_survive_literally(tmp_path):
    config = ("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n"
              "  template.txt: 'Hello {{ name }}'\n")
    docs = load_manifest(KNOWN_GOOD_MANIFEST + config)
    docs[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "web"
    docs[1]["spec"]["ports"][0]["targetPort"] = "web"  # a named targetPort
    docs[0]["spec"]["template"]["metadata"]["annotations"] = {"note": "{{ not helm }}"}
    manifest = yaml.safe_dump_all(docs, sort_keys=False)
    ctx, first = run_chart(tmp_path, manifest=manifest)
    assert first.outcome == Outcome.OK, [e.render() for e in first.evidence]
    stale = ctx.rundir.path / "chart" / "credit-card" / "templates" / "stale.yaml"
    stale.write_text("this: is left over\n")
    ctx.step, ctx.stage = 2, State.CHART
    second = chart.run(ctx)
    assert second.outcome == Outcome.OK
    assert not stale.exists()
    rendered = helm_template("credit-card", str(ctx.rundir.path / second.updates["chart"]))
    configmap = next(d for d in rendered if d["kind"] == "ConfigMap")
    assert configmap["data"] == {"template.txt": "Hello {{ name }}"}
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"note": "{{ not helm }}"}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 5000,
                                                                                  "name": "web"}]


def test_rendered_chart_is_checked_like_validate(tmp_path):
    # NodePort passed Validate because the setting allowed it; the same setting is what the chart is checked with.
    manifest = KNOWN_GOOD_MANIFEST.replace("type: ClusterIP", "type: NodePort")
    _, allowed = run_chart(tmp_path / "a", manifest=manifest, settings_overrides={"allow_node_port": True})
    assert allowed.outcome == Outcome.OK
    _, refused = run_chart(tmp_path / "b", manifest=manifest)
    assert refused.outcome == Outcome.FAILED
    assert refused.summary.startswith("the rendered chart has 1 problem: Service credit-card: spec.type is NodePort")
    assert any(e.kind == "command" and e.title == "helm template" for e in refused.evidence)


def test_chart_name_is_dns_safe():
    assert chart.chart_name("Credit Card_Validator!") == "credit-card-validator"
    assert chart.chart_name("123") == "app-123"
    assert len(chart.chart_name("x" * 100)) == 53
