#!/usr/bin/env bash
# Install what kukeon needs on a Debian 12 host, idempotently: the host packages and the
# project itself (editable, with its dev extras) in a virtualenv at ./.venv.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/install-deps.sh [--with-test-tools] [--no-venv]

Installs with apt (only what is missing): etcd-server, etcd-client, containerd, runc,
containernetworking-plugins, nftables, iptables, busybox-static, iproute2, util-linux,
curl, openssl, python3-venv.
  --with-test-tools  also docker-registry, skopeo, prometheus, shellcheck, buildah,
                     debootstrap, chromium, chromium-driver (used by tests; the web
                     console's e2e test drives Debian's chromium through Playwright, which
                     never downloads a browser of its own)
  --no-venv          skip creating ./.venv and installing the project into it
Must run as root. Running it twice is harmless.
USAGE
}

with_test_tools=0
with_venv=1
for arg in "$@"; do
    case "$arg" in
        --with-test-tools) with_test_tools=1 ;;
        --no-venv) with_venv=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-deps: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(etcd-server etcd-client containerd runc containernetworking-plugins nftables
          iptables busybox-static iproute2 util-linux curl openssl python3-venv python3-pip
          ca-certificates)
if [[ $with_test_tools -eq 1 ]]; then
    packages+=(docker-registry skopeo prometheus shellcheck buildah debootstrap chromium
               chromium-driver)
fi

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-deps: missing packages (${missing[*]}) and not root: run as root" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # policy-rc.d keeps Debian's maintainer scripts from starting etcd/containerd/registry
    # services: kukeon and its tests start their own private instances.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    trap '[[ $created_policy -eq 1 ]] && rm -f "$policy"' EXIT
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ $with_venv -eq 1 ]]; then
    venv="$repo_root/.venv"
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv"
    fi
    # Installed already from the same pyproject.toml and constraints.txt: nothing to do.
    # pip's reinstall removes and rewrites .venv/bin/kukectl and kukeond, so a second run
    # (hack/quickstart.sh again, its e2e test) would break a kukectl starting meanwhile.
    stamp="$venv/.kukeon-installed"
    wanted=$(cat "$repo_root/pyproject.toml" "$repo_root/constraints.txt" | sha256sum)
    if [[ ! -x $venv/bin/kukectl || ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
        "$venv/bin/python" -m pip install -q --upgrade pip
        # The exact versions CI tests (constraints.txt); pyproject.toml says the ranges.
        "$venv/bin/python" -m pip install -q -c "$repo_root/constraints.txt" -e "${repo_root}[dev]"
        printf '%s\n' "$wanted" > "$stamp"
    fi
fi
echo "install-deps: done"
