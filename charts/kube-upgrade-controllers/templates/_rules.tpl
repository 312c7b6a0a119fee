{{/*
What each controller needs beyond the common rules (kuc.commonClusterRules). Keep these minimal: the
integration tests run every controller with its chart ServiceAccount's token and check what it cannot do.
*/}}

{{/* Apply mode: the cluster-scoped kinds of its bundle policy (the namespaced ones are bound in the policy's
     namespaces only: addon-updater/rbac.yaml). Both modes: get on roles where bundles may hold bindings (the
     policy judges the role a binding refers to). No list of other kinds: prune reads its inventory by name. */}}
{{- define "kuc.rules.addonUpdater" -}}
{{- $values := .root.Values.addonUpdater -}}
{{- if ne $values.mode "directory" }}
{{- include "kuc.addonPolicyRules" (dict "root" .root "scope" "cluster") }}
{{- end }}
{{- if include "kuc.addonBindings" . }}
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles, roles]
  verbs: [get]
{{- end }}
{{- with $values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Storage version migration. Rewriting (method rewrite, or auto with usoRunner.rewriteFallback) reads and
     writes back every stored object, whatever its kind: get, list and update on everything (no create,
     delete or patch); rewriting RBAC objects needs escalate and bind; the stored versions of CRDs are set
     through their status. Without rewriting (builtin, or auto without the fallback) it only hands each
     resource to kube-controller-manager's migrator: StorageVersionMigrations, and reading the CRDs and
     APIServices it plans with. */}}
{{- define "kuc.rules.usoRunner" -}}
{{- if include "kuc.usoRunnerRewrites" .root }}
- apiGroups: ["*"]
  resources: ["*"]
  verbs: [get, list, update]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles, roles]
  verbs: [escalate, bind]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions/status]
  verbs: [update, patch]
{{- else }}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list]
- apiGroups: [apiregistration.k8s.io]
  resources: [apiservices]
  verbs: [list]
{{- end }}
- apiGroups: [storagemigration.k8s.io]
  resources: [storageversionmigrations]
  verbs: [get, list, watch, create, delete]
{{- end -}}

{{/* uso-runner's --method (rewrite unless its config says otherwise; the deprecated useBuiltin is builtin). */}}
{{/* The options the chart sets from what it grants: uso-runner rewrites in the built-in migrator's place only
     where kuc.rules.usoRunner granted it. */}}
{{- define "kuc.chartOptions.usoRunner" -}}
{{- if ne (include "kuc.usoRunnerMethod" .root) "rewrite" }}
rewriteFallback: {{ eq (include "kuc.usoRunnerRewrites" .root) "true" }}
{{- end }}
{{- end -}}

{{- define "kuc.usoRunnerMethod" -}}
{{- $config := mustMergeOverwrite (deepCopy .Values.config) (deepCopy .Values.usoRunner.config) -}}
{{- ternary "builtin" (default "rewrite" $config.method) (eq (toString $config.useBuiltin) "true") -}}
{{- end -}}

{{/* Non-empty when uso-runner may rewrite objects itself, and so holds the broad grant: method rewrite, or
     auto with usoRunner.rewriteFallback. Never with builtin. */}}
{{- define "kuc.usoRunnerRewrites" -}}
{{- $method := include "kuc.usoRunnerMethod" . -}}
{{- if or (eq $method "rewrite") (and (eq $method "auto") .Values.usoRunner.rewriteFallback) }}true{{ end -}}
{{- end -}}

{{/* Its own taint on Nodes: update with the resourceVersion read (no delete, no Secrets). */}}
{{- define "kuc.rules.nodeTainter" -}}
- apiGroups: [""]
  resources: [nodes]
  verbs: [update, patch]
{{- end -}}

{{/* Read-only: leader Leases, apiserver identity Leases, node heartbeats, the kubernetes endpoints. */}}
{{- define "kuc.rules.leaderWatchdog" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
{{- end -}}

{{/* Read-only: what the checks judge (CRDs, PodDisruptionBudgets and the pods they cover, the kubernetes
     EndpointSlices to find every apiserver), each apiserver's /metrics (the deprecated-API metrics), and with
     alert-metrics the Prometheus Operator's PrometheusRules (their expressions). What it reads in kube-system
     is granted there only: upgrade-readiness/rbac.yaml. */}}
{{- define "kuc.rules.upgradeReadiness" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list]
- nonResourceURLs: [/metrics]
  verbs: [get]
{{- if include "kuc.readinessRuns" (dict "root" .root "any" (list "alert-metrics")) }}
- apiGroups: [monitoring.coreos.com]
  resources: [prometheusrules]
  verbs: [get, list, watch]
{{- end }}
{{- end -}}

{{/* Namespaced, by name: its verdict ConfigMap (the upgrade gate's admission policies read it; created
     with the common create rule), and the admins' acknowledgements ConfigMap (watched with a metadata.name
     field selector, so resourceNames binds list and watch too). */}}
{{- define "kuc.namespaceRules.upgradeReadiness" -}}
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "kuc.verdictName" .root }}]
  verbs: [get, update, patch]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "kuc.readinessAcks" . }}]
  verbs: [get, list, watch]
{{- end -}}

{{/* The relay, in a Cluster API management cluster: watch Clusters; in each namespace of
     verdictRelay.clusterNamespaces (Roles there: templates/verdict-relay.yaml), get each Cluster's
     <cluster>-kubeconfig Secret by name (no list, no watch) and write its mirror ConfigMap (create cannot be
     limited to a name, hence the namespaces: never cluster-wide, where it could create a bundle ConfigMap). */}}
{{- define "kuc.rules.verdictRelay" -}}
- apiGroups: [cluster.x-k8s.io]
  resources: [clusters]
  verbs: [get, list, watch]
{{- end -}}

{{- define "kuc.relayNamespaceRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "kuc.verdictMirrorName" . }}]
  verbs: [get, update, patch]
{{- end -}}

{{/* The options the chart sets for the verdict relay: the namespaces its Roles cover (kuc.rules.verdictRelay),
     the extension's address and certificate directory (its Service and Secret). */}}
{{- define "kuc.chartOptions.verdictRelay" -}}
{{- $values := get .root.Values .key -}}
clusterNamespaces: {{ toJson $values.clusterNamespaces }}
extensionBindAddress: {{ ternary (printf ":%d" (int $values.extension.port)) "0" $values.extension.enabled | quote }}
extensionCertDir: {{ ternary "/etc/kube-upgrade-controllers/extension-tls" "" (and $values.extension.enabled (ne $values.extension.certSecret "")) | quote }}
{{- end -}}
