#!/usr/bin/env bash
# Validates every Kubernetes manifest of the repository against the API
# schemas of Kubernetes $KUBE_VERSION (default 1.33), offline:
#   1. the objects the operator creates for each config/samples/*pyroscopecluster*.yaml
#      (`$PHLOX_OPERATOR render -f FILE`, default target/debug/phlox-operator),
#      written to target/k8s/<sample>.yaml; the samples themselves against the CRD;
#   2. the static manifests: config/ (kustomize builds of default and crd,
#      argocd, the other samples) and the Argo CD health check's Lua tests;
#   3. the Helm chart charts/phlox-operator: `helm lint --strict` and
#      `helm template` (default values; watchNamespace=team-a with the
#      ServiceMonitor on; most other options) through helm-sdkpy
#      (scripts/helm-sdk.py), which needs Python >= 3.12: a failure naming
#      it when there is none (never a silent skip); then config/rbac and config/manager are
#      compared with the chart's default rendering (same rules, same pod).
# Checks use kubernetes-validate --strict (unknown fields are errors). Kinds
# it has no schema for (ServiceMonitor, Argo CD Application) are reported as
# skipped by the tool itself and do not fail. Prints one line per file; exits
# 1 if anything failed. Tools go to the venvs .venv-k8s (python3) and
# .venv-helm (Python >= 3.12), pinned, reinstalled only when a pin changes.
# Run from anywhere: `make k8s-validate` or scripts/k8s-validate.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=${KUBE_VERSION:-1.33.0}
KUBERNETES_VALIDATE_VERSION=1.37.0
LUPA_VERSION=2.8
HELM_SDKPY_VERSION=0.1.32
PHLOX_OPERATOR=${PHLOX_OPERATOR:-target/debug/phlox-operator}
K8S_VENV=${K8S_VENV:-.venv-k8s}
HELM_VENV=${HELM_VENV:-.venv-helm}
CHART=charts/phlox-operator
CRD=crds/phlox.dev_pyroscopeclusters.yaml
OUT=target/k8s

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
indent() { sed 's/^/    /'; }

# ensure_venv DIR PYTHON PACKAGE==VERSION...: (re)creates DIR when its python
# is gone or the pins changed; else does nothing (fast path).
ensure_venv() {
  local dir=$1 python=$2
  shift 2
  local want="$python $*"
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c '' 2>/dev/null &&
    [ "$(cat "$dir/.versions" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "setting up $dir ($*)"
  rm -rf "$dir"
  if ! "$python" -m venv "$dir" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$dir"
  fi
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$want" >"$dir/.versions"
}

# validate FILE: kubernetes-validate --strict, one summary line.
validate() {
  local file=$1 out rc=0 valid skipped kinds
  out=$("$K8S_VENV/bin/kubernetes-validate" -k "$KUBE_VERSION" --strict "$file" 2>&1) || rc=$?
  valid=$(grep -c '^INFO ' <<<"$out" || true)
  skipped=$(grep -c '^WARN ' <<<"$out" || true)
  kinds=$(grep '^WARN ' <<<"$out" | sed -n 's/.*for kind \([^ ]*\) with api version \([^ ]*\) .*/\1 (\2)/p' | sort -u |
    paste -sd, - | sed 's/,/, /g' || true)
  if [ "$rc" -ne 0 ]; then
    grep -v '^INFO ' <<<"$out" | indent
    fail "$file: invalid against Kubernetes $KUBE_VERSION (strict)"
  elif [ $((valid + skipped)) -eq 0 ]; then
    fail "$file: no Kubernetes object in it"
  else
    echo "ok   $file: $valid object(s) valid against Kubernetes $KUBE_VERSION (strict)${kinds:+; $skipped skipped, no schema in kubernetes-validate: $kinds}"
  fi
}

# validate_cr FILE...: PyroscopeClusters against the CRD's schema.
validate_cr() {
  local file out rc
  for file in "$@"; do
    rc=0
    out=$("$K8S_VENV/bin/python" scripts/validate-cr.py "$CRD" "$file" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
      indent <<<"$out"
      fail "$file: does not match the PyroscopeCluster CRD ($CRD)"
    else
      echo "ok   $file: $(grep -c '^INFO ' <<<"$out" || true) PyroscopeCluster(s) match the CRD schema"
    fi
  done
}

# Everything in $OUT is this run's: no stale rendering can pass for a new one.
rm -rf "$OUT" && mkdir -p "$OUT"
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi
ensure_venv "$K8S_VENV" python3 "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "lupa==$LUPA_VERSION"

echo "== PyroscopeCluster samples: the objects the operator creates ($PHLOX_OPERATOR render)"
shopt -s nullglob
samples=(config/samples/*pyroscopecluster*.yaml)
others=()
for f in config/samples/*.yaml; do
  case $f in *pyroscopecluster*) ;; *) others+=("$f") ;; esac
done
shopt -u nullglob
[ ${#samples[@]} -gt 0 ] || fail "no config/samples/*pyroscopecluster*.yaml"
validate_cr "${samples[@]}"
if ! command -v "$PHLOX_OPERATOR" >/dev/null 2>&1; then
  fail "$PHLOX_OPERATOR not found: build it (cargo build -p phlox-operator) or set PHLOX_OPERATOR"
elif ! err=$("$PHLOX_OPERATOR" render --help 2>&1 >/dev/null); then
  indent <<<"$err"
  fail "$PHLOX_OPERATOR render --help failed: this build has no 'render' subcommand (render -f FILE prints the objects the operator creates for a PyroscopeCluster); rebuild it"
else
  for sample in "${samples[@]}"; do
    rendered="$OUT/$(basename "$sample")"
    if "$PHLOX_OPERATOR" render -f "$sample" >"$rendered" 2>"$rendered.err"; then
      rm -f "$rendered.err"
      validate "$rendered"
    else
      indent <"$rendered.err"
      fail "$PHLOX_OPERATOR render -f $sample failed"
    fi
  done
fi

echo "== Static manifests (config/)"
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize config/default >"$OUT/config-default.yaml"; then
    validate "$OUT/config-default.yaml"
  else
    fail "kubectl kustomize config/default"
  fi
  if kubectl kustomize --load-restrictor=LoadRestrictionsNone config/crd >"$OUT/config-crd.yaml"; then
    validate "$OUT/config-crd.yaml"
  else
    fail "kubectl kustomize --load-restrictor=LoadRestrictionsNone config/crd"
  fi
else
  fail "kubectl not found: the kustomize builds of config/ cannot be checked (install kubectl, e.g. Debian's kubernetes-client, or put it on PATH)"
fi
for f in config/argocd/*.yaml "${others[@]}"; do
  validate "$f"
done
rc=0
out=$("$K8S_VENV/bin/python" config/argocd/health_test.py 2>&1) || rc=$?
if [ "$rc" -eq 0 ]; then
  echo "ok   config/argocd/health-pyroscopecluster.lua: $(grep -o 'Ran [0-9]* tests' <<<"$out" | sed 's/Ran //') of health_test.py pass (Lua 5.1, lupa $LUPA_VERSION)"
else
  indent <<<"$out"
  fail "config/argocd/health_test.py"
fi

echo "== Helm chart ($CHART)"
helm_python=""
for candidate in python3.13 python3.12 \
  /root/.pyenv/versions/3.1[2-9]*/bin/python3 \
  "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.1[2-9]*/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    helm_python=$("$candidate" -c 'import sys; print(sys.executable)')
    break
  fi
done
if [ -z "$helm_python" ]; then
  fail "$CHART: helm lint and helm template need a Python >= 3.12 for helm-sdkpy $HELM_SDKPY_VERSION (python3.12 on PATH, or pyenv's versions/3.12+); none found, so the chart is not checked"
else
  ensure_venv "$HELM_VENV" "$helm_python" "helm-sdkpy==$HELM_SDKPY_VERSION"
  rc=0
  out=$("$HELM_VENV/bin/python" scripts/helm-sdk.py lint "$CHART" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    grep '^ *\[' <<<"$out" || true
    echo "ok   $CHART: helm lint --strict (helm-sdkpy $HELM_SDKPY_VERSION, $("$HELM_VENV/bin/python" -V))"
  else
    echo "$out"
    fail "$CHART: helm lint --strict"
  fi
  # NAME|KEY=JSON ... (space-separated, no spaces inside a value)
  helm_cases=(
    "default|"
    "team-a|watchNamespace=\"team-a\" metrics.serviceMonitor.enabled=true replicaCount=2"
    "options|leaderElection.enabled=false serviceAccount.create=false serviceAccount.name=\"ops-sa\"
      image.tag=\"0.2.0\" fullnameOverride=\"phlox-op\" logLevel=\"debug\" metrics.port=9090
      imagePullSecrets=[{\"name\":\"regcred\"}] nodeSelector={\"kubernetes.io/os\":\"linux\"}
      tolerations=[{\"key\":\"dedicated\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]
      podAnnotations={\"a\":\"b\"} podLabels={\"team\":\"ops\"} priorityClassName=\"system-cluster-critical\""
  )
  for case in "${helm_cases[@]}"; do
    name=${case%%|*}
    read -r -d '' -a kvs <<<"${case#*|}" || true
    sets=()
    for kv in ${kvs[@]+"${kvs[@]}"}; do sets+=(--set-json "$kv"); done
    rendered="$OUT/helm-$name.yaml"
    if "$HELM_VENV/bin/python" scripts/helm-sdk.py template "$CHART" "$rendered" \
      --namespace phlox-system --release phlox-operator ${sets[@]+"${sets[@]}"}; then
      validate "$rendered"
    else
      fail "helm template $CHART ($name: ${kvs[*]})"
    fi
  done
fi

# compare_with_chart CONFIG_BUILD HELM_DEFAULT: config/ must grant and run
# what the chart does with its default values.
compare_with_chart() {
  "$K8S_VENV/bin/python" - "$@" <<'PY'
import sys, yaml

config, chart = ({d["kind"]: d for d in yaml.safe_load_all(open(p)) if d} for p in sys.argv[1:3])
ok = True

def same(a, b, what):
    global ok
    if a != b:
        print(f"{what} differs:\n  config/: {a}\n  chart:   {b}")
        ok = False

same(config["ClusterRole"]["rules"], chart["ClusterRole"]["rules"], "ClusterRole rules")
same(config["Role"]["rules"], chart["Role"]["rules"], "leader-election Role rules")
pod_c, pod_h = (x["Deployment"]["spec"]["template"]["spec"] for x in (config, chart))
for key in ("securityContext", "serviceAccountName", "automountServiceAccountToken", "terminationGracePeriodSeconds"):
    same(pod_c.get(key), pod_h.get(key), f"pod {key}")
for key in ("image", "args", "env", "ports", "livenessProbe", "readinessProbe", "resources", "securityContext"):
    same(pod_c["containers"][0].get(key), pod_h["containers"][0].get(key), f"container {key}")
sys.exit(0 if ok else 1)
PY
}
if [ -s "$OUT/helm-default.yaml" ] && [ -s "$OUT/config-default.yaml" ]; then
  rc=0
  out=$(compare_with_chart "$OUT/config-default.yaml" "$OUT/helm-default.yaml" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "ok   config/rbac, config/manager: same rules and operator pod as $CHART's defaults"
  else
    indent <<<"$out"
    fail "config/ (rbac, manager) drifted from $CHART's default rendering"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "k8s-validate: $failures failure(s)"
  exit 1
fi
echo "k8s-validate: everything valid"
