#!/usr/bin/env python3
"""Validates custom resources against the openAPIV3Schema of their CRD.

    validate-cr.py CRD.yaml FILE...

kubernetes-validate knows only built-in kinds; this checks what the API
server would for a PyroscopeCluster: types, enums, required fields, bounds
(jsonschema), and, like `kubectl apply --validate=strict`, fields the schema
does not declare (the API server would silently prune them). CEL rules
(x-kubernetes-validations) are not evaluated. Documents of other kinds are
ignored. Prints one line per resource; exits 1 if any is invalid.
Run with the Python of .venv-k8s (jsonschema and PyYAML come with
kubernetes-validate).
"""

from __future__ import annotations

import sys

import jsonschema
import yaml


def unknown_fields(value, schema: dict, path: str) -> list[str]:
    """Paths in value that a structural schema does not declare."""
    found: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                found += unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None and extra is not True:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        crd = yaml.safe_load(f)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {f"{group}/{v['name']}": v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    failed = 0
    for filename in argv[1:]:
        with open(filename) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("kind") != kind:
                continue
            name = f"{filename}: {kind.lower()}/{doc.get('metadata', {}).get('name')}"
            schema = schemas.get(doc.get("apiVersion"))
            if schema is None:
                print(f"ERROR {name}: apiVersion {doc.get('apiVersion')} is not served by the CRD")
                failed += 1
                continue
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
            errors = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                      for e in jsonschema.Draft7Validator(schema).iter_errors(body)]
            errors += [f"{p[1:]}: field not declared by the CRD (the API server would prune it)"
                       for p in unknown_fields(body, schema, "")]
            if errors:
                failed += 1
                for error in errors:
                    print(f"ERROR {name}: {error}")
            else:
                print(f"INFO {name} matches the CRD schema of {doc['apiVersion']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
