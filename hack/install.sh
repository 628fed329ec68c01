#!/usr/bin/env bash
# Install kukeon on a host the way an operator runs it without Kubernetes: the package in its
# own virtualenv, kukectl/kukeond on PATH, the systemd unit, a default configuration and
# bash completion. Safe to run again: it upgrades the package and never overwrites a
# configuration the operator has edited.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/install.sh [OPTIONS]

Install kukeon (run as root):
  /opt/kukeon                          virtualenv with the kukeon package
  /usr/local/bin/kukectl, kukeond      links into the virtualenv
  /etc/kukeon/kukeond.yaml             default configuration (kept if it already exists)
  /etc/kukeon/metrics-token            the bearer token /metrics asks for (kept if it exists;
                                       0640 group prometheus when that group exists, else 0600)
  /etc/systemd/system/kukeond.service  the unit (hack/kukeond.service)
  /etc/systemd/system/kukeond.service.d/etcd.conf.example
                                       drop-in example for an external etcd (rename to .conf)
  /etc/bash_completion.d/kukectl       from `kukectl completion bash`, when kukectl has it

Options:
  --source SPEC      what pip installs: a wheel, a directory or a requirement
                     (default: this repository)
  --wheelhouse DIR   install offline, from the wheels in DIR only
  --root DIR         install below DIR instead of / (packaging, tests); systemctl is not run
  --enable           systemctl enable --now kukeond after installing
  --no-systemd       do not install the unit and drop-in example
  --no-completion    do not install bash completion
  -h, --help         show this help

Needs python3 (>= 3.11) with the venv module (Debian: python3-venv), containerd, runc and
the CNI plugins (hack/install-deps.sh --no-venv installs those).
USAGE
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source_spec="$repo_root"
wheelhouse=""
root=""
enable=0
with_systemd=1
with_completion=1

while [[ $# -gt 0 ]]; do
    case "$1" in
        --source) source_spec="$2"; shift 2 ;;
        --wheelhouse) wheelhouse="$2"; shift 2 ;;
        --root) root="${2%/}"; shift 2 ;;
        --enable) enable=1; shift ;;
        --no-systemd) with_systemd=0; shift ;;
        --no-completion) with_completion=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z $root && $(id -u) -ne 0 ]]; then
    echo "install: run as root (or give --root DIR to install into a directory)" >&2
    exit 1
fi
if [[ -n $root && $enable -eq 1 ]]; then
    echo "install: --enable cannot be combined with --root" >&2
    exit 2
fi
python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "install: needs python3 >= 3.11 with the venv module (Debian: python3-venv)" >&2
    exit 1
}

venv="$root/opt/kukeon"
bindir="$root/usr/local/bin"
confdir="$root/etc/kukeon"
unitdir="$root/etc/systemd/system"
completiondir="$root/etc/bash_completion.d"

# Copy only when the content differs, so a second run changes nothing (and says so).
install_file() {
    local mode="$1" src="$2" dest="$3"
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
        echo "install: $dest is up to date"
        return
    fi
    install -D -m "$mode" "$src" "$dest"
    echo "install: wrote $dest"
}

echo "install: kukeon into $venv"
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
pip_args=(--quiet --disable-pip-version-check --upgrade)
if [[ -n $wheelhouse ]]; then
    pip_args+=(--no-index --find-links "$wheelhouse")
fi
# The dependency versions kukeon is tested with, when installing from this repository.
if [[ -f $repo_root/constraints.txt ]]; then
    pip_args+=(-c "$repo_root/constraints.txt")
fi
"$venv/bin/python" -m pip install "${pip_args[@]}" "$source_spec"
version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("kukeon"))')
echo "install: kukeon $version installed"
# kukectl's command tree described once here, so no user's first TAB imports every command.
if ! "$venv/bin/python" -m kukeon.cli.completion prebuild >/dev/null; then
    echo "install: could not describe kukectl's commands; completion works, its first TAB is slower" >&2
fi

mkdir -p "$bindir"
for command in kukectl kukeond; do
    ln -sfn "/opt/kukeon/bin/$command" "$bindir/$command"
done

if [[ -f $repo_root/docs/install.md ]]; then
    install_file 0644 "$repo_root/docs/install.md" "$venv/share/doc/kukeon/install.md"
fi

# The token kukeond's /metrics asks for, where Prometheus' group reads it when Debian's
# prometheus is installed (without metricsTokenFile, kukeond asks for one it generates in
# its state directory, which only root reads).
write_metrics_token() {
    local token_file="$confdir/metrics-token" group=root mode=0600
    if [[ -f $token_file ]]; then
        echo "install: $token_file exists, left as it is"
        return
    fi
    if getent group prometheus >/dev/null && [[ $(id -u) -eq 0 ]]; then
        group=prometheus mode=0640
    fi
    (
        umask 077
        "$venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$scratch/metrics-token"
    )
    if [[ $(id -u) -eq 0 ]]; then
        install -D -m "$mode" -o root -g "$group" "$scratch/metrics-token" "$token_file"
    else  # --root as another user (packaging): the file is that user's
        install -D -m "$mode" "$scratch/metrics-token" "$token_file"
    fi
    echo "install: wrote $token_file (mode $mode, group $group)"
    if ! grep -qs '^metricsTokenFile:' "$confdir/kukeond.yaml"; then
        echo "install: $confdir/kukeond.yaml names no metricsTokenFile: /metrics asks for the" \
            "token kukeond generates in its state directory, which only root reads; for" \
            "Prometheus' group add 'metricsTokenFile: /etc/kukeon/metrics-token'" \
            "(docs/install.md#metrics)" >&2
    fi
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [[ -f $confdir/kukeond.yaml ]]; then
    echo "install: $confdir/kukeond.yaml exists, left as it is"
else
    cat >"$scratch/kukeond.yaml" <<'YAML'
# kukeond configuration. Every key is a field of DaemonConfig
# (operator/kukeon/daemon/config.py); KUKEON_<FIELD> variables and flags override them.
# No etcdEndpoints: kukeond runs an embedded single-member etcd under stateDir.
# etcdEndpoints: [https://etcd-1.example.internal:2379]
containerdAddress: /run/containerd/containerd.sock
stateDir: /var/lib/kukeon
runDir: /run/kukeon
cgroupRoot: /kukeon
cniBinDirs: [/usr/lib/cni, /opt/cni/bin]
cniConfDir: /etc/cni/net.d
metricsAddress: 127.0.0.1:9464
# The bearer token /metrics asks for (Prometheus: authorization: {credentials_file: ...}).
metricsTokenFile: /etc/kukeon/metrics-token
logLevel: info
YAML
    install_file 0644 "$scratch/kukeond.yaml" "$confdir/kukeond.yaml"
fi
write_metrics_token

if [[ $with_systemd -eq 1 ]]; then
    install_file 0644 "$repo_root/hack/kukeond.service" "$unitdir/kukeond.service"
    install_file 0644 "$repo_root/hack/kukeond.service.d/etcd.conf" \
        "$unitdir/kukeond.service.d/etcd.conf.example"
    if [[ -z $root && -d /run/systemd/system ]]; then
        systemctl daemon-reload
        if [[ $enable -eq 1 ]]; then
            systemctl enable --now kukeond.service
        fi
    elif [[ $enable -eq 1 ]]; then
        echo "install: systemd is not running here; kukeond was not enabled" >&2
    fi
fi

if [[ $with_completion -eq 1 ]]; then
    if "$venv/bin/kukectl" completion bash >"$scratch/kukectl.bash" 2>/dev/null &&
        [[ -s $scratch/kukectl.bash ]]; then
        install_file 0644 "$scratch/kukectl.bash" "$completiondir/kukectl"
    else
        echo "install: kukectl has no working 'completion bash' command; bash completion not installed"
    fi
fi
echo "install: done"
