#!/usr/bin/env python3
"""`helm lint --strict` and `helm template` through helm-python-sdk (Helm 4 as a library).

Used by scripts/k8s-validate.sh, run with the Python of its .venv-helm venv
(helm-python-sdk, module helm_python: ctypes over libhelm_c, a C ABI over
Helm v4's Go SDK, bundled in the wheel; Python >= 3.10; no cluster, no network):

    helm-sdk.py lint CHART
        Lints CHART with its default values (values.schema.json included) for
        Kubernetes v1.33.0. Exits 1 on any WARNING or ERROR message, as
        `helm lint --strict` does; prints every message.
    helm-sdk.py template CHART OUT [--namespace NS] [--release NAME] [--set-json KEY=JSON]...
        Writes what `helm template` prints to OUT: the CRDs of crds/ first,
        then the rendered templates as Helm orders them (by kind, Helm's
        install order; within a kind by template path, then position in the
        file), each document after `---` and a `# Source:` comment; empty
        documents, partials and NOTES.txt left out. The rendered NOTES.txt
        goes to OUT.notes.txt. KEY=JSON sets a nested value the way
        `helm --set-json` does (a.b.c=JSON), parsed by Helm's own strvals.

Rendering is offline (the `lookup` function returns nothing); values are
checked against values.schema.json and `fail` aborts, as in `helm template`.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys

import helm_python

KUBE_VERSION = "v1.33.0"

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

# Helm v4's pkg/release/v1/util/kind_sorter.go InstallOrder; unknown kinds go
# last, alphabetically; the sort is stable.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
_ORDER = {kind: i for i, kind in enumerate(INSTALL_ORDER)}

# Helm's releaseutil.SplitManifests separator.
_SEP = re.compile(r"(?:^|\s*\n)---\s*")
_KIND = re.compile(r"^kind:\s*['\"]?([A-Za-z0-9]+)", re.MULTILINE)
_HOOK = re.compile(r"^\s+['\"]?helm\.sh/hook['\"]?\s*:", re.MULTILINE)


def lint(chart: str) -> int:
    try:
        report = helm_python.lint(chart, None, strict=True, kube_version=KUBE_VERSION)
    except helm_python.HelmError as e:
        print(f"    [ERROR] {chart}: {e}")
        print(f"helm lint --strict {chart}: could not lint -> FAILED")
        return 1
    messages = report.get("messages") or []
    errors = [str(e).strip() for e in report.get("errors") or []]
    failed = 0
    for message in messages:
        severity = message.get("severity", 0)
        text = str(message.get("error") or "").strip()
        print(f"    [{SEVERITY.get(severity, severity)}] {message.get('path')}: {text}")
        if severity >= 2:
            failed += 1
        if text in errors:
            errors.remove(text)
    # strict: every WARNING/ERROR is also in errors; anything else there is a failure too.
    for error in errors:
        print(f"    [ERROR] {error}")
        failed += 1
    charts = report.get("total_charts_linted", 0)
    if charts < 1:
        print("    [ERROR] no chart linted")
        failed += 1
    print(f"helm lint --strict {chart} (Kubernetes {KUBE_VERSION}): {charts} chart(s) linted,"
          f" {failed} warning(s)/error(s) -> {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


def _kind(doc: str) -> str:
    match = _KIND.search(doc)
    return match.group(1) if match else ""


def _sort_key(item: tuple[int, str, str]) -> tuple:
    index, _, doc = item
    kind = _kind(doc)
    if kind in _ORDER:
        return (0, _ORDER[kind], "", index)
    return (1, 0, kind, index)


def render(chart: str, namespace: str, release: str, values: dict) -> tuple[str, str]:
    """(what `helm template` prints, the rendered NOTES.txt)."""
    with helm_python.Chart.load(chart) as ch:
        name = ch.name
        files = ch.render(values, name=release, namespace=namespace, is_install=True)
        crds = ch.crds
    notes = ""
    docs: list[tuple[int, str, str]] = []
    for path in sorted(files):
        content = files[path]
        if path.endswith("NOTES.txt"):
            if path == f"{name}/templates/NOTES.txt":
                notes = content
            continue
        if posixpath.basename(path).startswith("_") or not content.strip():
            continue
        for doc in _SEP.split(content.strip()):
            doc = doc.strip()
            if doc:
                if _HOOK.search(doc):
                    raise SystemExit(f"helm template: {path} has a Helm hook; this script does not render hooks")
                docs.append((len(docs), path, doc))
    out = [f"---\n# Source: {crd['filename']}\n{crd['data'].strip()}\n" for crd in crds]
    # Helm 4 keeps each template document's final newline: a blank line follows it.
    out += [f"---\n# Source: {path}\n{doc}\n\n" for _, path, doc in sorted(docs, key=_sort_key)]
    return "".join(out), notes


def template(chart: str, out: str, namespace: str, release: str, sets: list[str]) -> int:
    try:
        # One expression, comma-joined: what helm does with repeated --set-json.
        values = helm_python.parse_set_json(",".join(sets)) if sets else {}
        manifest, notes = render(chart, namespace, release, values)
    except helm_python.HelmError as e:
        print(f"helm template {chart} failed: {e}", file=sys.stderr)
        return 1
    if not manifest:
        print(f"helm template {chart}: nothing rendered", file=sys.stderr)
        return 1
    with open(out, "w") as f:
        f.write(manifest)
    with open(out + ".notes.txt", "w") as f:
        f.write(notes)
    return 0


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
