"""kubevibe.manifests: loading, walking and rewriting manifests; reading EXPOSE from a Dockerfile."""

from __future__ import annotations

import pytest
from helpers import KNOWN_GOOD_MANIFEST, known_good_docs

from kubevibe import manifests
from kubevibe.manifests import ManifestError, load_manifest


def test_load_known_good_and_drop_empty_documents():
    docs = load_manifest("---\n" + KNOWN_GOOD_MANIFEST + "---\n---\n")
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    assert manifests.workloads(docs) == [docs[0]]
    assert manifests.services(docs) == [docs[1]]


def test_yaml_error_names_the_line():
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   bad: indent\n"
    with pytest.raises(ManifestError) as info:
        load_manifest(text)
    assert info.value.line == 5
    assert str(info.value).startswith("vibe.yaml is not valid YAML: line 5, column")
    assert str(info.value).endswith(".")
    assert "\n" not in str(info.value)


def test_duplicate_keys_are_an_error_like_kubectl():
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n"
    with pytest.raises(ManifestError, match=r"line 5.*duplicate key 'name' \(first at line 4\)"):
        load_manifest(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n- just\n- a list\n",
         "Document 2 of vibe.yaml is a list, not a Kubernetes object"),
        ("metadata: {name: a}\nspec: {}\n", "Document 1 of vibe.yaml has no apiVersion"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "Document 1 of vibe.yaml has no kind"),
        ("apiVersion: v1\nkind: Service\nspec: {}\n", "Document 1 of vibe.yaml (Service) has no metadata"),
        ("apiVersion: v1\nkind: Service\nmetadata: {labels: {a: b}}\n", "(Service) has no metadata.name"),
        ("just text\n", "is a plain string, not a Kubernetes object"),
    ],
)
def test_documents_that_are_not_objects(text, expected):
    with pytest.raises(ManifestError) as info:
        load_manifest(text)
    assert expected in str(info.value)


def test_pod_spec_of_every_pod_kind():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
    cron = {"kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b"}],
                                                                    "initContainers": [{"name": "i"}]}}}}}}
    assert [c["name"] for c in manifests.containers(pod)] == ["a"]
    assert [c["name"] for c in manifests.containers(cron)] == ["b"]
    assert [c["name"] for c in manifests.containers(cron, include_init=True)] == ["i", "b"]
    assert manifests.pod_spec({"kind": "Service", "spec": {}}) == {}
    assert manifests.pod_spec({"kind": "Deployment", "spec": {"template": "nonsense"}}) == {}


def test_set_image_replaces_deployment_containers_only_and_copies():
    docs = known_good_docs()
    docs[0]["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1.36"}]
    docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                 "spec": {"containers": [{"name": "x", "image": "other:1"}]}})
    out = manifests.set_image(docs, "reg/app:run-1")
    assert [c["image"] for c in manifests.containers(out[0])] == ["reg/app:run-1"]
    assert out[0]["spec"]["template"]["spec"]["initContainers"][0]["image"] == "busybox:1.36"
    assert manifests.containers(out[2])[0]["image"] == "other:1"
    assert manifests.containers(docs[0])[0]["image"] == "credit-card:latest"  # input unchanged


def test_service_ports_resolve_named_target_ports():
    docs = known_good_docs()
    docs[0]["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "web", "containerPort": 5000}]
    docs[1]["spec"]["ports"] = [{"port": 80, "targetPort": "web"}, {"port": 81, "targetPort": "nope"},
                                {"port": 8080}]
    assert manifests.service_ports(docs) == [("credit-card", 80, 5000), ("credit-card", 81, None),
                                             ("credit-card", 8080, 8080)]


def test_selects():
    assert manifests.selects({"app": "a"}, {"app": "a", "tier": "web"})
    assert not manifests.selects({"app": "a", "tier": "db"}, {"app": "a"})
    assert not manifests.selects({}, {"app": "a"})


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("127.0.0.1:5005/kubevibe/app:run-1", ("127.0.0.1:5005/kubevibe/app", "run-1")),
        ("127.0.0.1:5005/kubevibe/app", ("127.0.0.1:5005/kubevibe/app", "")),
        ("python:3.11-slim", ("python", "3.11-slim")),
        ("app@sha256:abc", ("app", "sha256:abc")),
    ],
)
def test_split_image(image, expected):
    assert manifests.split_image(image) == expected


def test_dump_manifest_round_trips():
    docs = known_good_docs()
    assert load_manifest(manifests.dump_manifest(docs)) == docs


@pytest.mark.parametrize(
    ("dockerfile", "ports"),
    [
        ("FROM python:3.11-slim\nEXPOSE 5000\n", [5000]),
        ("FROM x\nexpose 8080/tcp 9090/udp\n# EXPOSE 1234\nEXPOSE 8080\n", [8080, 9090]),
        ("FROM x\nRUN echo a \\\n  && echo b\nEXPOSE \\\n  7000\n", [7000]),
        ("FROM x\nEXPOSE $PORT 8000-8002\n", [8000, 8001, 8002]),
        ("FROM x\nCMD [\"python\", \"app.py\"]\n", []),
    ],
)
def test_dockerfile_exposed_ports(dockerfile, ports):
    assert manifests.dockerfile_exposed_ports(dockerfile) == ports


def test_dns_label_rules_shared_by_image_service_and_chart_names():
    from kubevibe.manifests import dns_label

    assert dns_label("Credit Card -- Validator!") == "credit-card-validator"
    assert dns_label("x" * 80) == "x" * 63
    assert dns_label("a" * 39 + "-b", max_len=40) == "a" * 39  # never ends with '-'
    assert dns_label("42 things", letter_first=True, fallback="svc") == "svc"
    assert dns_label("%%%", fallback="service") == "service"
