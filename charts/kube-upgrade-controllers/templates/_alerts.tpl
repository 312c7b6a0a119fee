{{/*
clusterLabel, checked: a Prometheus label name not starting with "__" (values.schema.json says the same;
this also holds when the schema is skipped), and none of the labels the alerts aggregate by.
*/}}
{{- define "kuc.clusterLabel" -}}
{{- $label := .Values.clusterLabel -}}
{{- if not (regexMatch "^([a-zA-Z][a-zA-Z0-9_]*|_[a-zA-Z0-9][a-zA-Z0-9_]*)$" $label) -}}
{{- fail (printf "clusterLabel %q is not a Prometheus label name: letters, digits and _, not starting with a digit or __" $label) -}}
{{- end -}}
{{- if has $label (list "namespace" "check" "reason" "phase" "from" "to" "severity" "alertname") -}}
{{- fail (printf "clusterLabel %q is a label the chart's alerts already use; choose another name" $label) -}}
{{- end -}}
{{- $label -}}
{{- end -}}

{{/*
The suite's alerts as a YAML list (kuc.alerts), rendered by prometheusrule.yaml minus prometheusRule.disabled.
Metrics of several replicas are folded with max by (<clusterLabel>, namespace): a standby replica exports
its gauges at their initial values, the leader the real ones; the cluster label keeps the clusters of a
fleet apart. Every alert links docs/runbooks/<alert>.md.
*/}}
{{- define "kuc.alerts" -}}
{{- $c := include "kuc.clusterLabel" . -}}
{{- $t := .Values.prometheusRule.thresholds -}}
{{- $warning := .Values.prometheusRule.severities.warning -}}
{{- $critical := .Values.prometheusRule.severities.critical -}}
{{- /* Not a problem but a state: the source of the inhibit rules (alertmanagerconfig.yaml). Severity none,
       like kube-prometheus' InfoInhibitor: route it to a receiver that does not notify. One alert per
       cluster, with no phase, version or namespace label: its identity must not change while the upgrade
       goes on, nor may two of them share the inhibit rule's equal labels. Alertmanager before v0.34.1 keeps
       ONE source alert per equal-label set in its index and lets the target through when that one resolves,
       even while another is firing (measured in kind: the control-plane instance's end let
       KubeVersionMismatch through during the workers phase; tests/integration/test_alertmanager.py). */}}
- alert: KubeUpgradeInProgress
  expr: max by ({{ $c }}) (leader_watchdog_upgrade_in_progress) == 1
  keep_firing_for: {{ $t.upgradeInProgressKeepFiring }}
  labels: {severity: none}
  annotations:
    summary: 'A Kubernetes upgrade is in progress.'
    description: >-
      A leader-watchdog of this cluster sees an upgrade under way (its phase and versions:
      leader_watchdog_upgrade_in_progress). Not a problem: this alert inhibits the alerts a healthy upgrade
      trips (alertmanagerConfig.inhibitDuringUpgrade); KubeUpgradeMastersNotAgreeing and
      KubeUpgradeNodesOutdated report an upgrade that stalls.
- alert: KubeUpgradeMastersNotAgreeing
  expr: max by ({{ $c }}, namespace) ({__name__=~"(addon_updater|uso_runner|node_tainter|leader_watchdog)_masters_agreed"}) == 0
  for: {{ $t.mastersDisagree }}
  labels: {severity: {{ $warning }}}
  annotations:
    summary: 'The masters have not agreed on one version for {{ $t.mastersDisagree }}.'
    description: >-
      The upgrade controllers in {{ "{{ $labels.namespace }}" }} have seen no agreement of the masters for
      {{ $t.mastersDisagree }}: a master upgrade is stuck half-way, a master is NotReady or reports an
      unparseable version, or fewer masters than minMasters exist. Nothing acts until they agree.
- alert: KubeUpgradeMigrationFailed
  expr: max by ({{ $c }}, namespace) (uso_runner_resources{state="failed"}) > 0
  for: 5m
  labels: {severity: {{ $warning }}}
  annotations:
    summary: 'Storage version migration failed for {{ "{{ $value }}" }} resource(s).'
    description: >-
      uso-runner in {{ "{{ $labels.namespace }}" }} finished its last run with {{ "{{ $value }}" }} resource(s)
      not migrated; their objects stay stored at the old version until a run succeeds. With
      usoRunner.rewriteFallback=false (or method builtin) a resource kube-controller-manager's migrator did
      not migrate (storagemigration.k8s.io not served, a StorageVersionMigration not picked up or timed out)
      is failed, not rewritten: uso_runner_rewrite_fallback_refused_total and the RewriteFallbackDisabled
      Events say so.
- alert: KubeUpgradeMigrationStalled
  expr: >-
    max by ({{ $c }}, namespace) (uso_runner_run_in_progress) == 1
    unless on ({{ $c }}, namespace) sum by ({{ $c }}, namespace) (rate(uso_runner_objects_total[15m])) > 0
    unless on ({{ $c }}, namespace) max by ({{ $c }}, namespace) (uso_runner_run_paused) == 1
    unless on ({{ $c }}, namespace) max by ({{ $c }}, namespace) (uso_runner_builtin_migrations_running) > 0
  for: {{ $t.migrationStalled }}
  labels: {severity: {{ $warning }}}
  annotations:
    summary: 'A storage version migration has made no progress for {{ $t.migrationStalled }}.'
    description: >-
      uso-runner in {{ "{{ $labels.namespace }}" }} has a run in progress but rewrote no object in the last
      15 minutes, for {{ $t.migrationStalled }} (not counting a run paused because the masters stopped
      agreeing, nor one waiting for StorageVersionMigrations, which --builtin-timeout-seconds bounds).
- alert: KubeUpgradeAddonBundleMissing
  expr: max by ({{ $c }}, namespace) (addon_updater_bundle_missing) == 1
  for: 5m
  labels: {severity: {{ $warning }}}
  annotations:
    summary: 'No add-on bundle exists for the agreed Kubernetes minor.'
    description: >-
      addon-updater in {{ "{{ $labels.namespace }}" }} found no bundle for the minor the masters agree on and
      left the add-ons as they were.
- alert: KubeUpgradeAddonApplyFailed
  # A failure that a retry soon mends (an apiserver restarting during its own upgrade: the kind scenario saw
  # one) is no page: only failures with no successful switch since, for 5 minutes.
  expr: >-
    sum by ({{ $c }}, namespace) (increase(addon_updater_switches_total{result="failed"}[30m])) > 0
    unless on ({{ $c }}, namespace)
    sum by ({{ $c }}, namespace) (increase(addon_updater_switches_total{result="success"}[30m])) > 0
  for: 5m
  labels: {severity: {{ $critical }}}
  annotations:
    summary: 'Switching the add-on bundle failed.'
    description: >-
      addon-updater in {{ "{{ $labels.namespace }}" }} failed to switch to the add-on bundle of the agreed
      minor, and has not switched successfully in the last 30 minutes (invalid bundle, rejected by the
      apiserver, or apply error).
- alert: KubeUpgradeAddonUnhealthy
  expr: max by ({{ $c }}, namespace) (addon_updater_workloads_unavailable) > 0
  for: {{ $t.addonUnhealthy }}
  labels: {severity: {{ $critical }}}
  annotations:
    summary: '{{ "{{ $value }}" }} add-on workload(s) not available.'
    description: >-
      {{ "{{ $value }}" }} Deployment(s)/DaemonSet(s) of the active add-on bundle in
      {{ "{{ $labels.namespace }}" }} have not been available for {{ $t.addonUnhealthy }}.
- alert: KubeUpgradeNodesOutdated
  expr: max by ({{ $c }}, namespace) (node_tainter_outdated_nodes) > 0
  for: {{ $t.nodesOutdated }}
  labels: {severity: {{ $warning }}}
  annotations:
    summary: '{{ "{{ $value }}" }} worker node(s) run an older kubelet than the masters.'
    description: >-
      {{ "{{ $value }}" }} worker node(s) have stayed below the agreed control-plane version for
      {{ $t.nodesOutdated }}: the node upgrade is stuck or forgotten.
- alert: KubeUpgradeKubeletSkewViolation
  expr: max by ({{ $c }}, namespace, reason) (node_tainter_skew_policy_violations) > 0
  for: 15m
  labels: {severity: {{ $warning }}}
  annotations:
    summary: '{{ "{{ $value }}" }} node(s) violate the kubelet version skew policy ({{ "{{ $labels.reason }}" }}).'
    description: >-
      {{ "{{ $value }}" }} node(s) run a kubelet more than 3 minors behind the agreed version (too_old) or a
      newer minor than the masters (too_new). Kubernetes does not support this.
- alert: KubeUpgradeStaleLeader
  expr: max by ({{ $c }}, namespace) (leader_watchdog_findings{check="stale-leader"}) > 0
  for: {{ $t.staleLeader }}
  labels: {severity: {{ $critical }}}
  annotations:
    summary: 'A leader Lease has not been renewed in time.'
    description: >-
      leader-watchdog sees {{ "{{ $value }}" }} leader Lease(s) (kube-controller-manager, kube-scheduler, ...)
      whose holder stopped renewing: nobody runs that control loop.
- alert: KubeUpgradeLeaderOnUnknownMaster
  expr: max by ({{ $c }}, namespace) (leader_watchdog_findings{check="leader-on-unknown-master"}) > 0
  for: 5m
  labels: {severity: {{ $critical }}}
  annotations:
    summary: 'A leader Lease is held by a host that is not a current master.'
    description: >-
      {{ "{{ $value }}" }} leader Lease(s) are held by a host that is not a current master Node, e.g. a
      removed master that still runs its control-plane pods.
- alert: KubeUpgradeStaleApiserver
  expr: max by ({{ $c }}, namespace, check) (leader_watchdog_findings{check=~"stale-apiserver|stale-endpoint"}) > 0
  for: {{ $t.staleApiserver }}
  labels: {severity: {{ $critical }}}
  annotations:
    summary: 'A live apiserver or kubernetes endpoint is not a current master ({{ "{{ $labels.check }}" }}).'
    description: >-
      {{ "{{ $value }}" }} kube-apiserver identity Lease(s) or default/kubernetes endpoint address(es) belong to
      no current master: nodes and clients may still talk to a removed master.
- alert: KubeUpgradeMassNotReadyAfterMasterChange
  expr: max by ({{ $c }}, namespace) (leader_watchdog_findings{check="outage-pattern"}) > 0
  labels: {severity: {{ $critical }}}
  annotations:
    summary: 'Many nodes went NotReady right after the set of masters changed.'
    description: >-
      Worker nodes went NotReady shortly after a master was added or removed: the pattern of nodes still
      talking to a removed master. Their pods will be evicted.
- alert: KubeUpgradeAlertRulesBlind
  expr: max by ({{ $c }}, namespace) (leader_watchdog_findings{check="blind-alert-rule"}) > 0
  for: 15m
  labels: {severity: {{ $warning }}}
  annotations:
    summary: '{{ "{{ $value }}" }} alerting rule(s) went blind with the upgrade.'
    description: >-
      leader-watchdog in {{ "{{ $labels.namespace }}" }} finds {{ "{{ $value }}" }} alerting rule(s) of its
      Prometheus whose selectors had series before the last upgrade began and have none now: they can no
      longer fire (a metric renamed or removed by the release, an exporter broken). Its /status lists each rule
      and selector (alertRules, findings).
- alert: KubeUpgradeNotReady
  expr: max by ({{ $c }}, namespace, check) (upgrade_readiness_blockers) > 0
  for: 30m
  labels: {severity: {{ $warning }}}
  annotations:
    summary: 'The cluster is not ready for the next minor: {{ "{{ $labels.check }}" }}.'
    description: >-
      upgrade-readiness in {{ "{{ $labels.namespace }}" }} finds {{ "{{ $value }}" }} blocker(s) of the check
      {{ "{{ $labels.check }}" }} for the upgrade to the next minor (upgrade_readiness_finding_info and
      `kube-upgrade-controllers readiness` list them). Fix them, or acknowledge the check for that target
      minor, until a time, in the upgrade-readiness acknowledgements ConfigMap (a key ack-<minor>-<check>).
{{- end -}}
