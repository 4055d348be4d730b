"""``rgs cluster validate``: the shipped manifest passes; broken copies fail on the right path.

Validation runs against the KubeRay CRDs beside the repository (``../shared/kuberay-crds``),
the same ones CI uses; the tests skip, saying so, only when that folder is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.main import main
from cluster.validate import (
    CrdCatalog,
    ManifestReport,
    Problem,
    SetupError,
    crd_to_json_schema,
    load_crds,
    unknown_serve_keys,
    validate_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "ray-cluster.yaml"
CRDS = ROOT.parent / "shared" / "kuberay-crds"
TEXT = MANIFEST.read_text(encoding="utf-8")

needs_crds = pytest.mark.skipif(
    not CRDS.is_dir(), reason=f"the KubeRay CRDs are not at {CRDS} (the folder beside the repository)"
)
WORKER = "spec.rayClusterConfig.workerGroupSpecs[0]"
WORKER_CONTAINER = f"{WORKER}.template.spec.containers[0]"
WALLET = "spec.serveConfigV2.applications[0].deployments[0]"


@pytest.fixture(scope="module")
def catalog() -> CrdCatalog:
    if not CRDS.is_dir():
        pytest.skip(f"the KubeRay CRDs are not at {CRDS} (the folder beside the repository)")
    return load_crds(CRDS)


def edit(old: str, new: str, text: str = TEXT) -> str:
    """The manifest with the first ``old`` replaced (which must be there)."""
    assert old in text, f"the manifest no longer contains {old!r}; update the test"
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def by_path(report: ManifestReport) -> dict[str, Problem]:
    return {p.where: p for p in report.problems}


# --------------------------------------------------------------------------- the manifest


def test_shipped_manifest_is_valid(catalog: CrdCatalog) -> None:
    report = validate_manifest(TEXT, catalog, file_name="ray-cluster.yaml")
    assert report.problems == []
    assert report.warnings == []
    [document] = report.documents
    assert (document.kind, document.api_version, document.name) == ("RayService", "ray.io/v1", "ray-rgs")
    assert document.applications == [
        {"name": "wallet", "route_prefix": "/wallet", "import_path": "serve.apps:wallet_app", "deployments": ["WalletGateway"]},
        {"name": "operator", "route_prefix": "/api", "import_path": "serve.apps:operator_app", "deployments": ["OperatorApi"]},
    ]


def test_manifest_sets_what_holds_under_load() -> None:
    """The settings the issue asks for are present (not merely valid)."""
    import yaml

    doc = yaml.safe_load(TEXT)
    serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
    assert serve["http_options"]["request_timeout_s"] > 0
    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["gcsFaultToleranceOptions"]["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "ray-rgs-secrets"
    drain = 0.0
    for app in serve["applications"]:
        for deployment in app["deployments"]:
            for key in ("max_ongoing_requests", "max_queued_requests", "autoscaling_config",
                        "graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s"):
                assert key in deployment, (app["name"], key)
            drain = max(drain, deployment["graceful_shutdown_timeout_s"])
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > drain
        [container] = pod["containers"]
        assert container["image"] == "ray-rgs:0.1.0"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"]["value"] == "1"
        assert env["RAY_SERVE_ENABLE_HA_PROXY"]["value"] == "1"
        for name in ("DATABASE_URL", "REDIS_URL", "RGS_CHAIN_RPC_URL", "RGS_CHAIN_PRIVATE_KEY", "RGS_SEED_KEY"):
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "ray-rgs-secrets", name
        assert {"RGS_SHARDS", "RGS_PARTITIONS"} <= set(env)


# --------------------------------------------------------------------------- broken copies


def test_unknown_container_field_is_named_with_its_line(catalog: CrdCatalog) -> None:
    old = "                resources:\n                  requests:\n                    cpu: \"4\""
    text = edit(old, old.replace("resources:", "resoures:"))
    report = validate_manifest(text, catalog)
    problem = by_path(report)[f"{WORKER_CONTAINER}.resoures"]
    assert problem.message == "unknown field (did you mean resources?)"
    assert problem.check == "schema"
    assert problem.line == line_of(text, "resoures:")
    assert len(report.problems) == 1


def test_wrong_type_is_named(catalog: CrdCatalog) -> None:
    text = edit("        replicas: 2\n", "        replicas: two\n")
    report = validate_manifest(text, catalog)
    assert [(p.where, p.message) for p in report.problems] == [
        (f"{WORKER}.replicas", 'expected an integer, got string "two"')
    ]


def test_rayStartParams_values_must_be_strings(catalog: CrdCatalog) -> None:
    text = edit('num-cpus: "0"', "num-cpus: 0")
    report = validate_manifest(text, catalog)
    assert [(p.where, p.message) for p in report.problems] == [
        ("spec.rayClusterConfig.headGroupSpec.rayStartParams.num-cpus", "expected a string, got integer 0")
    ]


def test_misspelled_serve_key_is_caught_with_a_suggestion(catalog: CrdCatalog) -> None:
    text = edit("max_ongoing_requests: 256", "max_ongoing_request: 256")
    report = validate_manifest(text, catalog)
    [problem] = report.problems
    assert problem.where == f"{WALLET}.max_ongoing_request"
    assert problem.message == "unknown key (did you mean max_ongoing_requests?)"
    assert problem.check == "serve"
    assert problem.line == line_of(text, "max_ongoing_request: 256")  # the line in the manifest


def test_unknown_top_level_serve_key(catalog: CrdCatalog) -> None:
    text = edit("    proxy_location: EveryNode\n", "    proxy_location: EveryNode\n    proxy_locaton: HeadOnly\n")
    report = validate_manifest(text, catalog)
    assert [(p.where, p.message) for p in report.problems] == [
        ("spec.serveConfigV2.proxy_locaton", "unknown key (did you mean proxy_location?)")
    ]


def test_unknown_nested_serve_keys(catalog: CrdCatalog) -> None:
    text = edit("              target_ongoing_requests: 64", "              target_ongoing_request: 64")
    text = edit("      enable_access_log: false", "      enable_acces_log: false", text)
    text = edit("              num_cpus: 1\n", "              num_cpu: 1\n", text)
    paths = {p.where: p.message for p in validate_manifest(text, catalog).problems}
    assert paths == {
        f"{WALLET}.autoscaling_config.target_ongoing_request": "unknown key (did you mean target_ongoing_requests?)",
        "spec.serveConfigV2.logging_config.enable_acces_log": "unknown key (did you mean enable_access_log?)",
        f"{WALLET}.ray_actor_options.num_cpu": "unknown key (did you mean num_cpus?)",
    }


def test_free_form_serve_fields_are_not_walked() -> None:
    config = {
        "applications": [
            {
                "import_path": "serve.apps:wallet_app",
                "args": {"anything": 1},
                "runtime_env": {"env_vars": {"X": "1"}},
                "deployments": [{"name": "WalletGateway", "user_config": {"whatever_we_like": True}}],
            }
        ]
    }
    assert unknown_serve_keys(config) == []


def test_missing_required_fields(catalog: CrdCatalog) -> None:
    text = edit("      - groupName: workers\n        replicas: 2\n", "      - replicas: 2\n")
    text = edit("        maxReplicas: 10\n", "", text)
    text = edit("        import_path: serve.apps:operator_app\n", "", text)
    report = validate_manifest(text, catalog)
    assert [(p.where, p.message) for p in report.problems] == [  # each once
        (f"{WORKER}.groupName", "required field is missing"),
        (f"{WORKER}.maxReplicas", "required field is missing"),
        ("spec.serveConfigV2.applications[1].import_path", "required key is missing"),
    ]


def test_serve_values_are_checked_by_serves_schema(catalog: CrdCatalog) -> None:
    text = edit("    proxy_location: EveryNode\n", "    proxy_location: Everywhere\n")
    text = edit("              max_replicas: 16\n", "              max_replicas: 1\n", text)
    problems = {p.where: p.message for p in validate_manifest(text, catalog).problems}
    assert "EveryNode" in problems["spec.serveConfigV2.proxy_location"]
    assert problems[f"{WALLET}.autoscaling_config"] == (
        "max_replicas (1) must be greater than or equal to min_replicas (2)!"
    )


def test_serve_config_that_is_not_yaml_points_at_its_line(catalog: CrdCatalog) -> None:
    text = edit("    proxy_location: EveryNode\n", "    proxy_location: [EveryNode\n")
    [problem] = validate_manifest(text, catalog).problems
    assert problem.where == "spec.serveConfigV2"
    assert problem.message.startswith("is not valid YAML: ")
    assert problem.line is not None and problem.line >= line_of(text, "proxy_location: [")


def test_duplicate_keys_are_reported(catalog: CrdCatalog) -> None:
    text = edit("  name: ray-rgs\n", "  name: ray-rgs\n  name: ray-rgs-2\n")
    [problem] = validate_manifest(text, catalog).problems
    assert problem.where == "metadata.name"
    assert problem.check == "yaml"
    assert problem.line == line_of(text, "name: ray-rgs-2")


def test_wrong_api_version(catalog: CrdCatalog) -> None:
    text = edit("apiVersion: ray.io/v1\n", "apiVersion: ray.io/v2\n")
    [problem] = validate_manifest(text, catalog).problems
    assert problem.where == "apiVersion"
    assert "expected ray.io/v1" in problem.message


def test_grace_period_must_outlast_serves_drain(catalog: CrdCatalog) -> None:
    text = edit("            terminationGracePeriodSeconds: 60\n", "            terminationGracePeriodSeconds: 20\n")
    [problem] = validate_manifest(text, catalog).problems
    assert problem.where == f"{WORKER}.template.spec.terminationGracePeriodSeconds"
    assert problem.check == "policy"
    assert "graceful_shutdown_timeout_s 20 s" in problem.message


def test_metadata_is_checked_as_object_meta(catalog: CrdCatalog) -> None:
    text = edit('    app.kubernetes.io/version: "0.1.0"\n', "    app.kubernetes.io/version: 0.1\n")
    text = edit("metadata:\n  name: ray-rgs\n", "metadata:\n  nam: ray-rgs\n", text)
    problems = {p.where: p.message for p in validate_manifest(text, catalog).problems}
    assert problems == {
        'metadata.labels["app.kubernetes.io/version"]': "expected a string, got number 0.1",
        "metadata.nam": "unknown field (did you mean name?)",
        "metadata.name": "required field is missing",
    }


def test_problems_are_sorted_by_path(catalog: CrdCatalog) -> None:
    text = edit("max_ongoing_requests: 256", "max_ongoing_request: 256")
    text = edit("        replicas: 2\n", "        replicas: two\n", text)
    text = edit("  rayClusterDeletionDelaySeconds: 60\n", "  rayClusterDeletionDelaySeconds: soon\n", text)
    wheres = [p.where for p in validate_manifest(text, catalog).problems]
    assert wheres == [
        f"{WORKER}.replicas",
        "spec.rayClusterDeletionDelaySeconds",
        f"{WALLET}.max_ongoing_request",
    ]


def test_no_crd_for_the_kind_is_a_setup_error(catalog: CrdCatalog) -> None:
    with pytest.raises(SetupError, match="no CRD for kind RayJob in"):
        validate_manifest(edit("kind: RayService", "kind: RayJob"), catalog)


# --------------------------------------------------------------------------- conversion


def test_conversion_closes_objects_and_maps_kubernetes_extensions() -> None:
    schema = crd_to_json_schema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "when": {"type": "string", "nullable": True},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "pod": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object"}}},
                    },
                }
            },
        }
    )
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata"}
    spec = schema["properties"]["spec"]
    assert spec["additionalProperties"] is False and spec["required"] == ["size"]
    assert spec["properties"]["size"]["type"] == ["integer", "string"]
    assert spec["properties"]["when"]["type"] == ["string", "null"]
    assert "additionalProperties" not in spec["properties"]["free"]
    assert spec["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    pod = spec["properties"]["pod"]
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(pod["properties"])
    assert pod["additionalProperties"] is False


# --------------------------------------------------------------------------- the command


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["cluster", "validate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@needs_crds
def test_cli_valid_manifest_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(MANIFEST), "--crds", str(CRDS))
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    assert line.startswith(f"{MANIFEST}: OK: RayService ray-rgs (ray.io/v1) against CRD rayservices.ray.io")
    assert "2 applications (wallet /wallet, operator /api)" in line


@needs_crds
def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(MANIFEST), "--crds", str(CRDS), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["problems"] == []
    assert doc["documents"][0]["crd"] == "rayservices.ray.io"


@needs_crds
def test_cli_broken_manifest_exit_1_lists_every_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = edit("max_ongoing_requests: 256", "max_ongoing_request: 256")
    text = edit("                resources:\n", "                resoures:\n", text)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, str(broken), "--crds", str(CRDS))
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == (
        f"{broken}:{line_of(text, 'resoures:')}: {WORKER_CONTAINER}.resoures: unknown field (did you mean resources?)"
    )
    assert lines[1] == (
        f"{broken}:{line_of(text, 'max_ongoing_request:')}: {WALLET}.max_ongoing_request: "
        "unknown key (did you mean max_ongoing_requests?)"
    )
    assert lines[2].startswith(f"{broken}: 2 problems (")

    code, out, _ = run(capsys, str(broken), "--crds", str(CRDS), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert [(p["path"], p["check"]) for p in doc["problems"]] == [
        (f"{WORKER_CONTAINER}.resoures", "schema"),
        (f"{WALLET}.max_ongoing_request", "serve"),
    ]


@needs_crds
@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", r"^rgs cluster validate: cannot read .*nope\.yaml: no such file$"),
        ("bad_yaml", r"^rgs cluster validate: .*bad\.yaml is not valid YAML: .*\(line 4, column 7\), while parsing a flow sequence from line 3$"),
        ("no_crd", r"^rgs cluster validate: no CRD for kind Secret in .*kuberay-crds \(it has: RayCluster, RayService\)$"),
        ("empty", r"^rgs cluster validate: .*empty\.yaml holds no Kubernetes object$"),
        ("no_crd_dir", r"^rgs cluster validate: CRD folder .*absent does not exist$"),
    ],
)
def test_cli_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, setup: str, expected: str
) -> None:
    crds = str(CRDS)
    files = {
        "bad_yaml": ("bad.yaml", "apiVersion: ray.io/v1\nkind: RayService\nmetadata: [oops\n  name: x\n"),
        "no_crd": ("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ray-rgs-secrets\n"),
        "empty": ("empty.yaml", "# nothing here\n"),
    }
    target = tmp_path / "nope.yaml"
    if setup in files:
        name, content = files[setup]
        target = tmp_path / name
        target.write_text(content, encoding="utf-8")
    if setup == "no_crd_dir":
        target, crds = MANIFEST, str(tmp_path / "absent")
    code, out, err = run(capsys, str(target), "--crds", crds)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert re.match(expected, err.strip()), err


def test_cli_requires_crds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(MANIFEST))
    assert (code, out) == (2, "")
    assert err.strip() == (
        "rgs cluster validate: the following arguments are required: --crds (see 'rgs cluster validate --help')"
    )


# --------------------------------------------------------------------------- cluster/ artefacts


def test_image_ships_every_package() -> None:
    """The Dockerfile and its ignore file keep up with pyproject's packages."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text(encoding="utf-8")
    ignore = (ROOT / "cluster" / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for package in packages:
        assert f"COPY --chown=ray:users {package} ./{package}\n" in dockerfile, package
        assert f"!{package}/" in ignore, package
    assert "FROM ${RAY_IMAGE}" in dockerfile and "rayproject/ray:2.60.0-py311" in dockerfile


def test_dashboard_covers_the_metrics_sres_watch() -> None:
    dashboard = json.loads((ROOT / "cluster" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert 'ray_io_cluster=~"$cluster"' in expr, panel["title"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            exprs.append(expr)
    text = "\n".join(exprs)
    for metric in (
        "ray_rgs_wallet_requests_total", "ray_rgs_wallet_request_seconds_bucket",
        "ray_rgs_journal_batch_commands", "ray_rgs_journal_commit_seconds_bucket",
        "ray_rgs_shard_active_accounts", "ray_rgs_shard_mailbox_depth", "ray_rgs_rounds_total",
        "ray_rgs_settlement_seconds_bucket", "ray_rgs_chain_tx_seconds_bucket", "ray_rgs_rate_limited_total",
        "ray_serve_num_http_requests_total", "ray_serve_http_request_latency_ms_bucket",
    ):
        assert metric in text, metric
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace", "cluster"}


def test_scrape_configs_select_the_manifest_pods() -> None:
    import yaml

    monitors = list(yaml.safe_load_all((ROOT / "cluster" / "podmonitor.yaml").read_text(encoding="utf-8")))
    assert [m["kind"] for m in monitors] == ["PodMonitor", "PodMonitor"]
    manifest = yaml.safe_load(TEXT)["spec"]["rayClusterConfig"]
    templates = [manifest["headGroupSpec"]["template"], *(g["template"] for g in manifest["workerGroupSpecs"])]
    ports = [{p["name"] for p in t["spec"]["containers"][0]["ports"]} for t in templates]
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [i for i, t in enumerate(templates) if selector.items() <= t["metadata"]["labels"].items()]
        assert matched, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert all(endpoint["port"] in ports[i] for i in matched), endpoint["port"]
    scrape = yaml.safe_load((ROOT / "cluster" / "prometheus-scrape.yaml").read_text(encoding="utf-8"))
    assert scrape["scrape_configs"][0]["job_name"] == "ray-rgs"
