{{/* The name of the objects: the release name when it already says skein, else <release>-skein. */}}
{{- define "skein.fullname" -}}
{{- if contains "skein" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-skein" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "skein.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "skein.selectorLabels" -}}
app.kubernetes.io/name: skein
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skein.labels" -}}
{{ include "skein.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* {GPU: 1, MEM: 2} as GPU=1,MEM=2 (the --resources flag). */}}
{{- define "skein.resourceList" -}}
{{- $out := list -}}
{{- range $k, $v := . -}}
{{- $out = append $out (printf "%s=%v" $k $v) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}
