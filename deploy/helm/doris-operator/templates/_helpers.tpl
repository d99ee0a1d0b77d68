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
# patch: a DorisClusterAutoscaler's decision, server-side apply of only <comp>Spec.replicas under the
# field manager doris-operator-autoscaler
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusters"]
  verbs: ["patch"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusters/status"]
  verbs: ["patch"]
# The children's ownerReferences set blockOwnerDeletion: with OwnerReferencesPermissionEnforcement
# (OpenShift) that needs update on the owner's finalizers subresource.
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusters/finalizers"]
  verbs: ["update"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisinitializers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisinitializers/status"]
  verbs: ["patch"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusterautoscalers"]
  verbs: ["list", "watch"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorisclusterautoscalers/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# the CN HorizontalPodAutoscaler of cnSpec.autoScalingPolicy ({cluster}-cn-autoscaler)
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# a DorisClusterAutoscaler's cpu/memory metrics (metrics-server)
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Secrets: never listed or watched. get: the Secrets a DorisCluster names (authSecret, secrets[],
# imagePullSecrets) and the generated {cluster}-admin-user one, each read by name.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# create and patch (server-side apply): only ever of {cluster}-admin-user, made from the deprecated
# spec.adminUser, and of a bundled DorisMonitor's generated {monitor}-grafana-admin (made once). RBAC can't say so: create is never restricted by resourceNames, and resourceNames
# can't name a pattern. No delete: the Secret goes with its DorisCluster (ownerReference).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch"]
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
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# DorisMonitor (reconcile/monitor.py): its children are watched by label (get: a cache miss read live),
# applied, pruned
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorismonitors"]
  verbs: ["list", "watch"]
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorismonitors/status"]
  verbs: ["patch"]
# its children's ownerReferences set blockOwnerDeletion (as the DorisClusters' do)
- apiGroups: ["doris.selectdb.com"]
  resources: ["dorismonitors/finalizers"]
  verbs: ["update"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors", "prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# the bundled Prometheus's Role (pods list/watch in the cluster's namespace, which the operator holds)
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end -}}
