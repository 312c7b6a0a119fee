{{/*
metrics.secure (--metrics-secure): the controllers' extra rules, the certificate's volume and options.
*/}}

{{/* Where a pod mounts metrics.certSecret. */}}
{{- define "kuc.metricsCertDir" -}}
/etc/kube-upgrade-controllers-metrics-tls
{{- end -}}

{{/* The options a controller's config file gets from metrics.* (metricsSecure either way: the controllers'
     own default is secure too, so "off" must be said). */}}
{{- define "kuc.metricsOptions" -}}
metricsSecure: {{ .Values.metrics.secure }}
{{- if and .Values.metrics.secure .Values.metrics.certSecret }}
metricsCertDir: {{ include "kuc.metricsCertDir" . }}
{{- end }}
{{- end -}}

{{/* The same as flags of the combined process (which reads its own options from flags only). */}}
{{- define "kuc.metricsFlags" -}}
{{- if .Values.metrics.secure -}}
- --metrics-secure
{{- if .Values.metrics.certSecret }}
- --metrics-cert-dir={{ include "kuc.metricsCertDir" . }}
{{- end }}
{{- else -}}
- --no-metrics-secure
{{- end }}
{{- end -}}

{{/* Rules of every controller with metrics.secure: review the tokens of those who read /metrics. */}}
{{- define "kuc.metricsSecureRules" -}}
{{- if .Values.metrics.secure -}}
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [authorization.k8s.io]
  resources: [subjectaccessreviews]
  verbs: [create]
{{- end }}
{{- end -}}

{{- define "kuc.metricsVolumeMount" -}}
{{- if and .Values.metrics.secure .Values.metrics.certSecret -}}
- name: metrics-tls
  mountPath: {{ include "kuc.metricsCertDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kuc.metricsVolume" -}}
{{- if and .Values.metrics.secure .Values.metrics.certSecret -}}
- name: metrics-tls
  secret:
    secretName: {{ .Values.metrics.certSecret }}
{{- end }}
{{- end -}}

{{/* The ServiceMonitor endpoint's settings for metrics.secure (kubebuilder's scaffold does the same). */}}
{{- define "kuc.metricsScrape" -}}
{{- if .Values.metrics.secure -}}
scheme: https
bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
tlsConfig:
  {{- toYaml (.Values.serviceMonitor.tlsConfig | default (dict "insecureSkipVerify" true)) | nindent 2 }}
{{- end }}
{{- end -}}
