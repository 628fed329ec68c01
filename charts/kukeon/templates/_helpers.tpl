{{/* Names, labels and computed values shared by the chart's templates. */}}

{{- define "kukeon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kukeon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kukeon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kukeon.labels" -}}
helm.sh/chart: {{ include "kukeon.chart" . }}
app.kubernetes.io/name: {{ include "kukeon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kukeon
{{- end -}}

{{/* Selector labels of one component ("kukeond" or "etcd"): pass (dict "root" . "component" X). */}}
{{- define "kukeon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kukeon.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kukeon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kukeon.etcd.fullname" -}}
{{- printf "%s-etcd" (include "kukeon.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kukeon.etcd.headless" -}}
{{- printf "%s-etcd-headless" (include "kukeon.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* host:port of member i of the chart's etcd, reachable from pods and host-network pods. */}}
{{- define "kukeon.etcd.memberHost" -}}
{{- printf "%s-%d.%s.%s.svc" (include "kukeon.etcd.fullname" .root) .index (include "kukeon.etcd.headless" .root) .root.Release.Namespace -}}
{{- end -}}

{{/* The etcd client URLs kukeond connects to, as a list. */}}
{{- define "kukeon.etcd.endpoints" -}}
{{- if .Values.etcd.external.enabled -}}
{{- if not .Values.etcd.external.endpoints -}}
{{- fail "etcd.external.enabled is true but etcd.external.endpoints is empty: list the client URLs of your etcd cluster" -}}
{{- end -}}
{{- toYaml .Values.etcd.external.endpoints -}}
{{- else -}}
{{- $endpoints := list -}}
{{- range $index := until (int .Values.etcd.replicas) -}}
{{- $host := include "kukeon.etcd.memberHost" (dict "root" $ "index" $index) -}}
{{- $endpoints = append $endpoints (printf "https://%s:%d" $host (int $.Values.etcd.clientPort)) -}}
{{- end -}}
{{- toYaml $endpoints -}}
{{- end -}}
{{- end -}}

{{/* The --initial-cluster value of the chart's etcd. */}}
{{- define "kukeon.etcd.initialCluster" -}}
{{- $members := list -}}
{{- range $index := until (int .Values.etcd.replicas) -}}
{{- $host := include "kukeon.etcd.memberHost" (dict "root" $ "index" $index) -}}
{{- $members = append $members (printf "%s-%d=https://%s:%d" (include "kukeon.etcd.fullname" $) $index $host (int $.Values.etcd.peerPort)) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{/* kukeond shows a client certificate: always to the chart's etcd, to an external one when configured. */}}
{{- define "kukeon.etcd.tlsEnabled" -}}
{{- if or (not .Values.etcd.external.enabled) .Values.etcd.external.tls.enabled -}}true{{- end -}}
{{- end -}}

{{/* The Secret with ca.crt, tls.crt and tls.key kukeond connects to etcd with. */}}
{{- define "kukeon.etcd.tlsSecret" -}}
{{- if .Values.etcd.external.enabled -}}
{{- default (printf "%s-etcd-client-tls" (include "kukeon.fullname" .)) .Values.etcd.external.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-etcd-client-tls" (include "kukeon.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The chart's etcd members' own certificate (client and peer listeners). */}}
{{- define "kukeon.etcd.memberTlsSecret" -}}
{{- printf "%s-etcd-member-tls" (include "kukeon.fullname" .) -}}
{{- end -}}

{{- define "kukeon.api.tlsSecret" -}}
{{- default (printf "%s-api-tls" (include "kukeon.fullname" .)) .Values.api.tls.existingSecret -}}
{{- end -}}

{{- define "kukeon.api.tokensSecret" -}}
{{- default (printf "%s-api-tokens" (include "kukeon.fullname" .)) .Values.api.tokens.existingSecret -}}
{{- end -}}

{{/* "true" when the nodes forward requests for each other's cells (needs the TCP API). */}}
{{- define "kukeon.fleet.enabled" -}}
{{- if and .Values.api.enabled .Values.fleet.enabled -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the encryption key file: the operator's, or the chart's generated one. */}}
{{- define "kukeon.encryption.secret" -}}
{{- default (printf "%s-encryption" (include "kukeon.fullname" .)) .Values.encryption.existingSecret -}}
{{- end -}}

{{- define "kukeon.fleet.tokenSecret" -}}
{{- default (printf "%s-fleet-token" (include "kukeon.fullname" .)) .Values.fleet.token.existingSecret -}}
{{- end -}}

{{/* The key of the fleet token in its Secret: the operator's key, or "token" in the chart's. */}}
{{- define "kukeon.fleet.tokenKey" -}}
{{- if .Values.fleet.token.existingSecret -}}{{ .Values.fleet.token.key }}{{- else -}}token{{- end -}}
{{- end -}}

{{/* The Secret holding the token kukeond's /metrics asks for, and the token's key in it. */}}
{{- define "kukeon.metrics.tokenSecret" -}}
{{- default (printf "%s-metrics-token" (include "kukeon.fullname" .)) .Values.metrics.token.existingSecret -}}
{{- end -}}

{{- define "kukeon.metrics.tokenKey" -}}
{{- if .Values.metrics.token.existingSecret -}}{{ .Values.metrics.token.key }}{{- else -}}token{{- end -}}
{{- end -}}

{{/* kukeond.apiSocketGroup as kukeond reads it: the node's gid, "" (or 0) for root only.
An integer from a values file is a float64, printed 1e+06 unless made an int64. */}}
{{- define "kukeon.apiSocketGroup" -}}
{{- $group := .Values.kukeond.apiSocketGroup | default "" -}}
{{- if kindIs "string" $group -}}{{ $group }}{{- else -}}{{ int64 $group }}{{- end -}}
{{- end -}}
