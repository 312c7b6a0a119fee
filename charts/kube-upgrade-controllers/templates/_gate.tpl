{{/*
The upgrade gate's admission policies (docs/upgrade-gate.md). One ValidatingAdmissionPolicy and binding per
kind: the kinds' version fields, as CEL paths that tolerate a missing field (optional selection).
*/}}

{{- define "kuc.gateKinds" -}}
Cluster:
  group: cluster.x-k8s.io
  resource: clusters
  field: spec.topology.version
  path: ".?spec.?topology.?version"
  operations: [UPDATE]
  relayed: true
KubeadmControlPlane:
  group: controlplane.cluster.x-k8s.io
  resource: kubeadmcontrolplanes
  field: spec.version
  path: ".?spec.?version"
  operations: [UPDATE]
  relayed: true
Plan:
  group: upgrade.cattle.io
  resource: plans
  field: spec.version
  path: ".?spec.?version"
  operations: [CREATE, UPDATE]
  relayed: false
TenantControlPlane:
  group: kamaji.clastix.io
  resource: tenantcontrolplanes
  field: spec.kubernetes.version
  path: ".?spec.?kubernetes.?version"
  operations: [UPDATE]
  relayed: true
{{- end -}}

{{/* The verdict ConfigMap upgrade-readiness writes (controllers/upgrade_readiness/controller.py). */}}
{{- define "kuc.verdictName" -}}
{{- printf "%s-upgrade-readiness-verdict" (include "kuc.fullname" .) -}}
{{- end -}}

{{/* The ConfigMap the verdict relay writes in each Cluster's namespace (controllers/verdict_relay). */}}
{{- define "kuc.verdictMirrorName" -}}
{{- printf "%s-upgrade-verdicts" (include "kuc.fullname" .) -}}
{{- end -}}

{{/* "major * 10000 + minor" of a version string held by variable .var (-1 when it is no version). */}}
{{- define "kuc.gateMinor" -}}
size(variables.{{ . }}MM) == 2 ? int(variables.{{ . }}MM[0]) * 10000 + int(variables.{{ . }}MM[1]) : -1
{{- end -}}

{{/* One kind's policy: (dict "root" $ "kind" "Cluster" "facts" <its entry of kuc.gateKinds>). */}}
{{- define "kuc.gatePolicy" -}}
{{- $root := .root -}}
{{- $f := .facts -}}
{{- $gate := $root.Values.upgradeGate -}}
{{- $relayed := and $f.relayed (eq $gate.verdict "relay") -}}
{{- $new := printf "object%s.orValue('')" $f.path -}}
{{- $old := printf "(request.operation == 'UPDATE' ? oldObject%s.orValue('') : '')" $f.path -}}
{{- $version := "'^v?[0-9]{1,4}[.][0-9]{1,4}([.+-]|$)'" -}}
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {{ include "kuc.fullname" $root }}-upgrade-gate-{{ lower .kind }}
  labels:
    {{- include "kuc.labels" $root | nindent 4 }}
    app.kubernetes.io/component: upgrade-gate
spec:
  failurePolicy: Fail
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
      - apiGroups: [{{ $f.group | quote }}]
        apiVersions: ["*"]
        operations: {{ toJson $f.operations }}
        resources: [{{ $f.resource | quote }}]
  matchConditions:
    # Only a write that changes the version field (a new object: any version) is judged.
    - name: version-changes
      expression: {{ printf "%s != %s" $new $old | quote }}
    # The exempt users and groups (Cluster API's topology controller; a break-glass group) always pass.
    - name: not-exempt
      expression: {{ printf "!(request.userInfo.username in %s) && !request.userInfo.?groups.orValue([]).exists(g, g in %s)" (toJson $gate.exemptUsernames) (toJson $gate.exemptGroups) | quote }}
  variables:
    - name: new
      expression: {{ $new | quote }}
    - name: old
      expression: {{ $old | quote }}
    - name: newMM
      expression: {{ printf "variables.new.matches(%s) ? variables.new.find('[0-9]{1,4}[.][0-9]{1,4}').split('.') : []" $version | quote }}
    - name: oldMM
      expression: {{ printf "variables.old.matches(%s) ? variables.old.find('[0-9]{1,4}[.][0-9]{1,4}').split('.') : []" $version | quote }}
    - name: newMinor
      expression: {{ include "kuc.gateMinor" "new" | quote }}
    - name: oldMinor
      expression: {{ include "kuc.gateMinor" "old" | quote }}
    # The verdict's keys: in the relay's mirror, those of the object's Cluster (<cluster>.<key>).
    - name: at
      {{- if not $relayed }}
      expression: "''"
      {{- else if eq .kind "Cluster" }}
      expression: "object.metadata.name + '.'"
      {{- else }}
      expression: "object.metadata.?labels[?'cluster.x-k8s.io/cluster-name'].orValue(object.metadata.name) + '.'"
      {{- end }}
    - name: verdict
      expression: "params.?data.orValue({})"
    - name: targetText
      expression: "variables.verdict[?(variables.at + 'target')].orValue('')"
    - name: targetMM
      expression: "variables.targetText.matches('^[0-9]{1,4}[.][0-9]{1,4}$') ? variables.targetText.split('.') : []"
    - name: target
      expression: {{ include "kuc.gateMinor" "target" | quote }}
    - name: upgradeable
      expression: "variables.verdict[?(variables.at + 'upgradeable')].orValue('') == 'true'"
    - name: reasons
      expression: "variables.verdict[?(variables.at + 'reasons')].orValue('')"
    - name: acknowledge
      expression: "variables.verdict[?(variables.at + 'acknowledge')].orValue('')"
  validations:
    - expression: "variables.new == '' || variables.newMinor >= 0"
      messageExpression: {{ printf "'%s ' + variables.new + ' is not a Kubernetes version the upgrade gate can judge (v1.38.0)'" $f.field | quote }}
      reason: Invalid
    # Allowed: no minor upgrade (a patch, a downgrade), a minor below the gate's target, or the target
    # itself while the verdict says upgradeable. Refused: the target while not upgradeable, a minor beyond
    # it (judged one minor at a time), and anything while there is no verdict.
    - expression: >-
        variables.new == '' || variables.newMinor <= variables.oldMinor ||
        (variables.target >= 0 && (variables.newMinor < variables.target ||
        (variables.newMinor == variables.target && variables.upgradeable)))
      messageExpression: >-
        {{ printf "'upgrade gate: %s '" $f.field }} + variables.new + ': ' +
        (variables.target < 0 ? 'no verdict of the upgrade gate' + (variables.reasons == '' ? ' for this cluster yet' : ': ' + variables.reasons) :
        variables.newMinor > variables.target ? 'the gate judged the next minor ' + variables.targetText + ' only: upgrade one minor at a time' :
        'not upgradeable to ' + variables.targetText + ': ' + variables.reasons) +
        (variables.newMinor != variables.target || variables.acknowledge == '' ? '' :
        '. To acknowledge a blocker for ' + variables.targetText + ': ' + variables.acknowledge)
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {{ include "kuc.fullname" $root }}-upgrade-gate-{{ lower .kind }}
  labels:
    {{- include "kuc.labels" $root | nindent 4 }}
    app.kubernetes.io/component: upgrade-gate
spec:
  policyName: {{ include "kuc.fullname" $root }}-upgrade-gate-{{ lower .kind }}
  validationActions: {{ toJson $gate.validationActions }}
  paramRef:
    {{- if $relayed }}
    # The mirror in the object's own namespace.
    name: {{ include "kuc.verdictMirrorName" $root }}
    {{- else }}
    name: {{ include "kuc.verdictName" $root }}
    namespace: {{ $root.Release.Namespace }}
    {{- end }}
    # No verdict, no write to these objects at all (fail closed); break-glass: docs/upgrade-gate.md.
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector: {{ toJson $gate.namespaceSelector }}
{{- end -}}

{{/* --- the verdict relay (a management cluster's controller; trait managementCluster) --------------------- */}}

{{- define "kuc.extensionEnabled" -}}
{{- $c := include "kuc.controller" . | fromYaml -}}
{{- if and $c.managementCluster (get .root.Values .key).extension.enabled }}true{{ end -}}
{{- end -}}

{{- define "kuc.extensionPort" -}}
{{- if include "kuc.extensionEnabled" . -}}
- name: extension
  containerPort: {{ (get .root.Values .key).extension.port }}
  protocol: TCP
{{- end -}}
{{- end -}}

{{- define "kuc.extensionVolumeMount" -}}
{{- if and (include "kuc.extensionEnabled" .) (get .root.Values .key).extension.certSecret -}}
- name: extension-tls
  mountPath: /etc/kube-upgrade-controllers/extension-tls
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "kuc.extensionVolume" -}}
{{- if and (include "kuc.extensionEnabled" .) (get .root.Values .key).extension.certSecret -}}
- name: extension-tls
  secret:
    secretName: {{ (get .root.Values .key).extension.certSecret }}
{{- end -}}
{{- end -}}
