{{/*
addon-updater's bundle policy (addonUpdater.policy) and the rights that follow from it: the kinds of the
policy with the verbs of an applier, cluster-scoped ones cluster-wide, namespaced ones bound in each namespace
of the policy only (addon-updater/rbac.yaml). The config file gets the same lists (allowedResources,
allowedNamespaces), so that what the controller admits and what RBAC lets it do agree.
*/}}

{{- define "kuc.addonVerbs" -}}[get, list, watch, create, update, patch, delete]{{- end -}}

{{/* The namespace of the bundle and variables ConfigMaps: addonUpdater.bundles.namespace or <fullname>-bundles. */}}
{{- define "kuc.bundleNamespace" -}}
{{- default (printf "%s-bundles" (include "kuc.fullname" .)) (get .Values (include "kuc.bundlesOwner" .)).bundles.namespace -}}
{{- end -}}

{{/* The policy's kinds (pass .scope "cluster" or "namespaced") as RBAC rules with the applier's verbs, and
     escalate/bind on its roles with addonUpdater.rbac.escalate. */}}
{{- define "kuc.addonPolicyRules" -}}
{{- $values := get .root.Values (include "kuc.bundlesOwner" .root) -}}
{{- $rules := ternary $values.policy.clusterResources $values.policy.namespacedResources (eq .scope "cluster") -}}
{{- range $rules }}
{{- $resources := .resources }}
{{- if has "" .apiGroups }}
{{- if has "namespaces" .resources }}{{/* changing or deleting a Namespace: only the policy's own */}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch, create]
- apiGroups: [""]
  resources: [namespaces]
  resourceNames: {{ toJson $values.policy.namespaces }}
  verbs: [update, patch, delete]
{{- $resources = without .resources "namespaces" }}
{{- end }}
{{- end }}
{{- if $resources }}
- apiGroups: {{ toJson .apiGroups }}
  resources: {{ toJson $resources }}
  verbs: {{ include "kuc.addonVerbs" $ }}
{{- end }}
{{- if and $values.rbac.escalate (has "rbac.authorization.k8s.io" .apiGroups) }}
{{- $roles := without .resources "rolebindings" "clusterrolebindings" }}
{{- if $roles }}
- apiGroups: [rbac.authorization.k8s.io]
  resources: {{ toJson $roles }}
  verbs: [escalate, bind]
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Every kind of the policy as plural.group (plural alone for the core group), a JSON list. */}}
{{- define "kuc.addonAllowedResources" -}}
{{- $values := get .Values (include "kuc.bundlesOwner" .) -}}
{{- $found := list -}}
{{- range concat $values.policy.clusterResources $values.policy.namespacedResources }}
{{- $rule := . }}
{{- range $group := $rule.apiGroups }}
{{- range $resource := $rule.resources }}
{{- $found = append $found (ternary $resource (printf "%s.%s" $resource $group) (eq $group "")) }}
{{- end }}
{{- end }}
{{- end }}
{{- $found | uniq | toJson -}}
{{- end -}}

{{/* Non-empty when bundles may hold bindings: the updater reads the roles they refer to, to judge them. */}}
{{- define "kuc.addonBindings" -}}
{{- range (include "kuc.addonAllowedResources" .root | fromJsonArray) }}
{{- if has . (list "rolebindings.rbac.authorization.k8s.io" "clusterrolebindings.rbac.authorization.k8s.io") }}true{{ end }}
{{- end }}
{{- end -}}
