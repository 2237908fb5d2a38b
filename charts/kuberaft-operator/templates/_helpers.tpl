{{/*
The chart's name, truncated to 63 characters (a DNS label).
*/}}
{{- define "kuberaft-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: the release name, plus the chart name unless
the release name already contains it (helm install kuberaft-operator ... gives
the names of deploy/operator.yaml).
*/}}
{{- define "kuberaft-operator.fullname" -}}
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

{{- define "kuberaft-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels that select the operator pods.
*/}}
{{- define "kuberaft-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberaft-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels on every object of the chart.
*/}}
{{- define "kuberaft-operator.labels" -}}
helm.sh/chart: {{ include "kuberaft-operator.chart" . }}
{{ include "kuberaft-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kuberaft
{{- end }}

{{- define "kuberaft-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kuberaft-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kuberaft-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
