#!/usr/bin/env python3
"""`helm lint --strict` and `helm template` through helm-sdkpy (Helm 4 as a library).

Used by scripts/k8s-validate.sh, run with the Python of its .venv-helm venv:

    helm-sdk.py lint CHART
        Lints CHART with its default values (values.schema.json included).
        Exits 1 on any WARNING or ERROR message, as `helm lint --strict` does.
    helm-sdk.py template CHART OUT [--namespace NS] [--release NAME] [--set-json JSON]...
        Writes the rendered manifests (CRDs from crds/ first, then templates)
        to OUT and the rendered NOTES.txt to OUT.notes.txt.

helm-sdkpy has no `template` action, so `template` runs a real `helm install`
(wait off, client-side apply, release storage in memory: HELM_DRIVER=memory)
against a fake Kubernetes 1.33 API server on 127.0.0.1 inside this process.
The fake server answers discovery, says every object is absent and accepts
every create; nothing leaves the machine. The manifest is the one Helm records
in the release, so the output is what `helm template` prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ["HELM_DRIVER"] = "memory"

import helm_sdkpy  # noqa: E402  (HELM_DRIVER must be set before the library loads)

KUBE_MINOR = "33"

# group/version -> [(plural, kind, namespaced)]: what the fake server serves.
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("pods", "Pod", True),
        ("events", "Event", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
    ],
    "apps/v1": [
        ("deployments", "Deployment", True),
        ("statefulsets", "StatefulSet", True),
        ("daemonsets", "DaemonSet", True),
    ],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    "coordination.k8s.io/v1": [("leases", "Lease", True)],
    "events.k8s.io/v1": [("events", "Event", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True), ("podmonitors", "PodMonitor", True)],
    "phlox.dev/v1alpha1": [("pyroscopeclusters", "PyroscopeCluster", True)],
}

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource_list(group_version: str) -> dict:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": VERBS}
            for plural, kind, namespaced in RESOURCES[group_version]
        ],
    }


def _group_list() -> dict:
    groups: dict[str, list[str]] = {}
    for gv in RESOURCES:
        if "/" in gv:
            group, version = gv.split("/")
            groups.setdefault(group, []).append(version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
            }
            for group, versions in groups.items()
        ],
    }


class FakeApiServer(BaseHTTPRequestHandler):
    """Discovery, 404 for every GET of an object, echo for every write."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": "not found", "reason": "NotFound", "code": 404})

    def _group_version(self, parts: list[str]) -> tuple[str, list[str]] | None:
        if parts[:1] == ["api"] and len(parts) >= 2:
            return parts[1], parts[2:]
        if parts[:1] == ["apis"] and len(parts) >= 3:
            return f"{parts[1]}/{parts[2]}", parts[3:]
        return None

    def _target(self) -> tuple[str, str, str]:
        """(group/version, plural, name or "") of the request path."""
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        gv = self._group_version(parts)
        if gv is None:
            return "", "", ""
        group_version, rest = gv
        if len(rest) >= 3 and rest[0] == "namespaces":
            rest = rest[2:]
        return group_version, rest[0] if rest else "", rest[1] if len(rest) > 1 else ""

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return self._send(200, {"major": "1", "minor": KUBE_MINOR, "gitVersion": f"v1.{KUBE_MINOR}.0",
                                    "gitCommit": "fake", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                                    "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"})
        if parts == ["api"]:
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                    "serverAddress": "127.0.0.1"}]})
        if parts == ["apis"]:
            return self._send(200, _group_list())
        gv = self._group_version(parts)
        if gv is None:
            return self._not_found()
        group_version, rest = gv
        if group_version not in RESOURCES:
            return self._not_found()
        if not rest:
            return self._send(200, _resource_list(group_version))
        # A collection (list) or an object: collections are empty, objects absent.
        if rest[0] == "namespaces" and len(rest) >= 3:
            rest = rest[2:]
        if len(rest) == 1:
            kind = next((k for p, k, _ in RESOURCES[group_version] if p == rest[0]), "Object")
            return self._send(200, {"kind": f"{kind}List", "apiVersion": group_version,
                                    "metadata": {"resourceVersion": "1"}, "items": []})
        return self._not_found()

    def _echo(self, code: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            obj = json.loads(raw or b"{}")
        except ValueError:
            # client-go sends core types (Helm's release Secrets) as protobuf:
            # answer with a stub of the kind; Helm does not read it back.
            group_version, plural, name = self._target()
            kind = next((k for p, k, _ in RESOURCES.get(group_version, []) if p == plural), "Secret")
            obj = {"kind": kind, "apiVersion": group_version or "v1", "metadata": {"name": name or "stub"}}
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", "00000000-0000-0000-0000-000000000001")
        meta.setdefault("resourceVersion", "1")
        meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        if obj.get("kind") == "CustomResourceDefinition":
            obj["status"] = {"conditions": [{"type": "Established", "status": "True"},
                                            {"type": "NamesAccepted", "status": "True"}],
                             "acceptedNames": obj.get("spec", {}).get("names", {})}
        self._send(code, obj)

    def do_POST(self) -> None:  # noqa: N802
        self._echo(201)

    def do_PUT(self) -> None:  # noqa: N802
        self._echo(200)

    def do_PATCH(self) -> None:  # noqa: N802
        self._echo(200)

    def do_DELETE(self) -> None:  # noqa: N802
        self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})


def _kubeconfig(port: int) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:{port}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
users:
- name: fake
  user:
    token: fake
"""


def _configuration(namespace: str, port: int | None = None) -> helm_sdkpy.Configuration:
    if port is None:
        return helm_sdkpy.Configuration(namespace=namespace)
    return helm_sdkpy.Configuration(namespace=namespace, kubeconfig=_kubeconfig(port), kubecontext="fake")


SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
# Texts of messages helm lint gives for a path whatever the chart (helm's pkg/lint/rules).
KNOWN_TEXT = {(1, "Chart.yaml"): "icon is recommended"}


def lint(chart: str) -> int:
    result = asyncio.run(helm_sdkpy.Lint(_configuration("default")).run(chart))
    messages = result.get("Messages") or []
    failed = 0
    for message in messages:
        severity = message.get("Severity", 0)
        err = message.get("Err")
        # helm-sdkpy serialises Go errors as {}: the path survives, the text does not.
        text = err if isinstance(err, str) and err else KNOWN_TEXT.get((severity, message.get("Path")), "")
        print(f"    [{SEVERITY.get(severity, severity)}] {message.get('Path')}: {text or '(no text from helm-sdkpy)'}")
        if severity >= 2:
            failed += 1
    if not messages and result.get("Errors"):
        print(f"    [ERROR] {result['Errors']}")
        failed += 1
    charts = result.get("TotalChartsLinted", 0)
    if charts < 1:
        print("    [ERROR] no chart linted")
        failed += 1
    if failed:
        # Rendering gives the text lint lost (a schema or template error).
        with tempfile.TemporaryDirectory() as tmp:
            if template(chart, os.path.join(tmp, "out.yaml"), "default", "lint", []) == 0:
                print("    (rendering with the default values succeeded: see the paths above)")
    print(f"helm lint --strict {chart}: {charts} chart(s) linted, {failed} warning(s)/error(s)"
          f" -> {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


def _set(values: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def template(chart: str, out: str, namespace: str, release: str, sets: list[str]) -> int:
    values: dict = {}
    for item in sets:
        key, _, raw = item.partition("=")
        _set(values, key, json.loads(raw))
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = _configuration(namespace, server.server_address[1])
        result = asyncio.run(helm_sdkpy.Install(config).run(
            release, chart, values=values or None, wait=False, timeout=60, disable_openapi_validation=True))
    except helm_sdkpy.HelmError as e:
        print(f"helm template {chart} failed: {e}", file=sys.stderr)
        return 1
    finally:
        server.shutdown()
    release_info = result if isinstance(result, dict) else {}
    manifest = release_info.get("manifest")
    if manifest is None:
        print(f"helm template: no manifest in the install result (keys: {sorted(release_info)})", file=sys.stderr)
        return 1
    crds = _crds(chart)
    with open(out, "w") as f:
        for name, text in crds:
            f.write(f"---\n# Source: {os.path.basename(chart.rstrip('/'))}/crds/{name}\n{text.strip()}\n")
        f.write(manifest if manifest.startswith("---") else "---\n" + manifest)
        if not manifest.endswith("\n"):
            f.write("\n")
    with open(out + ".notes.txt", "w") as f:
        f.write((release_info.get("info") or {}).get("notes") or "")
    return 0


def _crds(chart: str) -> list[tuple[str, str]]:
    directory = os.path.join(chart, "crds")
    if not os.path.isdir(directory):
        return []
    return [(name, open(os.path.join(directory, name)).read())
            for name in sorted(os.listdir(directory)) if name.endswith((".yaml", ".yml", ".json"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_lint = sub.add_parser("lint")
    p_lint.add_argument("chart")
    p_tpl = sub.add_parser("template")
    p_tpl.add_argument("chart")
    p_tpl.add_argument("out")
    p_tpl.add_argument("--namespace", default="default")
    p_tpl.add_argument("--release", default="release-name")
    p_tpl.add_argument("--set-json", action="append", default=[], metavar="KEY=JSON",
                       help="a value, e.g. watchNamespace='\"team-a\"' or metrics.serviceMonitor.enabled=true")
    args = parser.parse_args()
    if args.command == "lint":
        return lint(args.chart)
    return template(args.chart, args.out, args.namespace, args.release, args.set_json)


if __name__ == "__main__":
    sys.exit(main())
