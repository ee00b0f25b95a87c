"""The scaffold strategy's files but the handler bodies: Dockerfile, vibe.yaml, myapp.py around the bodies, and
requirements.txt (from what the code imports), rendered from the templates in assets/scaffold/.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2

from kubevibe.generation.scaffold_plan import ScaffoldPlan
from kubevibe.intent import Resources, ServiceSpec
from kubevibe.manifests import service_label

FLASK_REQUIREMENT = "flask==3.1.3"  # pinned; the base images pre-install nothing, as the official ones
DEFAULT_BASE_IMAGE = "python:3.11-slim"
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi)?$")
_BASE_IMAGE = re.compile(r"^(docker\.io/(library/)?)?python:3\.\d{1,2}(\.\d{1,2})?(-slim)?(-(bookworm|bullseye|trixie))?$")
_PIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}(\[[A-Za-z0-9,._-]+\])?"
                       r"((==|>=|<=|~=|!=|<|>)[A-Za-z0-9.*+!-]{1,30})?$")
# Import names whose pip package has another name.
_DISTRIBUTIONS = {"yaml": "PyYAML", "PIL": "Pillow", "sklearn": "scikit-learn", "bs4": "beautifulsoup4",
                  "dateutil": "python-dateutil", "jwt": "PyJWT", "dotenv": "python-dotenv",
                  "cv2": "opencv-python-headless"}


def load_template(name: str) -> str:
    return resources.files("kubevibe.assets").joinpath("scaffold", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # trim_blocks: a block tag's own line break is dropped, so the templates read like the files they make.
    return jinja2.Environment(loader=jinja2.FunctionLoader(load_template), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False, trim_blocks=True)


def render_template(template: str, **values: Any) -> str:
    return _env().get_template(template).render(**values)


def _resources(spec: ServiceSpec) -> Resources:
    defaults = Resources()
    values = {k: (v if _QUANTITY.match(str(v)) else getattr(defaults, k)) for k, v in spec.resources.model_dump().items()}
    return Resources(**values)


def render_dockerfile(spec: ServiceSpec) -> str:
    base = spec.base_image if _BASE_IMAGE.match(spec.base_image or "") else DEFAULT_BASE_IMAGE
    return render_template("Dockerfile.j2", base_image=base, target_port=spec.target_port)


def render_manifest(spec: ServiceSpec) -> str:
    return render_template("vibe.yaml.j2", name=service_label(spec.name), replicas=spec.replicas, port=spec.port,
                   target_port=spec.target_port, resources=_resources(spec))


def render_app(plan: ScaffoldPlan, bodies: dict[str, str]) -> str:
    """myapp.py from the plan and the (already indented) handler bodies."""
    description = " ".join((plan.spec.description or plan.spec.name).split())
    description = description.replace("\\", "/").replace('"""', "'''").rstrip('"') or plan.spec.name
    handlers = [{"rule_literal": json.dumps(h.rule, ensure_ascii=False), "method_literal": json.dumps(h.method), "function": h.function,
                 "params": ", ".join(h.params), "body": bodies[h.function].rstrip()} for h in plan.handlers]
    return render_template("myapp.py.j2", name=plan.spec.name, description=description, imports="\n".join(plan.imports),
                   support=plan.support, handlers=handlers, port=plan.spec.target_port)


def _module_of(requirement: str) -> str:
    return re.split(r"[\[=<>!~]", requirement, maxsplit=1)[0].strip()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(code: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def requirements_for(spec: ServiceSpec, code: str) -> list[str]:
    """flask pinned, the spec's dependencies, and the packages the code imports (standard library excluded).

    Dependencies are kept only when they look like pip requirements (a name, maybe extras and one version
    constraint); a module imported by the code maps to its pip name (yaml -> PyYAML, ...).
    """
    stdlib = set(sys.stdlib_module_names)
    imported = imported_modules(code) - stdlib - {"flask"}
    out, seen = [FLASK_REQUIREMENT], {"flask", "werkzeug"}

    def add(requirement: str) -> None:
        requirement = requirement.strip()
        key = _norm(_module_of(requirement))
        if not _PIP_NAME.match(requirement) or key in seen or _module_of(requirement) in stdlib:
            return
        seen.add(key)
        out.append(requirement)

    for dep in spec.dependencies:
        add(dep)
    for module in sorted(imported):
        add(_DISTRIBUTIONS.get(module, module))
    return out


def render_requirements(requirements: list[str]) -> str:
    return render_template("requirements.txt.j2", requirements=requirements)
