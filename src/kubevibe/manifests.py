"""Pure helpers over the generated files: loading and walking Kubernetes manifests, reading a Dockerfile's EXPOSE.

No I/O, no commands. Validate, Deploy and Chart share these, so "the containers of a workload" or "the port a
Service really targets" mean the same thing in every stage.

Every error message is one sentence naming the document and the problem, because it ends up in the evidence the
Fix stage shows the model.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import yaml

from kubevibe.pipeline.artifacts import MANIFEST

# Kinds that carry a pod template, and where their pod spec lives.
POD_KINDS = frozenset({"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController",
                       "Job", "CronJob"})
# The container lists of a pod spec, in the order findings name them.
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class ManifestError(ValueError):
    """The manifest cannot be read as Kubernetes objects. str() is one sentence; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


# --- loading ---------------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML keeps the last silently, kubectl rejects the file."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key; construct_mapping below reports it properly
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_manifest(text: str, filename: str = MANIFEST) -> list[dict]:
    """The Kubernetes objects in a multi-document YAML text (empty documents dropped).

    Raises ManifestError for YAML errors (with the line number), for documents that are not mappings, and for
    objects without apiVersion, kind or metadata.name.
    """
    try:
        raw = list(yaml.load_all(text, Loader=_StrictLoader))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, filename) from None
    docs: list[dict] = []
    for index, doc in enumerate(raw, start=1):
        if doc is None:
            continue
        where = f"Document {index} of {filename}"
        if not isinstance(doc, dict):
            raise ManifestError(f"{where} is a {_type_word(doc)}, not a Kubernetes object "
                                f"(a mapping with apiVersion, kind and metadata).")
        for field in ("apiVersion", "kind"):
            if not isinstance(doc.get(field), str) or not doc[field].strip():
                raise ManifestError(f"{where} has no {field}; every Kubernetes object needs apiVersion and kind.")
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict):
            raise ManifestError(f"{where} ({doc['kind']}) has no metadata mapping with a name.")
        if not isinstance(metadata.get("name"), str) or not metadata["name"].strip():
            raise ManifestError(f"{where} ({doc['kind']}) has no metadata.name.")
        docs.append(doc)
    return docs


def _yaml_error(exc: yaml.YAMLError, filename: str) -> ManifestError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{context}, {problem}" if context and problem and context not in problem else problem
    what = " ".join(str(what).split()).rstrip(".")
    if mark is not None:
        line = mark.line + 1
        return ManifestError(f"{filename} is not valid YAML: line {line}, column {mark.column + 1}: {what}.", line)
    return ManifestError(f"{filename} is not valid YAML: {what}.")


def _type_word(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "plain string"
    return type(value).__name__


def dump_manifest(docs: Iterable[Mapping]) -> str:
    """Multi-document YAML, keys in their original order."""
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False, default_flow_style=False,
                              width=float("inf"), explicit_start=False, allow_unicode=True)


# --- walking ---------------------------------------------------------------------------------------------------------


def describe(doc: Mapping) -> str:
    """`Deployment credit-card`: how findings name an object."""
    return f"{doc.get('kind', 'object')} {name_of(doc)}"


def name_of(doc: Mapping) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name) if name else "(unnamed)"


def of_kind(docs: Iterable[Mapping], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def workloads(docs: Iterable[Mapping]) -> list[dict]:
    """Objects that run pods (Deployment, StatefulSet, Job, Pod, ...), in manifest order."""
    return [d for d in docs if d.get("kind") in POD_KINDS]


def deployments(docs: Iterable[Mapping]) -> list[dict]:
    return of_kind(docs, "Deployment")


def services(docs: Iterable[Mapping]) -> list[dict]:
    return of_kind(docs, "Service")


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def pod_template(doc: Mapping) -> dict:
    """The pod template ({metadata, spec}) of a workload; for a Pod, the Pod itself. {} if there is none.

    The returned mapping is the document's own (not a copy), so callers working on a copy of the docs may edit it.
    """
    kind = doc.get("kind")
    spec = _mapping(doc.get("spec"))
    if kind == "Pod":
        return doc if isinstance(doc, dict) else dict(doc)
    if kind == "CronJob":
        return _mapping(_mapping(_mapping(spec.get("jobTemplate")).get("spec")).get("template"))
    if kind in POD_KINDS:
        return _mapping(spec.get("template"))
    return {}


def pod_spec(doc: Mapping) -> dict:
    """The pod spec of a workload ({} if it has none or it is malformed); the document's own mapping."""
    return _mapping(pod_template(doc).get("spec"))


def pod_labels(doc: Mapping) -> dict:
    """The labels its pods get (template labels; a Pod's own labels)."""
    return _mapping(_mapping(pod_template(doc).get("metadata")).get("labels"))


def containers(doc: Mapping, *, include_init: bool = False) -> list[dict]:
    """The containers of a workload (mappings only). include_init: also init and ephemeral containers."""
    spec = pod_spec(doc)
    lists = CONTAINER_LISTS if include_init else ("containers",)
    out: list[dict] = []
    for key in lists:
        items = spec.get(key)
        if isinstance(items, list):
            out.extend(c for c in items if isinstance(c, dict))
    return out


def container_ports(container: Mapping) -> list[dict]:
    ports = container.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def selects(selector: Mapping | None, labels: Mapping | None) -> bool:
    """A Service-style selector (plain labels) matches these labels. An empty selector selects nothing here:
    a Service without a selector has no pods behind it."""
    if not selector:
        return False
    labels = labels or {}
    return all(str(labels.get(k)) == str(v) and k in labels for k, v in selector.items())


def selected_workloads(service: Mapping, docs: Iterable[Mapping]) -> list[dict]:
    selector = _mapping(_mapping(service.get("spec")).get("selector"))
    return [w for w in workloads(docs) if selects(selector, pod_labels(w))]


# --- images ----------------------------------------------------------------------------------------------------------


def set_image(docs: Iterable[Mapping], image: str) -> list[dict]:
    """New docs in which every Deployment container (not init containers) runs `image`; the input is unchanged.

    The tool owns image names (one unique tag per run), so Deploy and Chart put the built image in place of
    whatever the model wrote.
    """
    out = [copy.deepcopy(dict(d)) for d in docs]
    for doc in deployments(out):
        for container in containers(doc):
            container["image"] = image
    return out


def drop_namespaces(docs: Iterable[Mapping]) -> tuple[list[dict], list[str]]:
    """(new docs without metadata.namespace, one note per dropped field). The tool chooses namespaces (a run's
    own on a cluster, none locally), so a namespace the model wrote is normalised away rather than refused."""
    out = [copy.deepcopy(dict(d)) for d in docs]
    notes = []
    for doc in out:
        metadata = doc.get("metadata")
        if isinstance(metadata, dict) and "namespace" in metadata:
            value = metadata.pop("namespace")
            notes.append(f"{describe(doc)}: metadata.namespace {value!r} dropped from the applied copy "
                         "(KubeVibe chooses the namespace)")
    return out, notes


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; tag "" if it has none. A digest counts as the tag.

    127.0.0.1:5005/kubevibe/app:run-1 -> ("127.0.0.1:5005/kubevibe/app", "run-1"); the registry's port is not a tag.
    """
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, ""


# --- ports -----------------------------------------------------------------------------------------------------------


class ServicePort(NamedTuple):
    service: str
    port: int | None
    target_port: int | None  # resolved to a number; None if a named targetPort names no containerPort


def resolve_target_port(target: Any, port: Any, pods: Iterable[Mapping]) -> int | None:
    """The number a Service port's targetPort means: itself if numeric, the port if absent, else the containerPort
    of that name in the selected pods."""
    if target is None:
        target = port
    if isinstance(target, bool):
        return None
    if isinstance(target, int):
        return target
    if isinstance(target, str):
        if target.isdigit():
            return int(target)
        for workload in pods:
            for container in containers(workload):
                for cport in container_ports(container):
                    if cport.get("name") == target and isinstance(cport.get("containerPort"), int):
                        return cport["containerPort"]
    return None


def service_ports(docs: Iterable[Mapping]) -> list[ServicePort]:
    """(service name, port, targetPort as a number) for every port of every Service.

    A named targetPort is resolved through the containerPort of that name in the workloads the Service selects
    (any workload, if it selects none).
    """
    docs = list(docs)
    out: list[ServicePort] = []
    for svc in services(docs):
        spec = _mapping(svc.get("spec"))
        pods = selected_workloads(svc, docs) or workloads(docs)
        ports = spec.get("ports")
        for entry in ports if isinstance(ports, list) else []:
            if not isinstance(entry, dict):
                continue
            port = entry.get("port") if isinstance(entry.get("port"), int) else None
            out.append(ServicePort(name_of(svc), port, resolve_target_port(entry.get("targetPort"), port, pods)))
    return out


# --- Dockerfile ------------------------------------------------------------------------------------------------------

def dockerfile_exposed_ports(text: str) -> list[int]:
    """The ports of every EXPOSE instruction (kubevibe.dockerfile, the one Dockerfile parser, reads them)."""
    from kubevibe.dockerfile import exposed_ports

    return exposed_ports(text)


def dns_label(text: str, *, max_len: int = 63, fallback: str = "service", letter_first: bool = False) -> str:
    """A DNS-1123 label from free text: lowercase alphanumerics and single '-', at most max_len characters.

    letter_first: the label must start with a letter (Service and chart names); otherwise fallback is used.
    """
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].rstrip("-")
    if not name or (letter_first and not name[0].isalpha()):
        return fallback
    return name


SERVICE_NAME_MAX_LEN = 40  # room for the suffixes targets add (namespaces, pod names) within 63


def service_label(text: str, fallback: str = "service") -> str:
    """A generated service's name (its Deployment and Service): a DNS-1123 label that starts with a letter, as a
    Service name must, of at most SERVICE_NAME_MAX_LEN characters. Image names take any dns_label (digits first)."""
    return dns_label(text, max_len=SERVICE_NAME_MAX_LEN, fallback=fallback, letter_first=True)
