#!/usr/bin/env bash
# Validates every Kubernetes manifest of the repository against the API
# schemas of Kubernetes $KUBE_VERSION (default 1.33), offline:
#   1. the objects the operator creates for each config/samples/*pyroscopecluster*.yaml
#      (`$PHLOX_OPERATOR render -f FILE`, default target/debug/phlox-operator),
#      written to target/k8s/<sample>.yaml; the samples themselves against the CRD;
#   2. the static manifests: config/ (kustomize builds of default and crd,
#      with kubectl; argocd, the other samples) and the Argo CD health
#      check's Lua tests;
#   3. the Helm chart charts/phlox-operator: `helm lint --strict` and
#      `helm template` (default values; watchNamespace=team-a with the
#      ServiceMonitor on; most other options) through helm-python-sdk
#      (scripts/helm-sdk.py: Helm 4's Go SDK as a C library in the wheel, no
#      helm binary, no cluster); then config/rbac and config/manager are
#      compared with the chart's default rendering (same rules, same pod).
# Checks use kubernetes-validate --strict (unknown fields are errors). The
# Prometheus Operator's kinds (PodMonitor, ServiceMonitor, PrometheusRule)
# are checked against its CRDs' schemas (validate_monitoring, below). Kinds
# no tool has a schema for (Argo CD Application) are reported as skipped by
# kubernetes-validate and do not fail. Nothing else is ever skipped: a
# missing tool is installed (pinned) or is a failure naming it. Prints one
# line per file; exits 1 if anything failed. Tools go to the venvs .venv-k8s
# and .venv-helm, both made with python3 (>= 3.10; Debian's python3 and
# python3-venv are installed with apt-get when python3 is missing or older),
# pinned, reinstalled only when a pin changes.
# Run from anywhere: `make k8s-validate` or scripts/k8s-validate.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=${KUBE_VERSION:-1.33.0}
KUBERNETES_VALIDATE_VERSION=1.37.0
LUPA_VERSION=2.8
HELM_PYTHON_SDK_VERSION=0.2.2
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
# is gone or the pins changed; else does nothing (fast path). Returns 1 (with
# pip's or venv's output) when it cannot.
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
    { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; } || true
    "$python" -m venv "$dir" || return 1
  fi
  "$dir/bin/pip" install -q --disable-pip-version-check "$@" || return 1
  echo "$want" >"$dir/.versions"
}

# Prometheus Operator kinds (PodMonitor, ServiceMonitor, PrometheusRule)
# have no schema in kubernetes-validate: they are checked against the
# schemas of the Prometheus Operator's CRDs from npm (kubernetes-models,
# pinned in scripts/monitoring-schemas/package-lock.json; node and npm are
# installed with apt-get when missing).
MONITORING=scripts/monitoring-schemas
monitoring_ready=
monitoring_setup() {
  [ -n "$monitoring_ready" ] && return "$monitoring_ready"
  if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's nodejs and npm (the Prometheus Operator schemas)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 || true; }
  fi
  if ! command -v npm >/dev/null; then
    fail "npm is not installed and could not be installed (apt-get install nodejs npm, as root): PodMonitors, ServiceMonitors and PrometheusRules cannot be checked"
    monitoring_ready=1
  elif ! (cd "$MONITORING" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    fail "npm ci in $MONITORING failed: PodMonitors, ServiceMonitors and PrometheusRules cannot be checked"
    monitoring_ready=1
  else
    monitoring_ready=0
  fi
  return "$monitoring_ready"
}

# validate_monitoring FILE: its monitoring.coreos.com objects against the
# CRDs' schemas (nothing to do when it has none).
validate_monitoring() {
  local file=$1 objects out rc=0
  objects=$("$K8S_VENV/bin/python" -c '
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
print(json.dumps(docs))' "$file")
  [ "$objects" = "[]" ] && return 0
  monitoring_setup || return 0
  out=$(node "$MONITORING/validate.mjs" <<<"$objects" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    grep -v '^valid ' <<<"$out" | indent
    fail "$file: Prometheus Operator objects invalid against its CRDs' schemas"
  else
    echo "ok   $file: $(grep -c '^valid ' <<<"$out") Prometheus Operator object(s) ($(sed -n 's/^valid \([A-Za-z]*\) .*/\1/p' <<<"$out" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')) valid against its CRDs' schemas (@kubernetes-models/prometheus-operator $(node -p 'require("./'"$MONITORING"'/node_modules/@kubernetes-models/prometheus-operator/package.json").version'))"
  fi
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

# Both venvs use the same python3, >= 3.10 (helm-python-sdk's floor; Debian 12
# has 3.11): python3 on PATH, else Debian's /usr/bin/python3, installed with
# apt-get (python3, python3-venv) when neither will do.
PYTHON=""
version_of() { "$1" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo missing; }
find_python() {
  local p
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      PYTHON=$p
      return 0
    fi
  done
  return 1
}
if ! find_python; then
  echo "python3 >= 3.10 not found (python3: $(version_of python3)): installing Debian's python3 and python3-venv"
  { apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null; } || true
  hash -r
  if ! find_python; then
    echo "FAIL python3 >= 3.10 not found (python3: $(version_of python3); /usr/bin/python3: $(version_of /usr/bin/python3)) and apt-get could not install one (Debian's python3, python3-venv): nothing can be checked"
    echo "k8s-validate: 1 failure(s)"
    exit 1
  fi
fi
if ! ensure_venv "$K8S_VENV" "$PYTHON" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "lupa==$LUPA_VERSION"; then
  echo "FAIL could not install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION and lupa==$LUPA_VERSION into $K8S_VENV with $("$PYTHON" -V 2>&1) (see above): nothing can be checked"
  echo "k8s-validate: 1 failure(s)"
  exit 1
fi

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
      validate_monitoring "$rendered"
    else
      indent <"$rendered.err"
      fail "$PHLOX_OPERATOR render -f $sample failed"
    fi
  done
fi

echo "== Static manifests (config/)"
# kubectl: installed with apt-get when a configured repository has a kubectl
# package (e.g. pkgs.k8s.io). Debian itself has none: its kubernetes-client is
# 1.20, whose kustomize v2 lacks --load-restrictor; so, on plain Debian, a
# missing kubectl is a failure naming it.
if ! command -v kubectl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  { apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [^(]' ||
    { apt-get update -qq && apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [^(]'; }; } &&
    apt-get install -y -qq kubectl >/dev/null || true
  hash -r
fi
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
  fail "kubectl not found and no apt repository has a kubectl package: the kustomize builds of config/ (and their comparison with the chart) cannot be checked; install kubectl >= 1.21 (e.g. from pkgs.k8s.io; Debian's kubernetes-client 1.20 is too old) or put it on PATH"
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
if ! ensure_venv "$HELM_VENV" "$PYTHON" "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"; then
  fail "$CHART: could not install helm-python-sdk==$HELM_PYTHON_SDK_VERSION into $HELM_VENV with $("$PYTHON" -V 2>&1) (see above; its wheel is manylinux_2_28 x86_64): helm lint, helm template and the config/ comparison cannot run"
else
  rc=0
  out=$("$HELM_VENV/bin/python" scripts/helm-sdk.py lint "$CHART" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    grep '^ *\[' <<<"$out" || true
    echo "ok   $CHART: helm lint --strict (helm-python-sdk $HELM_PYTHON_SDK_VERSION, Helm $("$HELM_VENV/bin/python" -c 'import helm_python; print(helm_python.helm_sdk_version())'), $("$HELM_VENV/bin/python" -V))"
  else
    echo "$out"
    fail "$CHART: helm lint --strict"
  fi
  # NAME|KEY=JSON ... (space-separated, no spaces inside a value)
  helm_cases=(
    "default|"
    "team-a|watchNamespace=\"team-a\" metrics.serviceMonitor.enabled=true replicaCount=2 mixin.prometheusRule.enabled=true"
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
      validate_monitoring "$rendered"
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
else
  fail "config/rbac, config/manager: not compared with $CHART's defaults: $OUT/config-default.yaml or $OUT/helm-default.yaml was not made (see above)"
fi

if [ "$failures" -ne 0 ]; then
  echo "k8s-validate: $failures failure(s)"
  exit 1
fi
echo "k8s-validate: everything valid"
