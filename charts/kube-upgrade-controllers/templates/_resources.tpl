{{/*
One define per resource kind, shared by the controllers; templates/controllers.yaml renders each kind for
every enabled controller.
*/}}

{{- define "kuc.serviceAccount" -}}
{{- $values := get .root.Values .key -}}
{{- if ne (include "kuc.controller" . | fromYaml).workload "Combined" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
  {{- with $values.serviceAccountAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: true
{{- end -}}
{{- end -}}

{{- define "kuc.clusterRole" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ (include "kuc.controller" . | fromYaml).fullname }}
  labels:
    {{- include "kuc.controllerLabels" . | nindent 4 }}
rules:
  {{- include "kuc.commonClusterRules" . | nindent 2 }}
  {{- include (printf "kuc.rules.%s" .key) . | nindent 2 }}
{{- end -}}

{{- define "kuc.clusterRoleBinding" -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $c.fullname }}
  labels:
    {{- include "kuc.controllerLabels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $c.fullname }}
subjects:
  - kind: ServiceAccount
    name: {{ $c.serviceAccount }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}

{{- define "kuc.role" -}}
{{- if trim (include "kuc.namespaceRules" .) -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
rules:
  {{- include "kuc.namespaceRules" . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "kuc.roleBinding" -}}
{{- if trim (include "kuc.namespaceRules" .) -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $c.fullname }}
subjects:
  - kind: ServiceAccount
    name: {{ $c.serviceAccount }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}
{{- end -}}

{{- define "kuc.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
data:
  config.yaml: |
    {{- include "kuc.configFile" . | nindent 4 }}
{{- end -}}

{{- define "kuc.service" -}}
{{- if ne (include "kuc.controller" . | fromYaml).workload "Combined" -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "kuc.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .root.Values.ports.metrics }}
      targetPort: metrics
      protocol: TCP
    - name: health
      port: {{ .root.Values.ports.health }}
      targetPort: health
      protocol: TCP
{{- end -}}
{{- end -}}

{{- define "kuc.podDisruptionBudget" -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- if and (eq $c.workload "Deployment") (gt (int $c.replicas) 1) -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "kuc.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{- define "kuc.deployment" -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- if eq $c.workload "Deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
spec:
  replicas: {{ $c.replicas }}
  revisionHistoryLimit: 3
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: {{ ternary 1 0 (gt (int $c.replicas) 1) }}
  selector:
    matchLabels:
      {{- include "kuc.selectorLabels" . | nindent 6 }}
  template:
    {{- include "kuc.podTemplate" . | nindent 4 }}
{{- end -}}
{{- end -}}

{{- define "kuc.daemonSet" -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- if eq $c.workload "DaemonSet" -}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  {{- include "kuc.metadata" . | nindent 2 }}
spec:
  revisionHistoryLimit: 3
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "kuc.selectorLabels" . | nindent 6 }}
  template:
    {{- include "kuc.podTemplate" . | nindent 4 }}
{{- end -}}
{{- end -}}

{{/* The pod template of a controller (Deployment or, for addon-updater in directory mode, DaemonSet). */}}
{{- define "kuc.podTemplate" -}}
{{- $root := .root -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- $values := get $root.Values .key -}}
{{- $directory := eq $c.workload "DaemonSet" -}}
{{- $addon := get $root.Values (include "kuc.bundlesOwner" $root) -}}
{{- $bundles := and (or (eq $c.bundles "owns") (and (eq $c.bundles "reads") $addon.enabled)) $addon.bundles.image -}}
metadata:
  labels:
    {{- include "kuc.controllerLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include "kuc.configFile" . | sha256sum }}
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ $c.fullname }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: 30
  containers:
    - name: {{ $c.name }}
      image: {{ include "kuc.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: [{{ $c.name }}]
      args: [--config, /etc/kube-upgrade-controllers/config.yaml]
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- with $values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ $root.Values.ports.metrics }}
          protocol: TCP
        - name: health
          containerPort: {{ $root.Values.ports.health }}
          protocol: TCP
        {{- with include "kuc.extensionPort" . }}{{ . | nindent 8 }}{{ end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        periodSeconds: 20
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: health
        periodSeconds: 10
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/kube-upgrade-controllers
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if $bundles }}
        - name: bundles
          mountPath: {{ $addon.bundles.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $directory }}
        - name: addons
          mountPath: {{ $values.directory.hostPath }}
        {{- end }}
        {{- with include "kuc.metricsVolumeMount" $root }}{{ . | nindent 8 }}{{ end }}
        {{- with include "kuc.extensionVolumeMount" . }}{{ . | nindent 8 }}{{ end }}
        {{- with include "kuc.prometheusVolumeMount" (dict "root" $root "keys" (list .key)) }}{{ . | nindent 8 }}{{ end }}
  {{- if $directory }}
  nodeSelector:
    {{- toYaml $values.directory.nodeSelector | nindent 4 }}
  tolerations:
    {{- toYaml $values.directory.tolerations | nindent 4 }}
  {{- else }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ $c.fullname }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if $bundles }}
    - name: bundles
      image:
        reference: {{ $addon.bundles.image }}
        pullPolicy: {{ $addon.bundles.pullPolicy }}
    {{- end }}
    {{- if $directory }}
    - name: addons
      hostPath:
        path: {{ $values.directory.hostPath }}
        type: DirectoryOrCreate
    {{- end }}
    {{- with include "kuc.metricsVolume" $root }}{{ . | nindent 4 }}{{ end }}
    {{- with include "kuc.extensionVolume" . }}{{ . | nindent 4 }}{{ end }}
    {{- with include "kuc.prometheusVolume" (dict "root" $root "keys" (list .key)) }}{{ . | nindent 4 }}{{ end }}
{{- end -}}
