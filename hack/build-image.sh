#!/usr/bin/env bash
# Build kukeon's container image from the Dockerfile with buildah, online (from the official
# python:slim base and PyPI) or fully offline (a Debian base made here by debootstrap and a
# wheelhouse downloaded beforehand), so CI and air-gapped hosts need no container registry.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/build-image.sh [OPTIONS]

Build the kukeon image (Dockerfile at the repository root) with buildah.

  --tag NAME            image name (default: localhost/kukeon:<version from pyproject>)
  --offline             build without any network: the base image is localhost/kukeon-base
                        (made with debootstrap the first time, then reused from the cache) and
                        every wheel comes from a wheelhouse prepared before the build
  --base-image REF      base image for both stages (default: the Dockerfile's python:slim,
                        or localhost/kukeon-base with --offline)
  --oci-archive PATH    also write the image to PATH as an OCI archive (for `ctr images import`)
  --storage-dir DIR     private buildah storage (DIR/root, DIR/runroot; driver overlay, or
                        $BUILDAH_STORAGE_DRIVER) instead of the host's
  --cache-dir DIR       where the debootstrap rootfs and the wheelhouse (DIR/wheelhouse) are
                        kept between runs
                        (default: ${XDG_CACHE_HOME:-~/.cache}/kukeon/image)
  --mirror URL          Debian mirror for debootstrap (default: $DEBIAN_MIRROR or
                        http://deb.debian.org/debian)
  --base-only           only make localhost/kukeon-base (implies --offline)
  -h, --help            show this help

Needs root, buildah, and for --offline also debootstrap and python3 with pip. Running it
again rebuilds the image under the same name; the cached base and wheels are reused.
USAGE
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo_root/pyproject.toml" | head -n1)
tag=""
offline=0
base_only=0
base_image=""
oci_archive=""
storage_dir=""
cache_dir="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/kukeon/image"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
# What the offline base holds: python with venv for the wheel, nft and iptables for kukeond.
base_packages=python3,python3-venv,ca-certificates,nftables,iptables
base_name=localhost/kukeon-base

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --offline) offline=1; shift ;;
        --base-only) offline=1; base_only=1; shift ;;
        --base-image) base_image="$2"; shift 2 ;;
        --oci-archive) oci_archive="$2"; shift 2 ;;
        --storage-dir) storage_dir="$2"; shift 2 ;;
        --cache-dir) cache_dir="$2"; shift 2 ;;
        --mirror) mirror="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-image: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z $version ]]; then
    echo "build-image: no version found in $repo_root/pyproject.toml" >&2
    exit 1
fi
tag="${tag:-localhost/kukeon:$version}"
command -v buildah >/dev/null || { echo "build-image: buildah not found (Debian package buildah)" >&2; exit 1; }

buildah_cmd=(buildah)
if [[ -n $storage_dir ]]; then
    mkdir -p "$storage_dir/root" "$storage_dir/runroot"
    buildah_cmd+=(--root "$storage_dir/root" --runroot "$storage_dir/runroot" --storage-driver "${BUILDAH_STORAGE_DRIVER:-overlay}")
fi

work=$(mktemp -d)
cleanup() {
    if [[ -n ${base_container:-} ]]; then
        "${buildah_cmd[@]}" umount "$base_container" >/dev/null 2>&1 || true
        "${buildah_cmd[@]}" rm "$base_container" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The base rootfs is cached as a tar named after what it holds, so a change of suite or
# package list makes a new one instead of reusing a stale one.
make_base() {
    if "${buildah_cmd[@]}" inspect --type image "$base_name" >/dev/null 2>&1; then
        echo "build-image: $base_name already present"
        return
    fi
    local key rootfs_tar
    key=$(printf '%s %s' "$suite" "$base_packages" | sha256sum | cut -c1-12)
    rootfs_tar="$cache_dir/debian-$suite-$key.tar"
    mkdir -p "$cache_dir"
    if [[ ! -s $rootfs_tar ]]; then
        command -v debootstrap >/dev/null ||
            { echo "build-image: debootstrap not found (Debian package debootstrap)" >&2; exit 1; }
        echo "build-image: debootstrap $suite ($base_packages) from $mirror"
        debootstrap --variant=minbase --include="$base_packages" "$suite" "$work/rootfs" "$mirror" \
            >"$work/debootstrap.log" 2>&1 ||
            { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
        # Package caches and lists are rebuilt by `apt-get update` whenever they are needed.
        rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
            "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man" "$work/rootfs/usr/share/locale"
        tar -C "$work/rootfs" --numeric-owner -cf "$rootfs_tar.partial" .
        mv "$rootfs_tar.partial" "$rootfs_tar"
        rm -rf "$work/rootfs"
    fi
    base_container=$("${buildah_cmd[@]}" from scratch)
    local mountpoint
    mountpoint=$("${buildah_cmd[@]}" mount "$base_container")
    tar -C "$mountpoint" --numeric-owner -xf "$rootfs_tar"
    "${buildah_cmd[@]}" umount "$base_container" >/dev/null
    "${buildah_cmd[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash --label org.opencontainers.image.title=kukeon-base \
        "$base_container"
    "${buildah_cmd[@]}" commit --quiet "$base_container" "$base_name" >/dev/null
    "${buildah_cmd[@]}" rm "$base_container" >/dev/null
    base_container=""
    echo "build-image: made $base_name from $rootfs_tar"
}

# Every wheel the builder stage installs (binary wheels for the image's CPython 3.11 on
# glibc x86_64, whatever python runs this script), plus what pip needs to build the project.
make_wheelhouse() {
    local wheelhouse="$1" platform
    local platform_args=()
    for platform in manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
        manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux_2_36; do
        platform_args+=(--platform "${platform}_x86_64")
    done
    mkdir -p "$wheelhouse"
    python3 - "$repo_root/pyproject.toml" >"$work/requirements.txt" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)
print("\n".join(project["project"]["dependencies"]))
print("\n".join(project["build-system"]["requires"]))
PY
    # Asking the index again is only needed when the requirements or their pins changed.
    local stamp="$wheelhouse/.requirements.sha256" wanted
    wanted=$(cat "$work/requirements.txt" "$repo_root/constraints.txt" | sha256sum | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]]; then
        echo "build-image: wheelhouse $wheelhouse is up to date"
        return
    fi
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --implementation cp --python-version 3.11 "${platform_args[@]}" \
        --dest "$wheelhouse" -r "$work/requirements.txt" -c "$repo_root/constraints.txt"
    echo "$wanted" >"$stamp"
}

if [[ $offline -eq 1 ]]; then
    make_base
    [[ $base_only -eq 1 ]] && exit 0
    base_image="${base_image:-$base_name}"
fi

# A minimal context: what the wheel is built from, and the wheelhouse when offline.
context="$work/context"
mkdir -p "$context"
cp "$repo_root/pyproject.toml" "$repo_root/README.md" "$repo_root/constraints.txt" "$context/"
cp -r "$repo_root/operator" "$context/operator"
find "$context/operator" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
build_args=(--build-arg "VERSION=$version")
revision=$(git -C "$repo_root" rev-parse HEAD 2>/dev/null || true)
[[ -n $revision ]] && build_args+=(--build-arg "REVISION=$revision")
[[ -n $base_image ]] && build_args+=(--build-arg "BASE_IMAGE=$base_image")
network=()
isolation=(--isolation "${BUILDAH_ISOLATION:-oci}")
if [[ $offline -eq 1 ]]; then
    make_wheelhouse "$cache_dir/wheelhouse"
    cp -r "$cache_dir/wheelhouse" "$context/wheelhouse"
    build_args+=(--build-arg WHEELHOUSE=wheelhouse)
    network=(--network none --pull=never)
fi

echo "build-image: building $tag"
# --format docker keeps HEALTHCHECK (the OCI image config has no field for it).
"${buildah_cmd[@]}" bud --quiet --format docker "${isolation[@]}" "${network[@]}" \
    "${build_args[@]}" -f "$repo_root/Dockerfile" -t "$tag" "$context"

if [[ -n $oci_archive ]]; then
    rm -f "$oci_archive"
    "${buildah_cmd[@]}" push --quiet "$tag" "oci-archive:$oci_archive:$tag"
    echo "build-image: wrote $oci_archive"
fi
echo "build-image: done: $tag"
