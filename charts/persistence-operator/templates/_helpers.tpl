{{/*
Expand the name of the chart.
*/}}
{{- define "persistence-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "persistence-operator.fullname" -}}
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
Create chart name and version as used by the chart label.
*/}}
{{- define "persistence-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "persistence-operator.labels" -}}
helm.sh/chart: {{ include "persistence-operator.chart" . }}
{{ include "persistence-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: persistence-operator
{{- end }}

{{/*
Selector labels
*/}}
{{- define "persistence-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "persistence-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the manager (the operator's Deployment, its pods and its Service).
*/}}
{{- define "persistence-operator.managerSelectorLabels" -}}
{{ include "persistence-operator.selectorLabels" . }}
app.kubernetes.io/component: manager
control-plane: controller-manager
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "persistence-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "persistence-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "persistence-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The image the PersistenceRollout's gateway pods run: the operator image unless
rollout.gateway.image overrides it (the image holds the gateway and syncer).
*/}}
{{- define "persistence-operator.gatewayImage" -}}
{{- $repo := default .Values.image.repository .Values.rollout.gateway.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.rollout.gateway.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/*
The namespace of the PersistenceRollout and its database Secret.
*/}}
{{- define "persistence-operator.rolloutNamespace" -}}
{{- default .Release.Namespace .Values.rollout.namespace }}
{{- end }}

{{/*
The name of the Secret holding the rollout's PostgreSQL DSN: the existing one,
or the one this chart creates from rollout.database.dsn.
*/}}
{{/*
The key of the syncers' DSN in the database Secret ("" when none).
*/}}
{{- define "persistence-operator.serviceSecretKey" -}}
{{- $db := .Values.rollout.database -}}
{{- if $db.serviceSecretKey }}{{ $db.serviceSecretKey }}{{ else if $db.serviceDsn }}service-dsn{{ end }}
{{- end }}

{{- define "persistence-operator.databaseSecretName" -}}
{{- if .Values.rollout.database.existingSecret }}
{{- .Values.rollout.database.existingSecret }}
{{- else }}
{{- printf "%s-database" .Values.rollout.name | trunc 253 }}
{{- end }}
{{- end }}

{{/*
One alert of templates/prometheusrule.yaml. Takes a dict: root (the chart's
top-level context), name, expr, summary, description. The alert's settings
(for, severity) are monitoring.prometheusRule.alerts.<name>; its runbook is
the heading of docs/operations.md named like it (GitHub's anchor: the name
in lower case).
*/}}
{{- define "persistence-operator.alert" -}}
{{- $settings := index .root.Values.monitoring.prometheusRule.alerts .name -}}
{{- $labels := merge (dict "severity" $settings.severity) (deepCopy (default dict .root.Values.monitoring.prometheusRule.additionalLabels)) -}}
- alert: {{ .name }}
  expr: |-
    {{- .expr | trim | nindent 4 }}
  for: {{ $settings.for }}
  labels:
    {{- toYaml $labels | nindent 4 }}
  annotations:
    summary: {{ .summary | quote }}
    description: {{ .description | quote }}
    runbook_url: {{ printf "%s#%s" .root.Values.monitoring.runbookBaseURL (lower .name) | quote }}
{{- end }}

{{/*
Refuse to upgrade over an older PersistenceRollout CRD. Helm installs crds/
at the first install only and never upgrades them, and the API server drops
the fields an older CRD lacks from every rollout without an error (helm
prints only a warning): a rollout upgraded with rollout.database.serviceDsn
kept its syncers on the owner's DSN, and this version's validations were
not applied. The CRD carries its revision in the annotation
persistence.yawp.dev/crd-revision, raised with every change of its schema
(charts' TestCRDRevisionFollowsTheSchema fails until it is); the installed
one must be at least the chart's. CRDs from before the annotation are
revision 2 if they have spec.database.serviceSecretRef, else 1. Skipped
where helm cannot look (helm template, --dry-run) and before the CRD
exists.
*/}}
{{- define "persistence-operator.checkInstalledCRD" -}}
{{- $key := "persistence.yawp.dev/crd-revision" -}}
{{- $ours := (.Files.Get "crds/persistence.yawp.dev_persistencerollouts.yaml" | fromYaml) -}}
{{- $want := index $ours.metadata.annotations $key | int -}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "persistencerollouts.persistence.yawp.dev" -}}
{{- if $crd -}}
{{- $have := 0 -}}
{{- $annotated := dig "metadata" "annotations" $key "" $crd -}}
{{- if $annotated -}}
{{- $have = $annotated | int -}}
{{- else -}}
{{- $have = 2 -}}
{{- range $crd.spec.versions -}}
{{- if not (dig "schema" "openAPIV3Schema" "properties" "spec" "properties" "database" "properties" "serviceSecretRef" "" .) -}}
{{- $have = 1 -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if lt $have $want -}}
{{- fail (printf "the PersistenceRollout CRD in the cluster (revision %d) is older than this chart's (revision %d): helm never upgrades crds/, and the API server would drop this chart's new rollout fields without an error. Apply the chart's CRD first, then upgrade again: helm show crds CHART | kubectl apply --server-side -f -" $have $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}
