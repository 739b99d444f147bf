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

{{/* tls when security.existingSecret is set, else tcp: the scheme of the cluster's addresses. */}}
{{- define "skein.scheme" -}}
{{- ternary "tls" "tcp" (ne .Values.security.existingSecret "") -}}
{{- end -}}

{{/* The credential flags (args list items), naming the files of the mounted Secret. */}}
{{- define "skein.securityArgs" -}}
{{- with .Values.security }}
{{- if .existingSecret }}
- --tls-ca-file
- /etc/skein/credentials/ca.pem
- --tls-cert
- /etc/skein/credentials/cert.pem
- --tls-key
- /etc/skein/credentials/key.pem
{{- if .tokenKey }}
- --auth-token-file
- /etc/skein/credentials/token
{{- end }}
{{- if .requireEncryption }}
- --require-encryption
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The container's mount of the credentials. */}}
{{- define "skein.securityMount" -}}
{{- if .Values.security.existingSecret }}
volumeMounts:
  - name: skein-credentials
    mountPath: /etc/skein/credentials
    readOnly: true
{{- end }}
{{- end -}}

{{/* The pod's credentials volume and fsGroup. */}}
{{- define "skein.securityVolume" -}}
{{- with .Values.security }}
{{- if .existingSecret }}
securityContext:
  fsGroup: {{ .fsGroup }}
volumes:
  - name: skein-credentials
    secret:
      secretName: {{ .existingSecret | quote }}
      # 0600, written in decimal: YAML 1.1 and 1.2 read a leading 0 differently
      defaultMode: 384
      items:
        - key: {{ .caKey | quote }}
          path: ca.pem
        - key: {{ .certKey | quote }}
          path: cert.pem
        - key: {{ .keyKey | quote }}
          path: key.pem
        {{- if .tokenKey }}
        - key: {{ .tokenKey | quote }}
          path: token
        {{- end }}
{{- end }}
{{- end }}
{{- end -}}
