{{- define "doris-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "doris-operator.fullname" -}}
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

{{- define "doris-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "doris-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "doris-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "doris-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: doris-operator
{{- end -}}

{{- define "doris-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "doris-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "doris-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Names of the webhook's objects (the operator creates the cluster-scoped ones itself). */}}
{{- define "doris-operator.webhookService" -}}{{ include "doris-operator.fullname" . }}-webhook{{- end -}}
{{- define "doris-operator.webhookSecret" -}}{{ include "doris-operator.fullname" . }}-webhook-cert{{- end -}}
{{- define "doris-operator.webhookCertificate" -}}{{ include "doris-operator.fullname" . }}-webhook{{- end -}}
{{- define "doris-operator.webhookConfig" -}}{{ include "doris-operator.fullname" . }}{{- end -}}
{{- define "doris-operator.webhookPolicy" -}}{{ include "doris-operator.fullname" . }}-managed-statefulsets{{- end -}}

{{/*
The operator's rules on the namespaced objects it reconciles. Every verb is used by the code
(see the chart README for the table and where each one is called).
*/}}
{{- define "doris-operator.operatorRules" -}}
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusters/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete", "patch"]
# the readiness gate doris.apache.org/member-alive (a strategic merge of that one condition)
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
# failover.recreateLocalClaims: a BE's claim bound to a volume on a lost node
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
