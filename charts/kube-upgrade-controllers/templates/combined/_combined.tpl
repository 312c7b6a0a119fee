{{/*
The combined Deployment (combined.enabled): every enabled controller that can run in it, in one process
(kube-upgrade-controllers run), with one ServiceAccount bound to each controller's own roles.
*/}}

{{- define "kuc.combined.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: combined
{{- end -}}

{{- define "kuc.combined.metadata" -}}
name: {{ include "kuc.combinedName" . }}
namespace: {{ .Release.Namespace }}
labels:
  {{- include "kuc.labels" . | nindent 2 }}
  app.kubernetes.io/component: combined
  kube-upgrade-controllers.io/controller: combined
{{- end -}}
