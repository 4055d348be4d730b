"""``rgs cluster ...``: the Kubernetes side of ray-rgs.

``rgs cluster validate FILE --crds DIR [--json]`` checks a KubeRay manifest offline
against the CRDs a cluster serves (``kubectl get crd rayservices.ray.io -o yaml``) and a
RayService's ``serveConfigV2`` against Ray Serve's schema, rejecting unknown fields and
keys in both (see ``cluster.validate``). Exit 0 when valid, 1 with every problem (path,
line and message), 2 when it cannot validate (unreadable file or YAML, no CRD for a kind).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.base import Parser, add_json_flag, emit_json, fail

__all__ = ["register"]

PREFIX = "rgs cluster validate"


def register(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="Kubernetes/KubeRay: validate the manifest")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", parser_class=Parser)
    cluster_sub.required = True
    validate = cluster_sub.add_parser(
        "validate",
        help="check a KubeRay manifest offline against the cluster's CRDs and Serve's schema",
        description=(
            "Validate every document of FILE against the CRD of its kind found in --crds "
            "(unknown fields rejected), and a RayService's serveConfigV2 against Ray Serve's "
            "schema (unknown keys rejected). Exit 0 when valid, 1 listing every problem, "
            "2 when the validation cannot run."
        ),
    )
    validate.add_argument("file", metavar="FILE", help="the manifest, e.g. ray-cluster.yaml")
    validate.add_argument(
        "--crds",
        required=True,
        metavar="DIR",
        help="folder (or file) of CustomResourceDefinitions, e.g. from kubectl get crd NAME -o yaml",
    )
    add_json_flag(validate)
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    # imported here so that other rgs commands do not pay for jsonschema and YAML
    from cluster.validate import SetupError, load_crds, validate_manifest_file

    try:
        catalog = load_crds(Path(args.crds))
        report = validate_manifest_file(Path(args.file), catalog)
    except SetupError as exc:
        fail(f"{PREFIX}: {exc}")
    if args.json:
        emit_json(
            {
                "ok": report.ok,
                "file": args.file,
                "crds": args.crds,
                "ray_version": report.ray_version,
                "documents": [
                    {
                        "index": d.index,
                        "kind": d.kind,
                        "apiVersion": d.api_version,
                        "name": d.name,
                        "crd": d.crd,
                        "applications": d.applications,
                    }
                    for d in report.documents
                ],
                "problems": [
                    {
                        "document": p.document,
                        "path": p.where,
                        "line": p.line,
                        "check": p.check,
                        "message": p.message,
                    }
                    for p in report.problems
                ],
                "warnings": report.warnings,
            }
        )
        return 0 if report.ok else 1
    for warning in report.warnings:
        print(f"{args.file}: warning: {warning}")
    if report.ok:
        print(f"{args.file}: OK: {_summary(report)}")
        return 0
    for problem in report.problems:
        where = f"{args.file}:{problem.line}" if problem.line is not None else args.file
        print(f"{where}: {problem}")
    count = len(report.problems)
    print(f"{args.file}: {count} problem{'s' if count != 1 else ''} ({_summary(report)})")
    return 1


def _summary(report: Any) -> str:
    parts = []
    for d in report.documents:
        text = f"{d.kind} {d.name or '(unnamed)'} ({d.api_version}) against CRD {d.crd}"
        if d.applications:
            deployments = sum(len(a["deployments"]) for a in d.applications)
            apps = ", ".join(f"{a['name']} {a['route_prefix']}" for a in d.applications)
            text += (
                f"; serveConfigV2 against Ray {report.ray_version} Serve schema: "
                f"{len(d.applications)} application{'s' if len(d.applications) != 1 else ''} "
                f"({apps}), {deployments} deployment{'s' if deployments != 1 else ''}"
            )
        parts.append(text)
    return "; ".join(parts)
