#!/usr/bin/env bash
# Starts or stops a 3-member etcd cluster on loopback ports, for failover work by hand.
# Everything (data, logs, pids, the endpoint list) lives in the directory you name, so
# several clusters can run side by side and `stop` + `start` keeps the data.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/etcd-cluster.sh start DIR [--base-port N]
       hack/etcd-cluster.sh stop DIR
       hack/etcd-cluster.sh status DIR

start   Start members m0, m1, m2 (idempotent: running members are left alone) and wait
        until the cluster is healthy. Member i listens for clients on 127.0.0.1:N+2i and
        for peers on 127.0.0.1:N+2i+1 (N defaults to 32379, or to the port the directory
        was first started with). Prints the client endpoints, also kept in DIR/endpoints.
stop    Stop the members (SIGTERM, then SIGKILL after 10 s); data stays in DIR.
status  Print each member's pid and health.

Use with kukeon:  kukeond --etcd-endpoints "$(cat DIR/endpoints)"
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

healthy() {
    curl -fsS --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"health":"true"'
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

    for i in "${!members[@]}"; do
        initial+="${initial:+,}${members[$i]}=http://127.0.0.1:$(peer_port "$base" "$i")"
        endpoints+="${endpoints:+,}127.0.0.1:$(client_port "$base" "$i")"
    done
    for i in "${!members[@]}"; do
        name=${members[$i]}
        if pid_of "$dir" "$name" >/dev/null; then continue; fi
        client="http://127.0.0.1:$(client_port "$base" "$i")"
        peer="http://127.0.0.1:$(peer_port "$base" "$i")"
        setsid "$etcd" --name "$name" --data-dir "$dir/$name.data" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$initial" --initial-cluster-token "kukeon-$base" \
            --initial-cluster-state new --logger zap --log-level warn \
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
            if healthy "$(client_port "$base" "$i")"; then ok=$((ok + 1)); fi
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
            if healthy "$(client_port "$base" "$i")"; then state=healthy; else state=unhealthy; fi
            echo "$name pid $pid 127.0.0.1:$(client_port "$base" "$i") $state"
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
