{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "phlox-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects: the release name, with the chart name appended
unless the release name already contains it.
*/}}
{{- define "phlox-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "phlox-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels of every object.
*/}}
{{- define "phlox-operator.labels" -}}
helm.sh/chart: {{ include "phlox-operator.chart" . }}
{{ include "phlox-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: phlox
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels the Deployment and the Service select pods by (immutable: never add
to them).
*/}}
{{- define "phlox-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phlox-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "phlox-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "phlox-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "phlox-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
Rules for the data plane the operator reconciles: the PyroscopeClusters and
every object it creates for them. Bound cluster-wide, or in watchNamespace.
*/}}
{{- define "phlox-operator.rules" -}}
- apiGroups: ["phlox.dev"]
  resources: ["pyroscopeclusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["phlox.dev"]
  resources: ["pyroscopeclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The storage credentials Secret: its data's hash rolls the pods when it
# changes (watched by metadata; read when a cluster uses it). The
# cluster's admin token Secret: created once, read for admin calls.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
# Larger metastore volumes: the existing claims are expanded.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "patch"]
# Autoscaling: read the pods' addresses and readiness; restart a drained
# segment writer whose removal was cancelled.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies", "ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The gRPC port's certificate, when a cluster asks cert-manager for it.
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch", "delete"]
# PodMonitors and the PrometheusRule, when a cluster asks for them.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors", "prometheusrules"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
