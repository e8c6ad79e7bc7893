{{/* Names and labels. */}}
{{- define "authnode.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "authnode.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "authnode.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/name: {{ include "authnode.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one role: (dict "root" $ "component" "api") */}}
{{- define "authnode.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authnode.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "authnode.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "authnode.secretName" -}}
{{- if .Values.secret.values -}}
{{- include "authnode.fullname" . -}}
{{- else -}}
{{- required "secret.existingSecret or secret.values is required" .Values.secret.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* SHUTDOWN_TIMEOUT_MS as the pods see it (the application's default is 10000). */}}
{{- define "authnode.shutdownTimeoutMs" -}}
{{- .Values.config.SHUTDOWN_TIMEOUT_MS | default 10000 | int -}}
{{- end -}}

{{/* Seconds the kubelet waits after SIGTERM before SIGKILL: longer than the drain plus
     the graceful stop, so neither is ever cut short. */}}
{{- define "authnode.terminationGracePeriodSeconds" -}}
{{- $shutdownS := div (add (include "authnode.shutdownTimeoutMs" .root | int) 999) 1000 -}}
{{- add .drainDelaySeconds $shutdownS .root.Values.terminationGraceMarginSeconds -}}
{{- end -}}

{{/* Environment shared by every container: config values, then the Secret. */}}
{{- define "authnode.env" -}}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "authnode.envFrom" -}}
- secretRef:
    name: {{ include "authnode.secretName" . }}
{{- end -}}

{{- define "authnode.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Spread one role's pods over nodes and zones: (dict "root" $ "component" "api") */}}
{{- define "authnode.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "authnode.selectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "authnode.scrapeAnnotations" -}}
{{- if .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}
