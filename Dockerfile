# syntax=docker/dockerfile:1
#
# kukeon's container image: kukectl and kukeond from one wheel of this project.
#
#   docker build --build-arg VERSION=0.1.0 -t kukeon:0.1.0 .        (online, from python:slim)
#   hack/build-image.sh                                             (the same, with buildah)
#   hack/build-image.sh --offline                                   (no network at all: a base
#       image made locally by debootstrap and a pre-downloaded wheelhouse; see docs/install.md)
#
# ---------------------------------------------------------------------------------------------
# Running kukeond from this image
#
# kukeond manages the HOST's containerd, cgroups, network namespaces, bridges and nftables, so
# it is not confined like an ordinary container. It needs:
#   --user 0 (root; the image's default user is the unprivileged `kukeon`, for kukectl)
#   --privileged, the host PID namespace (--pid=host) and the host network (--network=host)
#   the containerd socket       -v /run/containerd/containerd.sock:/run/containerd/containerd.sock
#   the cgroup filesystem       -v /sys/fs/cgroup:/sys/fs/cgroup
#   its state directory         -v /var/lib/kukeon:/var/lib/kukeon
#   its run directory (API)     -v /run/kukeon:/run/kukeon          (socket /run/kukeon/kukeond.sock)
#   network namespaces          -v /run/netns:/run/netns:rshared    (bind mounts must reach the host)
#   CNI plugins and configs     -v /usr/lib/cni:/usr/lib/cni:ro -v /opt/cni/bin:/opt/cni/bin:ro
#                               -v /etc/cni/net.d:/etc/cni/net.d
# e.g.
#   docker run -d --name kukeond --user 0 --privileged --pid=host --network=host \
#     -v /run/containerd/containerd.sock:/run/containerd/containerd.sock \
#     -v /sys/fs/cgroup:/sys/fs/cgroup -v /var/lib/kukeon:/var/lib/kukeon \
#     -v /run/kukeon:/run/kukeon -v /run/netns:/run/netns:rshared \
#     -v /usr/lib/cni:/usr/lib/cni:ro -v /etc/cni/net.d:/etc/cni/net.d \
#     kukeon:0.1.0 kukeond
# The API socket is root's only (KUKEON_API_SOCKET_GROUP="" below); for a group of admins
# add -e KUKEON_API_SOCKET_GROUP=<the host's gid of that group>.
# The Helm chart (charts/kukeon) sets all of this up for Kubernetes nodes; docs/install.md
# covers the other ways (systemd, pip).
# ---------------------------------------------------------------------------------------------

# Any Debian-based image with python3 (>= 3.11) and its venv module. The official slim image
# is the default; offline builds pass a base made locally (hack/build-image.sh --offline).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# A directory of the build context holding every wheel the build needs (the project's
# dependencies, setuptools and wheel). Empty means: use the package index.
ARG WHEELHOUSE=
WORKDIR /src
COPY . .
RUN set -eu; \
    pip_source=""; \
    if [ -n "$WHEELHOUSE" ]; then pip_source="--no-index --find-links /src/$WHEELHOUSE"; fi; \
    python3 -m venv /opt/kukeon; \
    /opt/kukeon/bin/pip wheel --no-cache-dir --disable-pip-version-check $pip_source \
        --no-deps --wheel-dir /dist /src; \
    /opt/kukeon/bin/pip install --no-cache-dir --disable-pip-version-check $pip_source \
        -c /src/constraints.txt /dist/kukeon-*.whl; \
    test -x /opt/kukeon/bin/kukectl; \
    test -x /opt/kukeon/bin/kukeond

FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.0.0+unknown
ARG SOURCE=https://github.com/eminwux/kukeon
ARG REVISION=
LABEL org.opencontainers.image.title="kukeon" \
      org.opencontainers.image.description="kukectl and kukeond: a Kubernetes-style control plane for containerd workloads on hosts you own" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

# kukeond runs nft (egress rules) and iptables (CNI leftovers) itself; the CNI plugins come
# from the host. A base that already has both (the offline one) needs no package index.
RUN set -eu; \
    if ! command -v nft >/dev/null || ! command -v iptables >/dev/null; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nftables iptables; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    if ! id kukeon >/dev/null 2>&1; then \
        useradd --uid 10001 --user-group --create-home --home-dir /home/kukeon \
            --shell /usr/sbin/nologin kukeon; \
    fi; \
    install -d -m 0755 /etc/kukeon

COPY --from=builder /opt/kukeon /opt/kukeon
# The API socket is root's only: the image's group kukeon (gid 10001) means whoever holds
# gid 10001 on the host, and its members would be root there. Give the host's gid of the
# group meant to be kukeond's admins (-e KUKEON_API_SOCKET_GROUP=GID, or the flag
# --api-socket-group); this variable beats apiSocketGroup in a configuration file.
ENV PATH=/opt/kukeon/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUKEON_API_SOCKET_GROUP=""

# Healthy when kukeond's API answers GET /healthz with 200 on its unix socket
# (<runDir>/kukeond.sock; runDir follows KUKEON_RUN_DIR like kukeond itself).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/kukeon/bin/python", "-c", "import os, socket, sys; path = os.path.join(os.environ.get('KUKEON_RUN_DIR') or '/run/kukeon', 'kukeond.sock'); s = socket.socket(socket.AF_UNIX); s.settimeout(4); s.connect(path); s.sendall(b'GET /healthz HTTP/1.0\\r\\nHost: kukeond\\r\\n\\r\\n'); status = s.recv(64).split(b' ')[1:2]; sys.exit(0 if status == [b'200'] else 1)"]

# kukectl works unprivileged (against a TCP API with a token, or a socket it may open);
# kukeond must be run with --user 0 and the host access listed at the top of this file.
USER kukeon
WORKDIR /home/kukeon
CMD ["kukectl", "--help"]
