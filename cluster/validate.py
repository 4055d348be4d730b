"""Offline validation of KubeRay manifests, the way the cluster that serves the CRDs would.

Four checks, all without a cluster, a network or importing the applications:

* **schema**: each document against its CRD's ``openAPIV3Schema`` for the document's
  ``apiVersion``, turned into JSON Schema with unknown fields rejected (what
  ``kubectl apply --validate=strict`` does; without it the API server silently prunes them,
  so a misspelled ``resoures:`` deploys a pod with no limits).
* **serve**: a RayService's ``spec.serveConfigV2`` (a YAML string) with Ray Serve's own
  pydantic schema, ``ServeDeploySchema``, plus a walk over the parsed keys against the
  schema models' fields, because those models ignore keys they do not know
  (``max_ongoing_request: 200`` would deploy with the default of 5).
* **yaml**: duplicate mapping keys, which PyYAML resolves silently (last wins) and
  Kubernetes rejects.
* **policy**: pods must be given longer to terminate than Serve takes to drain a replica.

CEL rules (``x-kubernetes-validations``) are not evaluated; the API server checks them.
Problems carry the JSON path of the offending field and, where the text has one, its line.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Crd",
    "CrdCatalog",
    "DocumentReport",
    "ManifestReport",
    "Problem",
    "SetupError",
    "crd_to_json_schema",
    "format_path",
    "load_crds",
    "serve_config_problems",
    "unknown_serve_keys",
    "validate_manifest",
    "validate_manifest_file",
]

PathPart = str | int
JsonPath = tuple[PathPart, ...]

# Fields Serve passes through to user code or to Ray untouched: their keys are the
# user's, so the unknown-key walk must not descend into them.
FREE_FORM_SERVE_KEYS = frozenset({"user_config", "runtime_env", "args"})

# Serve's default replica drain (DeploymentSchema.graceful_shutdown_timeout_s) and
# Kubernetes' default pod grace period, used when the manifest leaves them unset.
SERVE_DEFAULT_DRAIN_S = 20.0
K8S_DEFAULT_GRACE_S = 30

# OpenAPI v3 keywords that mean the same in JSON Schema 2020-12
_SCALAR_KEYWORDS = (
    *("type", "enum", "required", "format", "pattern", "multipleOf", "uniqueItems"),
    *("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"),
    *("minProperties", "maxProperties"),
)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class SetupError(Exception):
    """The validation could not run (unreadable input, no CRD for a kind): exit status 2."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (JSON path, line) and what."""

    path: JsonPath
    message: str
    check: str = "schema"  # schema | serve | yaml | policy
    line: int | None = None  # 1-based, in the manifest file
    document: int = 0  # index among the file's documents

    @property
    def where(self) -> str:
        return format_path(self.path) or "(document)"

    def sort_key(self) -> tuple[Any, ...]:
        return (self.document, tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.path), self.message)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def format_path(path: Iterable[PathPart]) -> str:
    """``spec.template.containers[0].resources``; odd keys quoted: ``labels["app.kubernetes.io/name"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --------------------------------------------------------------------------- YAML


# libyaml's parser when PyYAML has it: the KubeRay CRDs are 18,000 lines each (~0.3 s vs ~1.5 s)
_BaseLoader: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _Loader(_BaseLoader):
    """Safe YAML, with timestamps left as strings (Kubernetes sees them as strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_error_text(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: what, where, and where the construct it was in began."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem is None:
        return str(exc).splitlines()[0]
    text = str(problem)
    if problem_mark is not None:
        text += f" (line {problem_mark.line + 1}, column {problem_mark.column + 1})"
    if context and context_mark is not None and (problem_mark is None or context_mark.line != problem_mark.line):
        text += f", {context} from line {context_mark.line + 1}"
    return text


def _load_documents(text: str) -> list[tuple[Any, yaml.Node | None]]:
    """Every non-empty document: its data and its node tree (for line numbers)."""
    data = list(yaml.load_all(text, Loader=_Loader))
    nodes = list(yaml.compose_all(text, Loader=_Loader))
    return [(d, n) for d, n in zip(data, nodes, strict=True) if d is not None]


def _line_of(root: yaml.Node | None, path: JsonPath) -> int | None:
    """The 1-based line of the deepest node of ``path`` present in the tree."""
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = None
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    found = (key, value)  # the last one wins, as in the loaded data
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _node_at(root: yaml.Node | None, path: JsonPath) -> yaml.Node | None:
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            matches = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            node = matches[-1] if matches else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


def _duplicate_keys(node: yaml.Node | None, path: JsonPath = ()) -> Iterator[tuple[JsonPath, int, int]]:
    """(path, line, first line) of every key repeated within one mapping."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            line = key.start_mark.line + 1
            if key.value in first:
                yield (*path, key.value), line, first[key.value]
            else:
                first[key.value] = line
            yield from _duplicate_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index))


# --------------------------------------------------------------------------- CRDs


@dataclass(frozen=True)
class Crd:
    """One version of a CustomResourceDefinition."""

    name: str  # rayservices.ray.io
    group: str
    kind: str
    version: str
    served: bool
    schema: Mapping[str, Any]  # the version's openAPIV3Schema
    source: Path

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@dataclass
class CrdCatalog:
    """The CRDs found in a folder (or file), by kind."""

    source: Path
    crds: list[Crd] = field(default_factory=list)

    def versions_of(self, kind: str) -> list[Crd]:
        return [c for c in self.crds if c.kind == kind]

    def kinds(self) -> list[str]:
        return sorted({c.kind for c in self.crds})


def load_crds(location: Path) -> CrdCatalog:
    """Every CRD in ``location`` (a folder searched recursively, or one file).

    Accepts what ``kubectl get crd NAME -o yaml`` prints, several per file, and ``kind: List``.
    """
    if location.is_dir():
        files = sorted(p for p in location.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    elif location.is_file():
        files = [location]
    elif location.exists():
        raise SetupError(f"{location} is neither a file nor a folder")
    else:
        raise SetupError(f"CRD folder {location} does not exist")
    catalog = CrdCatalog(location)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            documents = list(yaml.load_all(text, Loader=_Loader))
        except OSError as exc:
            raise SetupError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise SetupError(f"cannot read {path}: not UTF-8 text") from exc
        except yaml.YAMLError as exc:
            raise SetupError(f"{path} is not valid YAML: {_yaml_error_text(exc)}") from exc
        for document in _expand_lists(documents):
            catalog.crds.extend(_crd_versions(document, path))
    if not catalog.crds:
        raise SetupError(f"no CustomResourceDefinition found in {location}")
    return catalog


def _expand_lists(documents: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    for document in documents:
        if isinstance(document, Mapping):
            if document.get("kind") == "List" and isinstance(document.get("items"), list):
                yield from _expand_lists(document["items"])
            else:
                yield document


def _crd_versions(document: Mapping[str, Any], source: Path) -> Iterator[Crd]:
    if document.get("kind") != "CustomResourceDefinition":
        return
    spec = document.get("spec") or {}
    group = spec.get("group")
    kind = (spec.get("names") or {}).get("kind")
    name = (document.get("metadata") or {}).get("name") or f"{kind}.{group}"
    if not isinstance(group, str) or not isinstance(kind, str):
        raise SetupError(f"{source}: CRD {name} has no spec.group or spec.names.kind")
    for version in spec.get("versions") or []:
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) if isinstance(version, Mapping) else None
        if isinstance(schema, Mapping):
            yield Crd(str(name), group, kind, str(version.get("name")), bool(version.get("served", True)), schema, source)


def _object_meta_schema() -> dict[str, Any]:
    """ObjectMeta as a manifest may set it; the CRD leaves top-level metadata open."""
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    anything: dict[str, Any] = {}
    return {
        "type": "object",
        "required": ["name"],  # kubectl apply needs it (generateName works only with create)
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": string_map,
            "annotations": string_map,
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "items": {"type": "object"}},
            # set by the server; present when a manifest was exported with kubectl get -o yaml
            **{
                k: anything
                for k in (
                    "uid",
                    "resourceVersion",
                    "generation",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "managedFields",
                    "selfLink",
                )
            },
        },
        "additionalProperties": False,
    }


def crd_to_json_schema(openapi: Mapping[str, Any], *, top_level: bool = True) -> dict[str, Any]:
    """A CRD's structural OpenAPI v3 schema as JSON Schema that rejects unknown fields.

    Objects that list ``properties`` are closed (``additionalProperties: false``) unless
    they set ``additionalProperties`` themselves or ``x-kubernetes-preserve-unknown-fields``;
    ``nullable`` admits null; ``x-kubernetes-int-or-string`` admits both; an
    ``x-kubernetes-embedded-resource`` also admits ``apiVersion``, ``kind`` and ``metadata``.
    At the top, ``metadata`` is checked as ObjectMeta.
    """
    out: dict[str, Any] = {k: openapi[k] for k in _SCALAR_KEYWORDS if k in openapi}
    if openapi.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]  # the CRD's anyOf says the same
    elif "anyOf" in openapi:
        out["anyOf"] = [crd_to_json_schema(s, top_level=False) for s in openapi["anyOf"]]
    for key in ("allOf", "oneOf"):
        if key in openapi:
            out[key] = [crd_to_json_schema(s, top_level=False) for s in openapi[key]]
    if isinstance(openapi.get("not"), Mapping):
        out["not"] = crd_to_json_schema(openapi["not"], top_level=False)
    # OpenAPI 3.0's boolean exclusive bounds are numbers in JSON Schema 2020-12
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if openapi.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    if openapi.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    properties = dict(openapi.get("properties") or {})
    if openapi.get("x-kubernetes-embedded-resource"):
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if properties:
        out["properties"] = {name: crd_to_json_schema(sub, top_level=False) for name, sub in properties.items()}
    if isinstance(openapi.get("items"), Mapping):
        out["items"] = crd_to_json_schema(openapi["items"], top_level=False)
    additional = openapi.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = crd_to_json_schema(additional, top_level=False)
    elif isinstance(additional, bool):
        out["additionalProperties"] = additional
    elif properties and not openapi.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if top_level:
        out.setdefault("properties", {})["metadata"] = _object_meta_schema()
        out["properties"].setdefault("apiVersion", {"type": "string"})
        out["properties"].setdefault("kind", {"type": "string"})
        out["additionalProperties"] = False
        out["required"] = sorted({*out.get("required", []), "apiVersion", "kind", "metadata"})
    return out


def _validator(schema: dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker

    checker = FormatChecker(formats=())  # no network- or dependency-backed formats

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or -(2**31) <= value < 2**31

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63

    return Draft202012Validator(schema, format_checker=checker)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )
    if isinstance(value, (dict, list)):
        return kind
    text = json.dumps(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _type_names(expected: object) -> str:
    names = [expected] if isinstance(expected, str) else list(expected) if isinstance(expected, list) else []
    words = [("an " if str(n)[0] in "aeiou" else "a ") + str(n) for n in names if n != "null"]
    text = " or ".join(words) or "null"
    return text + (" or null" if "null" in names and words else "")


def _closest(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _schema_problems(document: Mapping[str, Any], crd: Crd, index: int) -> Iterator[Problem]:
    from jsonschema.exceptions import SchemaError

    validator = _validator(crd_to_json_schema(crd.schema))
    try:
        errors = list(validator.iter_errors(document))
    except (SchemaError, re.error) as exc:
        raise SetupError(f"the {crd.name} schema in {crd.source} cannot be used: {exc}") from exc
    for error in errors:
        path: JsonPath = tuple(error.absolute_path)
        instance, kind, expected = error.instance, error.validator, error.validator_value
        if kind == "additionalProperties" and isinstance(instance, Mapping):
            known = error.schema.get("properties", {})
            for key in instance:
                if key not in known:
                    yield Problem((*path, key), "unknown field" + _closest(str(key), known), document=index)
        elif kind == "required" and isinstance(instance, Mapping):
            for name in expected:
                if name not in instance:
                    yield Problem((*path, name), "required field is missing", document=index)
        elif kind == "type":
            yield Problem(path, f"expected {_type_names(expected)}, got {_describe(instance)}", document=index)
        elif kind == "enum":
            allowed = ", ".join(json.dumps(v) for v in expected)
            yield Problem(path, f"must be one of {allowed}; got {_describe(instance)}", document=index)
        elif kind == "format":
            yield Problem(path, f"{json.dumps(instance)} does not fit in {expected}", document=index)
        elif kind == "pattern":
            yield Problem(path, f"{json.dumps(instance)} does not match the pattern {expected}", document=index)
        else:
            yield Problem(path, error.message, document=index)


# --------------------------------------------------------------------------- Serve


def _serve_models() -> tuple[type[Any], type[Any]]:
    """(BaseModel, ServeDeploySchema): imported on first use; importing Ray costs ~0.5 s."""
    from pydantic import BaseModel
    from ray.serve.schema import ServeDeploySchema

    return BaseModel, ServeDeploySchema


def _model_targets(annotation: Any, base: type[Any]) -> list[tuple[str, type[Any]]]:
    """Where a field's value holds models: ("one", M), ("list", M) items or ("map", M) values."""
    if isinstance(annotation, type) and issubclass(annotation, base):
        return [("one", annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _model_targets(args[0], base)
    if origin in (typing.Union, types.UnionType):
        return [t for a in args for t in _model_targets(a, base)]
    if origin in (list, tuple, set, frozenset, Sequence):
        return [("list", m) for a in args if a is not Ellipsis for s, m in _model_targets(a, base) if s == "one"]
    if origin in (dict, Mapping) and len(args) == 2:
        return [("map", m) for s, m in _model_targets(args[1], base) if s == "one"]
    return []


def _plain_dict_allowed(annotation: Any, base: type[Any]) -> bool:
    """Whether a union admits a plain dict (so pydantic keeps it unvalidated)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is dict or origin in (dict, Mapping):
        return True
    if origin is typing.Annotated:
        return _plain_dict_allowed(args[0], base)
    if origin in (typing.Union, types.UnionType):
        return any(_plain_dict_allowed(a, base) for a in args)
    if origin in (list, tuple, Sequence):
        return any(_plain_dict_allowed(a, base) for a in args if a is not Ellipsis)
    return False


def unknown_serve_keys(data: object, model: type[Any] | None = None, path: JsonPath = ()) -> list[Problem]:
    """Keys of a Serve config that its schema model (default ``ServeDeploySchema``) does not define.

    Also validates, with their own model, values that Serve's schema accepts as plain dicts
    and would only check at deploy time (``autoscaling_config``, ``request_router_config``...).
    """
    base, root = _serve_models()
    problems: list[Problem] = []
    _walk_serve(data, model or root, path, base, problems)
    return problems


def _walk_serve(data: object, model: type[Any], path: JsonPath, base: type[Any], problems: list[Problem]) -> None:
    if not isinstance(data, Mapping):
        return  # a wrong type is for pydantic to report
    known: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        known[name] = info
        if info.alias:
            known[info.alias] = info
    for key, value in data.items():
        info = known.get(key) if isinstance(key, str) else None
        if info is None:
            problems.append(Problem((*path, str(key)), "unknown key" + _closest(str(key), known), check="serve"))
            continue
        if key in FREE_FORM_SERVE_KEYS:
            continue
        check_model = _plain_dict_allowed(info.annotation, base)
        for shape, sub_model in _model_targets(info.annotation, base)[:1]:
            if shape == "one":
                items: list[tuple[JsonPath, object]] = [((*path, key), value)]
            elif shape == "list" and isinstance(value, list):
                items = [((*path, key, i), item) for i, item in enumerate(value)]
            elif shape == "map" and isinstance(value, Mapping):
                items = [((*path, key, str(k)), v) for k, v in value.items()]
            else:
                items = []
            for item_path, item in items:
                if not isinstance(item, Mapping):
                    continue
                _walk_serve(item, sub_model, item_path, base, problems)
                if check_model:
                    problems.extend(_pydantic_problems(sub_model, item, item_path))


def _pydantic_problems(model: type[Any], data: object, prefix: JsonPath = ()) -> list[Problem]:
    """Pydantic's own errors, on paths of the data (union branch tags dropped, merged per path)."""
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    except (TypeError, ValueError) as exc:  # a validator that raised outside pydantic's wrapper
        return [Problem(prefix, str(exc), check="serve")]
    else:
        return []
    merged: dict[JsonPath, list[str]] = {}
    for error in errors:
        if error.get("type") == "extra_forbidden":
            continue  # reported, with a suggestion, by the unknown-key walk
        path = _data_path(data, error.get("loc", ()), missing=error.get("type") == "missing")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "required key is missing"
        seen = merged.setdefault((*prefix, *path), [])
        if message not in seen:
            seen.append(message)
    return [Problem(p, "; or ".join(m), check="serve") for p, m in merged.items()]


def _data_path(data: object, loc: Sequence[PathPart], *, missing: bool) -> JsonPath:
    """Keep the parts of a pydantic ``loc`` that index the data; drop union tags such as ``int``."""
    out: list[PathPart] = []
    current: Any = data
    for position, part in enumerate(loc):
        indexes = (isinstance(current, Mapping) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        )
        if indexes:
            out.append(part)
            current = current[part]
        elif missing and position == len(loc) - 1 and isinstance(part, str):
            out.append(part)
    return tuple(out)


def serve_config_problems(text: str, first_line: int | None = 1) -> tuple[list[Problem], Any]:
    """Problems of a ``serveConfigV2`` text (paths relative to it), and its data.

    ``first_line`` is the file line of the text's first line (a literal block keeps its
    lines); ``None`` when the text's lines do not map onto the file's (a quoted string).
    """

    def line_of(inner: int | None) -> int | None:
        return None if inner is None or first_line is None else first_line - 1 + inner

    try:
        loaded = _load_documents(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        message = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])
        if mark is None:
            return [Problem((), f"is not valid YAML: {message}", check="serve")], None
        line = line_of(mark.line + 1)
        at = f"column {mark.column + 1}" if line is not None else f"line {mark.line + 1}, column {mark.column + 1}"
        return [Problem((), f"is not valid YAML: {message} ({at})", check="serve", line=line)], None
    if len(loaded) != 1:
        return [Problem((), f"must hold one YAML document, found {len(loaded)}", check="serve")], None
    data, node = loaded[0]
    problems = []
    for path, line, first in _duplicate_keys(node):
        outer_first = line_of(first)
        first_at = f"line {outer_first}" if outer_first is not None else f"line {first} of serveConfigV2"
        problems.append(Problem(path, f"duplicate key (first on {first_at})", check="yaml", line=line_of(line)))
    if not isinstance(data, Mapping):
        problems.append(Problem((), f"must be a mapping with applications:, got {_describe(data)}", check="serve"))
        return problems, None
    _, root = _serve_models()
    problems += unknown_serve_keys(data)
    problems += _pydantic_problems(root, data)
    return [
        p if p.line is not None else Problem(p.path, p.message, p.check, line_of(_line_of(node, p.path)))
        for p in problems
    ], data


# --------------------------------------------------------------------------- manifests


@dataclass
class DocumentReport:
    index: int
    kind: str
    api_version: str
    name: str
    crd: str
    applications: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ManifestReport:
    """What ``validate_manifest`` found; ``ok`` when there is no problem."""

    documents: list[DocumentReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ray_version: str | None = None  # whose Serve schema checked serveConfigV2

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_manifest_file(path: Path, catalog: CrdCatalog) -> ManifestReport:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SetupError(f"cannot read {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise SetupError(f"cannot read {path}: it is a directory") from exc
    except UnicodeDecodeError as exc:
        raise SetupError(f"cannot read {path}: not UTF-8 text") from exc
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return validate_manifest(text, catalog, file_name=str(path))


def validate_manifest(text: str, catalog: CrdCatalog, *, file_name: str = "manifest") -> ManifestReport:
    """Validate every document of a manifest against the CRD of its kind.

    Raises ``SetupError`` when it cannot: not YAML, no object, or a kind with no CRD.
    """
    try:
        loaded = _load_documents(text)
    except yaml.YAMLError as exc:
        raise SetupError(f"{file_name} is not valid YAML: {_yaml_error_text(exc)}") from exc
    if not loaded:
        raise SetupError(f"{file_name} holds no Kubernetes object")
    report = ManifestReport()
    for index, (document, node) in enumerate(loaded):
        label = f"{file_name}, document {index + 1}" if len(loaded) > 1 else file_name
        if not isinstance(document, Mapping):
            raise SetupError(f"{label} is not a Kubernetes object (a mapping), it is {_describe(document)}")
        kind = document.get("kind")
        if not isinstance(kind, str) or not kind:
            raise SetupError(f"{label} has no kind, so no CRD can be chosen for it")
        versions = catalog.versions_of(kind)
        if not versions:
            raise SetupError(
                f"no CRD for kind {kind} in {catalog.source} (it has: {', '.join(catalog.kinds())})"
            )
        problems = list(_document_problems(document, node, versions, index, report))
        report.problems += [
            p if p.line is not None else Problem(p.path, p.message, p.check, _line_of(node, p.path), index)
            for p in problems
        ]
    # jsonschema reports a "required" failure once per missing field, each naming them all
    report.problems = sorted(dict.fromkeys(report.problems), key=Problem.sort_key)
    return report


def _document_problems(
    document: Mapping[str, Any], node: yaml.Node | None, versions: list[Crd], index: int, report: ManifestReport
) -> Iterator[Problem]:
    kind = str(document["kind"])
    metadata = document.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    for path, line, first in _duplicate_keys(node):
        yield Problem(path, f"duplicate key (first on line {first}); Kubernetes rejects it", "yaml", line, index)
    api_version = document.get("apiVersion")
    served = [c for c in versions if c.served]
    crd = next((c for c in served if c.api_version == api_version), None)
    if crd is None:
        expected = " or ".join(c.api_version for c in served) or "a served version"
        yield Problem(("apiVersion",), f"expected {expected} for kind {kind}, got {_describe(api_version)}", document=index)
        crd = next((c for c in served if c.version == "v1"), served[0] if served else versions[0])
    report.documents.append(DocumentReport(index, kind, str(api_version), name, crd.name))
    yield from _schema_problems(document, crd, index)
    spec = document.get("spec")
    if kind == "RayService" and isinstance(spec, Mapping) and isinstance(spec.get("serveConfigV2"), str):
        yield from _serve_section(spec, node, index, report)


def _serve_section(
    spec: Mapping[str, Any], node: yaml.Node | None, index: int, report: ManifestReport
) -> Iterator[Problem]:
    import ray

    report.ray_version = ray.__version__
    at: JsonPath = ("spec", "serveConfigV2")
    scalar = _node_at(node, at)
    # a literal block (|) keeps the text's lines, starting on the line after its "|"
    literal = isinstance(scalar, yaml.ScalarNode) and scalar.style == "|"
    first_line = scalar.start_mark.line + 2 if literal and scalar is not None else None
    problems, data = serve_config_problems(spec["serveConfigV2"], first_line)
    for p in problems:
        yield Problem((*at, *p.path), p.message, p.check, p.line or _line_of(node, at), index)
    if data is None:
        return
    cluster = spec.get("rayClusterConfig")
    wanted = cluster.get("rayVersion") if isinstance(cluster, Mapping) else None
    if isinstance(wanted, str) and wanted != ray.__version__:
        report.warnings.append(
            f"spec.rayClusterConfig.rayVersion is {wanted}, but serveConfigV2 was checked with Ray "
            f"{ray.__version__}'s schema; validate with the Ray the image runs"
        )
    apps = data.get("applications")
    drain, drain_at = 0.0, ""
    for a, app in enumerate(apps if isinstance(apps, list) else []):
        if not isinstance(app, Mapping):
            continue
        deployments = app.get("deployments")
        if not isinstance(deployments, list):
            deployments = []
        report.documents[-1].applications.append(
            {
                "name": app.get("name"),
                "route_prefix": app.get("route_prefix"),
                "import_path": app.get("import_path"),
                "deployments": [d.get("name") for d in deployments if isinstance(d, Mapping)],
            }
        )
        for d, deployment in enumerate(deployments):
            timeout = deployment.get("graceful_shutdown_timeout_s") if isinstance(deployment, Mapping) else None
            where = f"applications[{a}].deployments[{d}]"
            if timeout is None:
                timeout, where = SERVE_DEFAULT_DRAIN_S, f"unset for {where}, so Serve's default"
            if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > drain:
                drain, drain_at = float(timeout), where
    if isinstance(cluster, Mapping) and drain_at:
        yield from _grace_problems(cluster, drain, drain_at, index)


def _grace_problems(cluster: Mapping[str, Any], drain: float, drain_at: str, index: int) -> Iterator[Problem]:
    """Pods that may host replicas must outlive Serve's drain, or Kubernetes kills it midway."""
    groups: list[tuple[JsonPath, object]] = []
    head = cluster.get("headGroupSpec")
    if isinstance(head, Mapping):
        start = head.get("rayStartParams")
        head_cpus = start.get("num-cpus") if isinstance(start, Mapping) else None
        if str(head_cpus) != "0":  # a head without CPUs hosts no replica
            groups.append((("spec", "rayClusterConfig", "headGroupSpec"), head))
    workers = cluster.get("workerGroupSpecs")
    for i, group in enumerate(workers if isinstance(workers, list) else []):
        groups.append((("spec", "rayClusterConfig", "workerGroupSpecs", i), group))
    for path, group in groups:
        template = group.get("template") if isinstance(group, Mapping) else None
        pod = template.get("spec") if isinstance(template, Mapping) else None
        if not isinstance(pod, Mapping):
            continue
        grace = pod.get("terminationGracePeriodSeconds", K8S_DEFAULT_GRACE_S)
        if isinstance(grace, int) and not isinstance(grace, bool) and grace <= drain:
            yield Problem(
                (*path, "template", "spec", "terminationGracePeriodSeconds"),
                f"{grace} s is not longer than Serve's drain (graceful_shutdown_timeout_s {drain:g} s, "
                f"{drain_at}); Kubernetes would kill replicas mid-drain",
                check="policy",
                document=index,
            )
