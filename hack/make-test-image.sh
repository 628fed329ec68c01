#!/usr/bin/env bash
# Build kukeon's test image: an OCI image archive (oci-layout in a tar) holding Debian's
# statically linked busybox, offline and byte-for-byte reproducible, so tests and the
# quickstart never need a registry or the network.
set -euo pipefail

DEFAULT_NAME="kukeon.io/test/busybox:latest"

usage() {
    cat <<USAGE
Usage: hack/make-test-image.sh OUT.tar [NAME[:TAG]]

Write an OCI image archive (an oci-layout directory in a tar, as "ctr images import",
"skopeo copy oci-archive:..." and kukeon's importer read it) to OUT.tar.

The image has one layer: /bin/busybox (from the busybox-static package) with a symlink per
applet (sh, ls, ip, id, ...), /etc/passwd and /etc/group with root and "user" (uid/gid 1000),
/tmp (mode 1777) and the usual empty mount points. Its config runs "sh" with a standard PATH
(and, with STOP_SIGNAL=NAME in the environment, says StopSignal NAME).

NAME defaults to ${DEFAULT_NAME}; without a tag, ":latest" is used. The name is recorded in
index.json ("io.containerd.image.name", and the tag as "org.opencontainers.image.ref.name").

The output is reproducible (fixed timestamps, owners and ordering): running the script twice
writes identical bytes. Needs bash, coreutils, GNU tar, gzip and /bin/busybox.
USAGE
}

if [[ $# -ge 1 && ("$1" == "-h" || "$1" == "--help") ]]; then
    usage
    exit 0
fi
if [[ $# -lt 1 || $# -gt 2 ]]; then
    usage >&2
    exit 2
fi

out="$1"
name="${2:-$DEFAULT_NAME}"
# A tag is whatever follows the last ':' after the last '/'.
last_component="${name##*/}"
if [[ "$last_component" != *:* ]]; then
    name="${name}:latest"
fi
tag="${name##*:}"

busybox="${BUSYBOX:-/bin/busybox}"
if [[ ! -x "$busybox" ]]; then
    echo "make-test-image: $busybox not found (install the busybox-static package)" >&2
    exit 1
fi
ldd_output="$(ldd "$busybox" 2>&1 || true)"
if [[ "$ldd_output" != *"not a dynamic executable"* && "$ldd_output" != *"statically linked"* ]]; then
    echo "make-test-image: $busybox is dynamically linked (install busybox-static)" >&2
    exit 1
fi

case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    armv7l) arch=arm ;;
    ppc64le) arch=ppc64le ;;
    s390x) arch=s390x ;;
    riscv64) arch=riscv64 ;;
    *) arch="$(uname -m)" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
layout="$work/layout"
blobs="$layout/blobs/sha256"
mkdir -p "$rootfs" "$blobs"

# --- the root filesystem ---------------------------------------------------------------
for dir in bin sbin usr/bin usr/sbin etc root home/user tmp proc sys dev run var/tmp; do
    mkdir -p "$rootfs/$dir"
done
install -m 0755 "$busybox" "$rootfs/bin/busybox"
"$busybox" --list-full | LC_ALL=C sort | while IFS= read -r applet; do
    [[ -z "$applet" || "$applet" == "bin/busybox" ]] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
user:x:1000:
nogroup:x:65534:
GROUP
find "$rootfs" -type d -exec chmod 0755 {} +
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
chmod 0700 "$rootfs/root"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"

reproducible_tar() { # $1 = directory to archive, $2 = output tar
    tar --create --file="$2" --directory="$1" \
        --sort=name --format=posix \
        --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
        --mtime='@0' --owner=0 --group=0 --numeric-owner \
        .
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }
store_blob() { # $1 = file; prints its digest hex after moving it into the layout
    local hex
    hex="$(sha256_of "$1")"
    mv "$1" "$blobs/$hex"
    printf '%s' "$hex"
}

# --- the layer ------------------------------------------------------------------------
reproducible_tar "$rootfs" "$work/layer.tar"
diff_id="$(sha256_of "$work/layer.tar")"
gzip -9 -n -c "$work/layer.tar" >"$work/layer.tar.gz"
layer_size="$(size_of "$work/layer.tar.gz")"
layer_hex="$(store_blob "$work/layer.tar.gz")"

# --- config, manifest, index ---------------------------------------------------------
# STOP_SIGNAL (e.g. SIGUSR1): the config's StopSignal, for tests of how containers are stopped.
stop_signal_field=""
if [[ -n "${STOP_SIGNAL:-}" ]]; then
    if [[ ! "$STOP_SIGNAL" =~ ^[A-Z0-9]+$ ]]; then
        echo "make-test-image: STOP_SIGNAL must be a signal name or number" >&2
        exit 2
    fi
    stop_signal_field=',"StopSignal":"'"$STOP_SIGNAL"'"'
fi
printf '%s' \
    '{"architecture":"'"$arch"'","os":"linux","created":"1970-01-01T00:00:00Z",' \
    '"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],' \
    '"Cmd":["sh"],"WorkingDir":"/"'"${stop_signal_field}"'},' \
    '"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},' \
    '"history":[{"created":"1970-01-01T00:00:00Z","created_by":"hack/make-test-image.sh"}]}' \
    >"$work/config.json"
config_size="$(size_of "$work/config.json")"
config_hex="$(store_blob "$work/config.json")"

printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
    '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",' \
    '"digest":"sha256:'"$config_hex"'","size":'"$config_size"'},' \
    '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",' \
    '"digest":"sha256:'"$layer_hex"'","size":'"$layer_size"'}]}' \
    >"$work/manifest.json"
manifest_size="$(size_of "$work/manifest.json")"
manifest_hex="$(store_blob "$work/manifest.json")"

printf '%s' \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",' \
    '"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
    '"digest":"sha256:'"$manifest_hex"'","size":'"$manifest_size"',' \
    '"annotations":{"io.containerd.image.name":"'"$name"'",' \
    '"org.opencontainers.image.ref.name":"'"$tag"'"},' \
    '"platform":{"architecture":"'"$arch"'","os":"linux"}}]}' \
    >"$layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
find "$layout" -type d -exec chmod 0755 {} +
find "$layout" -type f -exec chmod 0644 {} +

# --- the archive, replaced atomically --------------------------------------------------
out_dir="$(dirname "$out")"
mkdir -p "$out_dir"
partial="$(mktemp "$out_dir/.make-test-image.XXXXXX")"
reproducible_tar "$layout" "$partial"
chmod 0644 "$partial"
mv -f "$partial" "$out"
echo "$out: $name sha256:$manifest_hex"
