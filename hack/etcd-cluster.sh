#!/usr/bin/env bash
# Starts or stops a 3-member etcd cluster on loopback ports, for failover work by hand.
# Everything (data, logs, pids, the endpoint list, the certificates) lives in the directory
# you name, so several clusters can run side by side and `stop` + `start` keeps the data.
# The members speak mutual TLS only, clients and peers alike, with the certificates
# kukeond's embedded etcd uses (made by `python -m kukeon.store.pki` in DIR/pki).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<'USAGE'
Usage: hack/etcd-cluster.sh start DIR [--base-port N]
       hack/etcd-cluster.sh stop DIR
       hack/etcd-cluster.sh status DIR

start   Start members m0, m1, m2 (idempotent: running members are left alone) and wait
        until the cluster is healthy. Member i listens for clients on 127.0.0.1:N+2i and
        for peers on 127.0.0.1:N+2i+1 (N defaults to 32379, or to the port the directory
        was first started with). Prints the client endpoints, also kept in DIR/endpoints.
        Clients must show DIR/pki/client.crt (key DIR/pki/client.key) and trust
        DIR/pki/ca.crt; plaintext and certificate-less clients are refused.
stop    Stop the members (SIGTERM, then SIGKILL after 10 s); data stays in DIR.
status  Print each member's pid and health.

Use with kukeon:  kukeond --etcd-endpoints "$(cat DIR/endpoints)" \
                      --etcd-ca-file DIR/pki/ca.crt \
                      --etcd-cert-file DIR/pki/client.crt --etcd-key-file DIR/pki/client.key
With etcdctl:     etcdctl --endpoints "$(cat DIR/endpoints)" --cacert DIR/pki/ca.crt \
                      --cert DIR/pki/client.crt --key DIR/pki/client.key endpoint health
USAGE
}

members=(m0 m1 m2)

die() { echo "etcd-cluster: $*" >&2; exit 1; }

pid_of() {
    local pidfile="$1/$2.pid" pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ -r /proc/$pid/cmdline ]] \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--name $2 " || return 1
    echo "$pid"
}

client_port() { echo $(( $1 + 2 * $2 )); }
peer_port() { echo $(( $1 + 2 * $2 + 1 )); }

# The PKI of DIR (made or kept): the venv's python when there is one.
make_pki() {
    local python=$ROOT/.venv/bin/python
    [[ -x $python ]] || python=python3
    PYTHONPATH="$ROOT/operator${PYTHONPATH:+:$PYTHONPATH}" "$python" -m kukeon.store.pki "$1/pki" \
        || die "cannot make the certificates in $1/pki (python with kukeon's dependencies needed)"
}

healthy() {
    local pki=$1/pki
    curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/client.crt" \
        --key "$pki/client.key" "https://127.0.0.1:$2/health" 2>/dev/null \
        | grep -q '"health":"true"'
}

cmd_start() {
    local dir="$1" base="$2" etcd i name client peer initial="" endpoints=""
    etcd=$(command -v etcd) || die "etcd is not installed (Debian package etcd-server)"
    command -v curl >/dev/null || die "curl is not installed"
    mkdir -p "$dir"
    if [[ -z $base ]]; then
        if [[ -f $dir/base-port ]]; then base=$(<"$dir/base-port"); else base=32379; fi
    elif [[ -f $dir/base-port && $(<"$dir/base-port") != "$base" ]]; then
        die "$dir was created with --base-port $(<"$dir/base-port"); its members keep those ports"
    fi
    [[ $base =~ ^[0-9]+$ ]] || die "--base-port must be a number, got '$base'"
    echo "$base" >"$dir/base-port"
    make_pki "$dir"
    local pki=$dir/pki

    for i in "${!members[@]}"; do
        initial+="${initial:+,}${members[$i]}=https://127.0.0.1:$(peer_port "$base" "$i")"
        endpoints+="${endpoints:+,}https://127.0.0.1:$(client_port "$base" "$i")"
    done
    for i in "${!members[@]}"; do
        name=${members[$i]}
        if pid_of "$dir" "$name" >/dev/null; then continue; fi
        client="https://127.0.0.1:$(client_port "$base" "$i")"
        peer="https://127.0.0.1:$(peer_port "$base" "$i")"
        setsid "$etcd" --name "$name" --data-dir "$dir/$name.data" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$initial" --initial-cluster-token "kukeon-$base" \
            --initial-cluster-state new --logger zap --log-level warn \
            --client-cert-auth --trusted-ca-file "$pki/ca.crt" \
            --cert-file "$pki/member.crt" --key-file "$pki/member.key" \
            --peer-client-cert-auth --peer-trusted-ca-file "$pki/ca.crt" \
            --peer-cert-file "$pki/member.crt" --peer-key-file "$pki/member.key" \
            --peer-cert-allowed-cn kukeon-etcd-member \
            </dev/null >>"$dir/$name.log" 2>&1 &
        echo $! >"$dir/$name.pid"
    done
    echo "$endpoints" >"$dir/endpoints"

    local deadline=$((SECONDS + 30)) ok
    while :; do
        ok=0
        for i in "${!members[@]}"; do
            pid_of "$dir" "${members[$i]}" >/dev/null \
                || die "member ${members[$i]} exited; see $dir/${members[$i]}.log"
            if healthy "$dir" "$(client_port "$base" "$i")"; then ok=$((ok + 1)); fi
        done
        (( ok == ${#members[@]} )) && break
        (( SECONDS < deadline )) || die "cluster not healthy after 30 s; see $dir/*.log"
        sleep 0.2
    done
    echo "$endpoints"
}

cmd_stop() {
    local dir="$1" name pid pids=() waited=0
    for name in "${members[@]}"; do
        if pid=$(pid_of "$dir" "$name"); then pids+=("$pid"); fi
    done
    # All at once: stopped one by one, each survivor first waits for a new leader.
    if (( ${#pids[@]} )); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        while (( waited < 100 )); do
            local alive=0
            for pid in "${pids[@]}"; do
                if kill -0 "$pid" 2>/dev/null; then alive=1; fi
            done
            (( alive )) || break
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    for name in "${members[@]}"; do rm -f "$dir/$name.pid"; done
}

cmd_status() {
    local dir="$1" base i name pid state
    [[ -f $dir/base-port ]] || die "$dir holds no cluster"
    base=$(<"$dir/base-port")
    for i in "${!members[@]}"; do
        name=${members[$i]}
        if pid=$(pid_of "$dir" "$name"); then
            if healthy "$dir" "$(client_port "$base" "$i")"; then state=healthy; else state=unhealthy; fi
            echo "$name pid $pid https://127.0.0.1:$(client_port "$base" "$i") $state"
        else
            echo "$name stopped"
        fi
    done
}

main() {
    local action="${1:-}"
    case $action in
        -h | --help | help) usage; return 0 ;;
        start | stop | status) ;;
        *) usage >&2; return 2 ;;
    esac
    shift
    local dir="${1:-}" base=""
    [[ -n $dir ]] || { usage >&2; return 2; }
    shift
    while (( $# )); do
        case $1 in
            --base-port) base="${2:-}"; shift 2 || die "--base-port needs a value" ;;
            -h | --help) usage; return 0 ;;
            *) die "unknown argument '$1'" ;;
        esac
    done
    dir=$(realpath -m "$dir")
    "cmd_$action" "$dir" "$base"
}

main "$@"
