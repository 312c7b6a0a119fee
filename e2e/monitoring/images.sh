#!/usr/bin/env bash
# The kind scenario's Prometheus stack as local images, made offline from the static binaries that
# e2e/build-tool.sh builds from the Go module proxy (nothing is pulled):
#   e2e/monitoring/images.sh        builds the missing ones; prints "TOOL IMAGE" per line
# Each image is FROM scratch with its one binary where the upstream image has it (/bin/<name>) and the same
# entrypoint, so that the Operator's generated pods (which set args only, or /bin/prometheus-config-reloader
# as command) run them unchanged. Images carry the e2e label and are tagged by the pinned version.
set -euo pipefail
log_tag=monitoring-images
# shellcheck source-path=SCRIPTDIR source=../kind/common.sh
. "$(dirname "$0")/../kind/common.sh"

# tool, the binary's name in the image, the image name
images=(
  "prometheus prometheus prometheus"
  "alertmanager alertmanager alertmanager"
  "prometheus-operator operator prometheus-operator"
  "prometheus-config-reloader prometheus-config-reloader prometheus-config-reloader"
  "kube-state-metrics kube-state-metrics kube-state-metrics"
)

for entry in "${images[@]}"; do
  read -r tool binary name <<<"$entry"
  built=$(tool "$tool")
  version=$(basename "$(dirname "$built")")
  version=${version#"$tool"-}
  image=kuc-monitoring/$name:$version
  if ! have_image "$image"; then
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/monitoring-image.XXXXXX")
    cp "$built" "$ctx/$binary"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY $binary /bin/$binary
LABEL $kuc_label=monitoring
USER 65534
ENTRYPOINT ["/bin/$binary"]
DOCKERFILE
    log "building $image"
    docker_build -t "$image" "$ctx"
    rm -rf "$ctx"
  fi
  echo "$tool $image"
done
