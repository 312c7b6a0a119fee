#!/usr/bin/env bash
# Build the suite's images with the local container engine (`make image` runs this):
#   kube-upgrade-controllers:<chart appVersion> and :dev   from images/Dockerfile
#   kube-upgrade-addons:<chart appVersion> and :dev        from images/bundle.Dockerfile (example bundles)
# Steps, each printed with a timestamp:
#   1. the base image (PYTHON_IMAGE, default python:3.11-slim-bookworm) when the engine does not have it:
#      PULL=1 lets `docker build` pull it; otherwise a local stand-in is made from Debian bookworm's own
#      python3.11 (e2e/debian-image.sh), for machines that reach no container registry;
#   2. the wheelhouse build/wheelhouse/: the runtime set exported from uv.lock (hashes included) and
#      downloaded with the host's own clients, plus the project's wheel;
#   3. docker build of both images; unchanged layers come from the engine's cache.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
base=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
version=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' charts/kube-upgrade-controllers/Chart.yaml)
[ -n "$version" ] || { echo "image.sh: no appVersion in the chart" >&2; exit 1; }
image=kube-upgrade-controllers
bundles=kube-upgrade-addons
wheelhouse=build/wheelhouse
uv=${UV:-uv}

started=$(date +%s)
log() { printf '[image %s +%ss] %s\n' "$(date +%T)" "$(($(date +%s) - started))" "$*" >&2; }

e2e/engine.sh

if docker image inspect "$base" >/dev/null 2>&1; then
  log "base $base: present"
elif [ "${PULL:-0}" = 1 ]; then
  log "base $base: absent, docker build will pull it (PULL=1)"
else
  log "base $base: absent, making a local stand-in from Debian bookworm (PULL=1 pulls the real one instead)"
  e2e/debian-image.sh "$base" --include python3,python3-pip,python3-venv --change 'CMD ["python3"]'
fi

log "wheelhouse: the locked runtime dependencies (uv.lock) and the project's wheel"
mkdir -p "$wheelhouse/deps" "$wheelhouse/project"
$uv export --quiet --frozen --no-dev --no-emit-project --format requirements.txt \
  -o "$wheelhouse/deps/requirements.txt"
# Wheels for the image's platform (CPython 3.11, glibc Linux of the engine's architecture), not the host's.
arch=$(docker info --format '{{.Architecture}}')
platforms=(--platform "manylinux2014_$arch")
for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_$arch"); done
$uv tool run --quiet --from 'pip>=25' pip download --quiet --disable-pip-version-check --no-deps \
  --require-hashes --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
  "${platforms[@]}" -r "$wheelhouse/deps/requirements.txt" -d "$wheelhouse/deps"
# Only what the lock names stays in the wheelhouse (an older lock's wheels would be copied in for nothing).
wanted=$(sed -n 's/^\([A-Za-z0-9_.-]*\)==\([^ ;]*\).*/\1-\2/p' "$wheelhouse/deps/requirements.txt" |
  tr '[:upper:]-' '[:lower:]_')
for wheel in "$wheelhouse"/deps/*.whl; do
  stem=$(basename "$wheel" | cut -d- -f1-2 | tr '[:upper:]-' '[:lower:]_')
  grep -qxF "$stem" <<<"$wanted" || rm -f "$wheel"
done
rm -f "$wheelhouse"/project/*.whl
$uv build --quiet --wheel --out-dir "$wheelhouse/project" >/dev/null

# The engine's output is shown only when a build fails (the classic builder's steps are noise otherwise).
build() {
  local output
  output=$(mktemp)
  if ! docker build "$@" >"$output" 2>&1; then
    tail -n 40 "$output" >&2
    rm -f "$output"
    log "error: docker build $* failed"
    exit 1
  fi
  rm -f "$output"
}
log "docker build $image:$version (and :dev) from images/Dockerfile"
build --build-arg "PYTHON_IMAGE=$base" -f images/Dockerfile -t "$image:$version" -t "$image:dev" .
log "docker build $bundles:$version (and :dev) from images/bundle.Dockerfile"
build -f images/bundle.Dockerfile -t "$bundles:$version" -t "$bundles:dev" .

# The image a rebuild replaced is left untagged: remove it (the build stage's layers stay, as the cache).
# Cleanup only: another build's prune running at the same moment ("a prune operation is already running")
# is no reason to fail this one.
docker image prune --force --filter "label=org.opencontainers.image.title=$image" >/dev/null ||
  log "the old image is left for the next build to remove (the engine refused a prune now)"
size=$(docker image inspect --format '{{.Size}}' "$image:$version" | numfmt --to=iec)
log "done: $image:$version ($size), $bundles:$version"
