# An example add-on bundle image: one directory per Kubernetes minor (<major.minor>/*.yaml), at the image's
# root, from examples/bundles/. The chart mounts it read-only as an OCI image volume
# (addonUpdater.bundles.image) at addonUpdater.bundles.mountPath, which becomes addon-updater's bundleDir.
# Build from the repository root:
#   docker build -f images/bundle.Dockerfile -t kube-upgrade-addons:2026.11 .
# It holds data only: no shell, no binaries.
FROM scratch
LABEL org.opencontainers.image.title="kube-upgrade-controllers example add-on bundles" \
      org.opencontainers.image.description="examples/bundles/<minor>/*.yaml for addon-updater"
COPY examples/bundles/ /
