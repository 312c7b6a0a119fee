{{/* Generated from controllers/registry.py by make generate: do not edit. */}}

{{/* The controller keys with their kebab-case names (= console scripts). */}}
{{- define "kuc.controllerNames" -}}
addonUpdater: addon-updater
usoRunner: uso-runner
nodeTainter: node-tainter
leaderWatchdog: leader-watchdog
upgradeReadiness: upgrade-readiness
{{- end -}}

{{/* What the templates need to know of each controller: bundles (owns: its values hold the bundle image;
     reads: it judges the next bundle where the owner finds its bundles; none), directoryMode (mode
     "directory" runs it as a DaemonSet writing a host directory), writesState (its state ConfigMap),
     namespaceRules (it has kuc.namespaceRules.<key> in _rules.tpl), chartOptions (the chart sets some of its
     options: kuc.chartOptions.<key> in _rules.tpl). */}}
{{- define "kuc.controllerTraits" -}}
addonUpdater: {bundles: owns, directoryMode: true, writesState: true, namespaceRules: false, chartOptions: false}
usoRunner: {bundles: none, directoryMode: false, writesState: true, namespaceRules: false, chartOptions: true}
nodeTainter: {bundles: none, directoryMode: false, writesState: true, namespaceRules: false, chartOptions: false}
leaderWatchdog: {bundles: none, directoryMode: false, writesState: false, namespaceRules: false, chartOptions: false}
upgradeReadiness: {bundles: reads, directoryMode: false, writesState: true, namespaceRules: true, chartOptions: false}
{{- end -}}

{{/* The values key of the controller whose values hold the add-on bundles. */}}
{{- define "kuc.bundlesOwner" -}}
addonUpdater
{{- end -}}
