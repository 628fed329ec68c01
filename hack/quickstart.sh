#!/usr/bin/env bash
# Bring kukeon up on this host and run the sample cell of examples/hello.yaml.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/quickstart.sh [--stop]

On a Debian 12 host, as root:
  1. installs the host packages and kukeon (hack/install-deps.sh), and links kukectl and
     kukeond into /usr/local/bin;
  2. starts containerd if it is not answering on /run/containerd/containerd.sock;
  3. starts kukeond with its embedded etcd if it is not running (log /var/log/kukeond.log;
     etcd on unix sockets in /var/lib/kukeon/etcd, mutual TLS only; /metrics on
     127.0.0.1:9464 asks for the bearer token kukeond generates in
     /var/lib/kukeon/metrics-token);
  4. builds the busybox test image (hack/make-test-image.sh) and imports it;
  5. applies examples/hello.yaml, waits until the cell is Ready, prints `kukectl get cells`
     and the page served from the cell's IP.
Running it again is harmless. --stop stops the kukeond it started (workloads keep running;
delete them first with `kukectl delete realm hello --cascade --wait`).
USAGE
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run_dir=/run/kukeon
state_dir=/var/lib/kukeon
socket=$run_dir/kukeond.sock
pid_file=$run_dir/kukeond.pid
containerd_socket=/run/containerd/containerd.sock

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    --stop)
        if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            pid=$(cat "$pid_file")
            kill -TERM "$pid"
            # kukeond bounds each shutdown step; past a minute something is wrong.
            for _ in $(seq 600); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "quickstart: kukeond (pid $pid) did not stop within 60s; killing it" >&2
                # Its embedded etcd also dies with it (parent-death signal); this is for
                # an etcd started by an older kukeond.
                pkill -KILL -P "$pid" 2>/dev/null || true
                kill -KILL "$pid" 2>/dev/null || true
            fi
            echo "quickstart: kukeond stopped (workloads keep running)"
        else
            echo "quickstart: kukeond is not running"
        fi
        exit 0 ;;
    "") ;;
    *) echo "quickstart: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    echo "quickstart: run as root (kukeond manages containerd, cgroups and networks)" >&2
    exit 1
fi

step() { printf '\n== %s\n' "$*"; }

step "installing host packages and kukeon"
bash "$repo_root/hack/install-deps.sh"
for tool in kukectl kukeond; do
    ln -sfn "$repo_root/.venv/bin/$tool" "/usr/local/bin/$tool"
done

step "containerd"
# No socket, no containerd: ctr would wait out its 10 s dial timeout to say so.
if [[ -S $containerd_socket ]] && ctr --address "$containerd_socket" version >/dev/null 2>&1; then
    echo "containerd is running"
elif [[ -d /run/systemd/system ]] && systemctl start containerd 2>/dev/null; then
    echo "containerd started by systemd"
else
    mkdir -p /run/containerd
    # Root's, as kukeond's log: it names every image, container and mount it handles.
    touch /var/log/containerd.log && chmod 0640 /var/log/containerd.log
    nohup containerd >/var/log/containerd.log 2>&1 &
    echo "containerd started (log /var/log/containerd.log)"
fi
for _ in $(seq 1 60); do
    ctr --address "$containerd_socket" version >/dev/null 2>&1 && break
    sleep 0.5
done
ctr --address "$containerd_socket" version >/dev/null

step "kukeond"
ready() { curl -fsS --unix-socket "$socket" http://kukeond/readyz >/dev/null 2>&1; }
if ready; then
    echo "kukeond is running"
else
    # Its log and pid file are for root (and kukeond narrows its directories at start).
    umask 027
    mkdir -p "$run_dir" "$state_dir"
    touch /var/log/kukeond.log && chmod 0640 /var/log/kukeond.log
    # /metrics asks for the token kukeond generates at its first start in $state_dir/metrics-token
    # (root's, 0600; kept across restarts): no other local account reads every realm's series.
    nohup kukeond --state-dir "$state_dir" --run-dir "$run_dir" >>/var/log/kukeond.log 2>&1 &
    echo $! > "$pid_file"
    echo "kukeond started (pid $(cat "$pid_file"), log /var/log/kukeond.log)"
    for _ in $(seq 1 120); do
        ready && break
        if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
            echo "quickstart: kukeond exited; last log lines:" >&2
            tail -20 /var/log/kukeond.log >&2
            exit 1
        fi
        sleep 0.5
    done
    ready
fi
export KUKEON_SERVER="unix://$socket"

step "test image"
image_archive=$state_dir/busybox-test.tar
if [[ ! -f $image_archive ]]; then
    bash "$repo_root/hack/make-test-image.sh" "$image_archive" >/dev/null
fi
kukectl image import "$image_archive"

step "kukectl apply -f examples/hello.yaml"
kukectl apply -f "$repo_root/examples/hello.yaml"
scope=(--realm hello --space web --stack site)
kukectl wait cell/hello --for=state=Ready --timeout=120s "${scope[@]}"

step "kukectl get cells"
kukectl get cells "${scope[@]}"

step "the page, fetched from the cell's IP"
ip=$(kukectl get cell hello -o json "${scope[@]}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["status"]["network"]["ip"])')
for _ in $(seq 1 20); do
    if page=$(curl -fsS --max-time 2 "http://$ip/"); then
        echo "$page"
        exit 0
    fi
    sleep 0.5
done
echo "quickstart: the cell is Ready but http://$ip/ did not answer" >&2
exit 1
