#!/usr/bin/env bash
# Removes a fleet started by hack/fleet-up.sh DIR: kukeonds, their workloads, containerds,
# etcd members, network namespaces, the bridge, cgroup roots, nft tables and DIR itself.
# Safe to run twice and after a half-failed fleet-up.
set -euo pipefail

usage() { echo "usage: hack/fleet-down.sh DIR   (DIR as given to hack/fleet-up.sh)"; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -eq 1 ]] || { usage >&2; exit 1; }
DIR=$1
[[ -f $DIR/id ]] || { echo "fleet-down: $DIR holds no fleet" >&2; exit 0; }
ID=$(<"$DIR/id")
NODES=$(<"$DIR/nodes")

stop_pid() {  # pidfile [signal]: SIGTERM (or the signal), then SIGKILL after 10 s
    local pidfile=$1 signal=${2:-15} pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

# Each stop takes a moment (up to 10 s): every kukeond at once, then every containerd.
for i in $(seq 1 "$NODES"); do stop_pid "$DIR/n$i/kukeond.pid" & done
wait
# Tasks are deleted through their containerd, so runc's shared state root
# (/run/containerd/runc/<namespace>) keeps nothing of this fleet.
for i in $(seq 1 "$NODES"); do
    socket=$DIR/n$i/containerd/containerd.sock
    [[ -S $socket ]] || continue
    for namespace in $(ctr --address "$socket" namespaces ls -q 2>/dev/null); do
        for task in $(ctr --address "$socket" -n "$namespace" tasks ls -q 2>/dev/null); do
            ctr --address "$socket" -n "$namespace" tasks kill -a -s SIGKILL "$task" 2>/dev/null \
                || true
        done
        for task in $(ctr --address "$socket" -n "$namespace" tasks ls -q 2>/dev/null); do
            for _ in $(seq 50); do
                ctr --address "$socket" -n "$namespace" tasks delete "$task" 2>/dev/null && break
                sleep 0.1
            done
        done
        for container in $(ctr --address "$socket" -n "$namespace" containers ls -q 2>/dev/null); do
            ctr --address "$socket" -n "$namespace" containers delete "$container" 2>/dev/null \
                || true
        done
    done
done
for i in $(seq 1 "$NODES"); do stop_pid "$DIR/n$i/containerd/pid" & done
wait
for i in $(seq 1 "$NODES"); do
    host=$DIR/n$i
    # The node's cgroup root: one directory on cgroup v2, one per mounted controller
    # hierarchy (cpu, memory, pids, name=systemd ...) on v1 and hybrid hosts.
    cgroups=()
    for cgroup in /sys/fs/cgroup/kukeon-fleet-"$ID"-n"$i" /sys/fs/cgroup/*/kukeon-fleet-"$ID"-n"$i"; do
        [[ -d $cgroup ]] && cgroups+=("$cgroup")
    done
    # The workloads: every process left in the node's cgroup root (shims are outside it).
    for cgroup in "${cgroups[@]}"; do
        find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null \
            | while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done
    done
    stop_pid "$host/containerd/pid"
    # Shims of this containerd (they name its socket on their command line).
    for pid in $(pgrep -f "containerd-shim.*-address $host/containerd/containerd.sock" || true); do
        kill -9 "$pid" 2>/dev/null || true
    done
    for cgroup in "${cgroups[@]}"; do
        for _ in $(seq 20); do  # killed tasks leave their cgroups a moment later
            find "$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true
            [[ -d $cgroup ]] || break
            sleep 0.1
        done
    done
    # The egress table lives in the host's own namespace and goes with it.
    ip netns delete "kf-$ID-$i" 2>/dev/null || true
done
# etcd's data goes with DIR: SIGKILL (members stopped together on SIGTERM each wait for
# the others to take their leadership, seconds for nothing).
for m in 0 1 2; do stop_pid "$DIR/etcd/m$m/pid" 9 & done
wait
ip link delete "kf-$ID" 2>/dev/null || true
# Rootfs and netns bind mounts left below DIR, deepest first.
awk -v dir="$DIR" '$2 ~ "^"dir {print $2}' /proc/self/mounts | sort -r | while read -r target; do
    umount -l "$target" 2>/dev/null || true
done
rm -rf "$DIR"
echo "fleet $ID down"
