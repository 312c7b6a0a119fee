#!/usr/bin/env bash
# The release's files, into DIR (default dist/; `make dist` runs this after `make image` and `make tools`):
#   kube_upgrade_controllers-<version>-py3-none-any.whl, kube_upgrade_controllers-<version>.tar.gz  (uv build)
#   kube-upgrade-controllers-<chart version>.tgz          the chart (helm package)
#   kube-upgrade-controllers-<appVersion>.image.tar       the image `make image` built (docker save: load it
#                                                         with docker load, ctr images import, kind load)
#   kubectl-upgrade-<version>.tar.gz, krew/upgrade.yaml   the kubectl plugin for krew (packaging/krew/)
#   SHA256SUMS
# RELEASE_URL: where these files will be downloaded from (the krew manifest and its launcher name it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=$(realpath -m "${1:-dist}")
uv=${UV:-uv}
release_url=${RELEASE_URL:-RELEASE_URL}
chart=charts/kube-upgrade-controllers
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
app_version=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$chart/Chart.yaml")
[ "$version" = "$app_version" ] || {
  echo "dist.sh: pyproject.toml's version $version is not the chart's appVersion $app_version" >&2
  exit 1
}
image=kube-upgrade-controllers:$app_version

rm -rf "$out"
mkdir -p "$out/krew"
$uv build --quiet --out-dir "$out" >/dev/null
"$(e2e/build-tool.sh helm)" package "$chart" --destination "$out" >/dev/null
docker image inspect "$image" >/dev/null 2>&1 || { echo "dist.sh: no image $image: run make image" >&2; exit 1; }
docker save "$image" -o "$out/kube-upgrade-controllers-$app_version.image.tar"
chmod 0644 "$out/kube-upgrade-controllers-$app_version.image.tar"

wheel=kube_upgrade_controllers-$version-py3-none-any.whl
archive=kubectl-upgrade-$version.tar.gz
render() {
  sed -e "s|@VERSION@|$version|g" -e "s|@RELEASE_URL@|$release_url|g" -e "s|@WHEEL@|$wheel|g" \
    -e "s|@ARCHIVE@|$archive|g" -e "s|@SHA256@|${sha256:-}|g" "$1"
}
plugin=$(mktemp -d)
trap 'rm -rf "$plugin"' EXIT
render packaging/krew/kubectl-upgrade >"$plugin/kubectl-upgrade"
chmod 0755 "$plugin/kubectl-upgrade"
cp LICENSE "$plugin/"
# Reproducible: fixed owner, order and times, so the sha256 changes only with the content.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$plugin" -cf - kubectl-upgrade LICENSE |
  gzip -n >"$out/$archive"
sha256=$(sha256sum "$out/$archive" | cut -d' ' -f1)
render packaging/krew/upgrade.yaml | sed '/^# /d' >"$out/krew/upgrade.yaml"

(cd "$out" && sha256sum -- *.whl *.tar.gz *.tgz *.image.tar >SHA256SUMS)
[ "$release_url" != RELEASE_URL ] || echo "dist.sh: RELEASE_URL not set: the krew manifest names RELEASE_URL/$archive" >&2
ls -1 "$out"
