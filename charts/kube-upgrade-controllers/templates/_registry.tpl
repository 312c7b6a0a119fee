{{/* Generated from controllers/registry.py by make generate: do not edit. */}}

{{/* The controller keys with their kebab-case names (= console scripts). */}}
{{- define "kuc.controllerNames" -}}
addonUpdater: addon-updater
usoRunner: uso-runner
nodeTainter: node-tainter
leaderWatchdog: leader-watchdog
upgradeReadiness: upgrade-readiness
verdictRelay: verdict-relay
{{- end -}}

{{/* What the templates need to know of each controller: bundles (owns: its values hold the bundle image;
     reads: it judges the next bundle where the owner finds its bundles; none), directoryMode (mode
     "directory" runs it as a DaemonSet writing a host directory), writesState (its state ConfigMap),
     namespaceRules (it has kuc.namespaceRules.<key> in _rules.tpl), chartOptions (the chart sets some of its
     options: kuc.chartOptions.<key> in _rules.tpl), managementCluster (it runs in a Cluster API management
     cluster: never in the combined Deployment; its values hold a Runtime Extension). */}}
{{- define "kuc.controllerTraits" -}}
addonUpdater: {bundles: owns, directoryMode: true, writesState: true, namespaceRules: false, chartOptions: false, managementCluster: false}
usoRunner: {bundles: none, directoryMode: false, writesState: true, namespaceRules: false, chartOptions: true, managementCluster: false}
nodeTainter: {bundles: none, directoryMode: false, writesState: true, namespaceRules: false, chartOptions: false, managementCluster: false}
leaderWatchdog: {bundles: none, directoryMode: false, writesState: false, namespaceRules: false, chartOptions: false, managementCluster: false}
upgradeReadiness: {bundles: reads, directoryMode: false, writesState: true, namespaceRules: true, chartOptions: false, managementCluster: false}
verdictRelay: {bundles: none, directoryMode: false, writesState: true, namespaceRules: false, chartOptions: true, managementCluster: true}
{{- end -}}

{{/* The values key of the controller whose values hold the add-on bundles. */}}
{{- define "kuc.bundlesOwner" -}}
addonUpdater
{{- end -}}
