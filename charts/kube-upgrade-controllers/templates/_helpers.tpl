{{/*
Names, labels and the per-controller building blocks. Every define is namespaced "kuc.".
A controller is passed around as (dict "root" $ "key" "nodeTainter"); "kuc.controller" turns the key into
its facts (name, script, values).
*/}}

{{- define "kuc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kuc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kuc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "kuc.labels" -}}
helm.sh/chart: {{ include "kuc.chart" . }}
app.kubernetes.io/name: {{ include "kuc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-upgrade-controllers
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Facts about one controller as YAML: name, fullname, workload (Deployment, DaemonSet, or Combined: in the
     one combined Deployment), serviceAccount, replicas, leaderElect. */}}
{{- define "kuc.controller" -}}
{{- $root := .root -}}
{{- $name := get (include "kuc.controllerNames" . | fromYaml) .key -}}
{{- $traits := get (include "kuc.controllerTraits" . | fromYaml) .key -}}
{{- $values := get $root.Values .key -}}
{{- $daemonSet := and $traits.directoryMode (eq $values.mode "directory") -}}
{{- /* The relay keeps a Deployment of its own: its Secret reads and its Runtime Extension stay out of the
     combined process (and its ServiceAccount). */}}
{{- $combined := and $root.Values.combined.enabled (not $daemonSet) (not $traits.managementCluster) -}}
{{- $fullname := printf "%s-%s" (include "kuc.fullname" $root) $name -}}
{{- $replicas := 1 -}}
{{- if $combined }}{{ $replicas = $root.Values.combined.replicas }}{{ else if not $daemonSet }}{{ $replicas = $values.replicas }}{{ end -}}
name: {{ $name }}
fullname: {{ $fullname }}
workload: {{ ternary "DaemonSet" (ternary "Combined" "Deployment" $combined) $daemonSet }}
serviceAccount: {{ ternary (include "kuc.combinedName" $root) $fullname $combined }}
replicas: {{ $replicas }}
leaderElect: {{ gt (int $replicas) 1 }}
{{ toYaml $traits }}
{{- end -}}

{{/* The combined Deployment (combined.enabled): its name, and the controllers that run in it. */}}
{{- define "kuc.combinedName" -}}
{{- printf "%s-combined" (include "kuc.fullname" .) -}}
{{- end -}}

{{- define "kuc.combinedControllers" -}}
{{- range $key, $name := include "kuc.controllerNames" . | fromYaml }}
{{- $c := include "kuc.controller" (dict "root" $ "key" $key) | fromYaml }}
{{- if and (get $.Values $key).enabled (eq $c.workload "Combined") }}
- {{ $key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Labels of one controller's objects: the common labels + component. */}}
{{- define "kuc.controllerLabels" -}}
{{ include "kuc.labels" .root }}
app.kubernetes.io/component: {{ (include "kuc.controller" . | fromYaml).name }}
kube-upgrade-controllers.io/controller: {{ (include "kuc.controller" . | fromYaml).name }}
{{- end -}}

{{/* The selector labels of one controller's pods. */}}
{{- define "kuc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuc.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ (include "kuc.controller" . | fromYaml).name }}
{{- end -}}

{{- define "kuc.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The config file a controller reads (--config): shared config < own config < what the chart decides. */}}
{{- define "kuc.configFile" -}}
{{- $root := .root -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- $values := get $root.Values .key -}}
{{- $owned := dict
  "namespace" $root.Release.Namespace
  "release" (include "kuc.fullname" $root)
  "leaderElect" $c.leaderElect
  "metricsBindAddress" (printf ":%d" (int $root.Values.ports.metrics))
  "healthProbeBindAddress" (printf ":%d" (int $root.Values.ports.health)) -}}
{{- if $c.directoryMode }}
{{- $_ := set $owned "target" $values.mode -}}
{{- if eq $values.mode "directory" }}
{{- $_ := set $owned "targetDir" (printf "%s/%s" (trimSuffix "/" $values.directory.hostPath) $values.directory.linkName) -}}
{{- end }}
{{- end }}
{{- if and (eq $c.bundles "owns") $values.bundles.image }}
{{- $_ := set $owned "bundleDir" $values.bundles.mountPath -}}
{{- end }}
{{- if eq $c.bundles "owns" }}
{{- /* The bundle namespace and policy, as the chart grants them (addon-updater/_policy.tpl). */}}
{{- $_ := set $owned "bundleNamespace" (include "kuc.bundleNamespace" $root) -}}
{{- $_ := set $owned "allowedResources" (include "kuc.addonAllowedResources" $root | fromJsonArray) -}}
{{- $_ := set $owned "allowedNamespaces" $values.policy.namespaces -}}
{{- $_ := set $owned "allowPrivilegedRbac" $values.policy.allowPrivilegedRbac -}}
{{- end }}
{{- /* A reader of the bundles (upgrade-readiness) looks for them where their owner (addon-updater) finds
     them, as it would. */}}
{{- $addon := get $root.Values (include "kuc.bundlesOwner" $root) -}}
{{- if and (eq $c.bundles "reads") $addon.enabled }}
{{- $addonConfig := mustMergeOverwrite (deepCopy $root.Values.config) (deepCopy $addon.config) -}}
{{- $_ := set $owned "bundleSource" (default "directory" $addonConfig.bundleSource) -}}
{{- $_ := set $owned "bundleSelection" (default "exact" $addonConfig.selection) -}}
{{- range $key := list "bundleDir" "variables" "variablesConfigMap" }}
{{- if hasKey $addonConfig $key }}{{ $_ := set $owned $key (get $addonConfig $key) }}{{ end }}
{{- end }}
{{- $_ := set $owned "bundleNamespace" (include "kuc.bundleNamespace" $root) -}}
{{- if $addon.bundles.image }}
{{- $_ := set $owned "bundleDir" $addon.bundles.mountPath -}}
{{- end }}
{{- end }}
{{- if $c.chartOptions }}
{{- $owned = mustMergeOverwrite $owned (include (printf "kuc.chartOptions.%s" .key) . | fromYaml) -}}
{{- end }}
{{- $owned = mustMergeOverwrite $owned (include "kuc.metricsOptions" $root | fromYaml) -}}
{{- mustMergeOverwrite (deepCopy $root.Values.config) (deepCopy $values.config) $owned | toYaml -}}
{{- end -}}

{{/* Names of the state ConfigMap and the leader Lease the controller writes (see controllers/kube/state.py). */}}
{{- define "kuc.stateName" -}}
{{- printf "%s-state" (include "kuc.controller" . | fromYaml).fullname -}}
{{- end -}}

{{- define "kuc.metadata" -}}
name: {{ (include "kuc.controller" . | fromYaml).fullname }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "kuc.controllerLabels" . | nindent 2 }}
{{- end -}}

{{/* Rules every controller needs: read the masters (and their apiserver pods), record Events. */}}
{{- define "kuc.commonClusterRules" -}}
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
{{- if eq (get (mustMergeOverwrite (deepCopy .root.Values.config) (get .root.Values .key).config) "versionSource") "apiserver" }}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- end }}
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- with include "kuc.metricsSecureRules" .root }}{{ . | nindent 0 }}{{ end }}
{{- end -}}

{{/* Namespaced rules: the state ConfigMap (not the watchdog's: it writes nothing) and, with leader election,
     the Lease. create cannot be limited to a name, so it stays in this namespace. */}}
{{- define "kuc.namespaceRules" -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- if $c.writesState }}
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "kuc.stateName" . }}]
  verbs: [get, update, patch]
{{- end }}
{{- if $c.namespaceRules }}
{{- include (printf "kuc.namespaceRules.%s" .key) . | nindent 0 }}
{{- end }}
{{- if $c.leaderElect }}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ $c.fullname }}]
  verbs: [get, update, patch]
{{- end }}
{{- end -}}

{{/* Non-empty when addon-updater reads ConfigMaps (bundles or variables) in the bundle namespace. */}}
{{- define "kuc.addonConfigMaps" -}}
{{- $owner := get .Values (include "kuc.bundlesOwner" .) -}}
{{- $config := mustMergeOverwrite (deepCopy .Values.config) (deepCopy $owner.config) -}}
{{- if and $owner.enabled (or (eq (toString $config.bundleSource) "configmap") $config.variablesConfigMap) }}true{{ end -}}
{{- end -}}

{{/* Non-empty when upgrade-readiness runs any of the checks in .any: its checks option unset (all run), or
     naming one of them (the grants they need follow the checks). */}}
{{- define "kuc.readinessRuns" -}}
{{- $config := mustMergeOverwrite (deepCopy .root.Values.config) (deepCopy .root.Values.upgradeReadiness.config) -}}
{{- if not (hasKey $config "checks") }}true{{ else }}{{ range .any }}{{ if has . $config.checks }}true{{ end }}{{ end }}{{ end -}}
{{- end -}}

{{/* The ConfigMap of the admins' acknowledgements, one key per target minor and check (upgrade-readiness
     watches it by name: list and watch with a metadata.name field selector, so resourceNames binds them). */}}
{{- define "kuc.readinessAcks" -}}
{{- $config := mustMergeOverwrite (deepCopy .root.Values.config) (deepCopy .root.Values.upgradeReadiness.config) -}}
{{- default (printf "%s-upgrade-readiness-acks" (include "kuc.fullname" .root)) $config.acknowledgementsConfigMap -}}
{{- end -}}

{{/* leaderWatchdog.prometheusSecret, mounted where its config names files (blind-alert-rules' bearer token, CA)
     in the pod that runs the watchdog: .keys are the values keys of the controllers the pod runs. */}}
{{- define "kuc.prometheusVolumeMount" -}}
{{- if and (has "leaderWatchdog" .keys) .root.Values.leaderWatchdog.prometheusSecret -}}
- name: prometheus
  mountPath: /etc/kube-upgrade-controllers/prometheus
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "kuc.prometheusVolume" -}}
{{- if and (has "leaderWatchdog" .keys) .root.Values.leaderWatchdog.prometheusSecret -}}
- name: prometheus
  secret:
    secretName: {{ .root.Values.leaderWatchdog.prometheusSecret }}
{{- end -}}
{{- end -}}
