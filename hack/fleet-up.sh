#!/usr/bin/env bash
# Starts a kukeon fleet on one machine: a 3-member etcd cluster and N kukeond "hosts",
# each in its own network namespace with its own address, its own containerd (own root,
# state and socket), state dir, cgroup root and nft table. hack/fleet-down.sh DIR removes
# everything it made. Every name carries a random id, so fleets never collide.
#
#   hack/fleet-up.sh DIR [--nodes N]
#   kukectl --server unix://DIR/n1/run/kukeond.sock get nodes
#   KUKEON_TOKEN="$(<DIR/admin.token)" kukectl --server https://<host address>:6443 \
#       --certificate-authority DIR/pki/ca.crt get nodes
#   (the token in the environment: every local user reads a command's arguments in /proc)
#   hack/fleet-down.sh DIR
#
# Layout: bridge kf-<id> (10.213.<x>.1/24) in the host namespace; etcd members m0..m2
# listen on 10.213.<x>.1:<port> with mutual TLS only (clients and peers; CA, member and
# client certificates in DIR/etcd/pki, made by `python -m kukeon.store.pki`, which every
# kukeond is given); host i is netns kf-<id>-<i>, address 10.213.<x>.(10+i),
# default route via the bridge. Every kukeond serves its API on <address>:6443 over TLS
# (DIR/pki, made by hack/make-ca.sh for every host address) with the tokens of
# DIR/tokens.yaml: DIR/admin.token (role admin, for kukectl) and DIR/fleet.token (role node,
# which the kukeonds forward each other's cells' logs, exec and kill with). Processes are entered with `nsenter --net` (not `ip netns
# exec`, which would remount /sys and hide the cgroup tree). Nothing outside DIR, the
# bridge, the namespaces, the cgroup roots and the nft tables named after the id is made.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "fleet-up: $*" >&2; exit 1; }

usage() { echo "usage: hack/fleet-up.sh DIR [--nodes N]   (remove with hack/fleet-down.sh DIR)"; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -ge 1 ]] || { usage >&2; exit 1; }
DIR=$1; shift
NODES=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --nodes) NODES=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[[ $EUID -eq 0 ]] || die "must run as root (network namespaces, cgroups, containerd)"
for binary in etcd containerd runc nsenter ip nft openssl; do
    command -v "$binary" >/dev/null || die "$binary is not installed"
done
[[ -x $ROOT/.venv/bin/kukeond ]] || die "$ROOT/.venv/bin/kukeond is missing (make the venv)"
[[ ! -e $DIR/id ]] || die "$DIR already holds a fleet; run hack/fleet-down.sh $DIR first"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
ID=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
NET=10.213.$((RANDOM % 250))
BRIDGE=kf-$ID
GATEWAY=$NET.1
echo "$ID" >"$DIR/id"
echo "$NODES" >"$DIR/nodes"
echo "$NET" >"$DIR/net"

# --- the API's TLS material and tokens ----------------------------------------------------
API_PORT=6443
hosts=127.0.0.1
for i in $(seq 1 "$NODES"); do hosts+=",$NET.$((10 + i))"; done
"$ROOT/hack/make-ca.sh" --out "$DIR/pki" --hosts "$hosts" --quiet
new_token() { head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
(
    umask 077
    new_token >"$DIR/admin.token"
    new_token >"$DIR/fleet.token"
    cat >"$DIR/tokens.yaml" <<EOF
tokens:
  - token: $(<"$DIR/admin.token")
    user: admin
    role: admin
  - token: $(<"$DIR/fleet.token")
    user: fleet
    role: node
EOF
)

# --- the wire between the hosts ----------------------------------------------------------
ip link add "$BRIDGE" type bridge
ip addr add "$GATEWAY/24" dev "$BRIDGE"
ip link set "$BRIDGE" up

# --- etcd: three members on the bridge address, mutual TLS -------------------------------
ETCD_PKI=$DIR/etcd/pki
"$ROOT/.venv/bin/python" -m kukeon.store.pki "$ETCD_PKI" --host "$GATEWAY" --host 127.0.0.1
etcdctl_tls=(--cacert "$ETCD_PKI/ca.crt" --cert "$ETCD_PKI/client.crt" --key "$ETCD_PKI/client.key")
BASE=$((23000 + (RANDOM % 2000) * 8))
cluster=""
endpoints=""
for m in 0 1 2; do
    cluster+="${cluster:+,}m$m=https://$GATEWAY:$((BASE + 2 * m + 1))"
    endpoints+="${endpoints:+,}https://$GATEWAY:$((BASE + 2 * m))"
done
# DIR/etcd/m<m>/start-etcd (re)starts member m in the background (after it was stopped).
for m in 0 1 2; do
    member=$DIR/etcd/m$m
    mkdir -p "$member"
    {
        echo '#!/usr/bin/env bash'
        echo "# Starts etcd member m$m of fleet $ID (its data survives a stop)."
        printf 'etcd'
        printf ' %q' --name "m$m" --data-dir "$member/data" \
            --listen-client-urls "https://$GATEWAY:$((BASE + 2 * m))" \
            --advertise-client-urls "https://$GATEWAY:$((BASE + 2 * m))" \
            --listen-peer-urls "https://$GATEWAY:$((BASE + 2 * m + 1))" \
            --initial-advertise-peer-urls "https://$GATEWAY:$((BASE + 2 * m + 1))" \
            --initial-cluster "$cluster" --initial-cluster-token "kukeon-fleet-$ID" \
            --initial-cluster-state new \
            --client-cert-auth --trusted-ca-file "$ETCD_PKI/ca.crt" \
            --cert-file "$ETCD_PKI/member.crt" --key-file "$ETCD_PKI/member.key" \
            --peer-client-cert-auth --peer-trusted-ca-file "$ETCD_PKI/ca.crt" \
            --peer-cert-file "$ETCD_PKI/member.crt" --peer-key-file "$ETCD_PKI/member.key" \
            --peer-cert-allowed-cn kukeon-etcd-member
        printf ' >>%q 2>&1 &\n' "$member/log"
        printf 'echo $! >%q\n' "$member/pid"
    } >"$member/start-etcd"
    chmod +x "$member/start-etcd"
    "$member/start-etcd"
done
echo "$endpoints" >"$DIR/endpoints"
for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$endpoints" "${etcdctl_tls[@]}" endpoint health \
        >/dev/null 2>&1 && break
    sleep 0.2
done
ETCDCTL_API=3 etcdctl --endpoints "$endpoints" "${etcdctl_tls[@]}" endpoint health >/dev/null 2>&1 \
    || die "etcd did not become healthy (logs in $DIR/etcd/m*/log)"

# --- the hosts -----------------------------------------------------------------------------
for i in $(seq 1 "$NODES"); do
    ns=kf-$ID-$i
    host=$DIR/n$i
    address=$NET.$((10 + i))
    mkdir -p "$host/containerd" "$host/state" "$host/run" "$host/cni" "$host/netns"
    ip netns add "$ns"
    ip link add "kf${ID}h$i" type veth peer name eth0 netns "$ns"
    ip link set "kf${ID}h$i" master "$BRIDGE" up
    ip -n "$ns" addr add "$address/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$GATEWAY"
    echo "$address" >"$host/address"

    cat >"$host/containerd/config.toml" <<EOF
version = 2
root = "$host/containerd/root"
state = "$host/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$host/containerd/containerd.sock"

[ttrpc]
  address = "$host/containerd/containerd.sock.ttrpc"

[debug]
  address = "$host/containerd/debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$host/containerd/opt"
EOF
    # runc keeps its state under /run/containerd/runc/<namespace>/<id> whoever calls it,
    # so each host gets its own copy of that directory in a mount namespace of its own;
    # kukeond joins that mount namespace too, so the cell netns it bind-mounts are the
    # ones runc sees. The host's mounts are untouched. DIR/n<i>/start-containerd (re)starts
    # it in the background (after a kill -9: the shims, and so the cells, live on), waiting
    # for its socket; start-kukeond after it, so that kukeond joins the new mount namespace.
    mkdir -p "$host/runc" /run/containerd/runc
    {
        echo '#!/usr/bin/env bash'
        echo "# Starts containerd of fleet host n$i in its network namespace and a mount namespace of its own."
        echo 'set -euo pipefail'
        printf 'rm -f %q\n' "$host/containerd/containerd.sock"
        # shellcheck disable=SC2016  # $1 and $2 are the inner shell's arguments
        printf 'nsenter --net=%q unshare --mount --propagation private sh -c %q \\\n' \
            "/run/netns/$ns" 'mount --bind "$1" /run/containerd/runc && exec containerd --config "$2"'
        printf '    fleet-containerd %q %q >>%q 2>&1 &\n' \
            "$host/runc" "$host/containerd/config.toml" "$host/containerd/log"
        printf 'echo $! >%q\n' "$host/containerd/pid"
        # shellcheck disable=SC2016  # expanded when start-containerd runs
        printf 'for _ in $(seq 100); do [[ -S %q ]] && exit 0; sleep 0.1; done\n' \
            "$host/containerd/containerd.sock"
        echo 'echo "containerd did not start" >&2; exit 1'
    } >"$host/start-containerd"
    chmod +x "$host/start-containerd"
    "$host/start-containerd"
done

# Extra kukeond flags for every host, e.g. KUKEON_FLEET_KUKEOND_ARGS="--node-lost-timeout 10";
# KUKEON_* settings in the environment (KUKEON_NODE_LEASE_TTL=5) reach every kukeond too.
# DIR/n<i>/start-kukeond (re)starts host i's kukeond in the background, e.g. after kill -9.
read -r -a extra_args <<<"${KUKEON_FLEET_KUKEOND_ARGS:-}"
# One encryption key file for every node (docs/fleet.md), made before any of them starts.
"$ROOT/.venv/bin/python" -c 'import sys; from pathlib import Path
from kukeon.store.encryption import Keyring; Keyring.load_or_create(Path(sys.argv[1]))' \
    "$DIR/encryption-keys.yaml"
for i in $(seq 1 "$NODES"); do
    host=$DIR/n$i
    {
        echo '#!/usr/bin/env bash'
        echo "# Starts kukeond of fleet host n$i in its network and mount namespaces."
        echo 'set -euo pipefail'
        # The KUKEON_* settings fleet-up was started with (KUKEON_NODE_LEASE_TTL=5 ...).
        while IFS='=' read -r name value; do
            [[ $name == KUKEON_* && $name != KUKEON_FLEET_* ]] && printf 'export %s=%q\n' "$name" "$value"
        done < <(env)
        # shellcheck disable=SC2016  # expanded when start-kukeond runs
        printf 'nsenter --net=%q --mount=/proc/"$(<%q)"/ns/mnt %q \\\n' \
            "/run/netns/kf-$ID-$i" "$host/containerd/pid" "$ROOT/.venv/bin/kukeond"
        printf '    %q \\\n' --etcd-endpoints "$endpoints" --etcd-ca-file "$ETCD_PKI/ca.crt" \
            --etcd-cert-file "$ETCD_PKI/client.crt" --etcd-key-file "$ETCD_PKI/client.key" \
            --node-name "n$i" \
            --node-label "fleet-index=$i" \
            --containerd-address "$host/containerd/containerd.sock" \
            --state-dir "$host/state" --run-dir "$host/run" \
            --cgroup-root "/kukeon-fleet-$ID-n$i" --nft-table "kukeon_fleet_${ID}_$i" \
            --netns-dir "$host/netns" --cni-conf-dir "$host/cni" \
            --metrics-address "$(cat "$host/address"):9464" \
            --api-address "$(cat "$host/address"):$API_PORT" \
            --api-tls-cert-file "$DIR/pki/server.crt" --api-tls-key-file "$DIR/pki/server.key" \
            --api-tokens-file "$DIR/tokens.yaml" \
            --fleet-token-file "$DIR/fleet.token" --fleet-ca-file "$DIR/pki/ca.crt" \
            --encryption-key-file "$DIR/encryption-keys.yaml" \
            "${extra_args[@]}"
        printf '    >>%q 2>&1 &\n' "$host/kukeond.log"
        printf 'echo $! >%q\n' "$host/kukeond.pid"
    } >"$host/start-kukeond"
    chmod +x "$host/start-kukeond"
done
for i in $(seq 1 "$NODES"); do
    host=$DIR/n$i
    for _ in $(seq 100); do [[ -S $host/containerd/containerd.sock ]] && break; sleep 0.1; done
    [[ -S $host/containerd/containerd.sock ]] || die "containerd of n$i did not start"
    "$host/start-kukeond"
done
for i in $(seq 1 "$NODES"); do
    for _ in $(seq 300); do [[ -S $DIR/n$i/run/kukeond.sock ]] && break; sleep 0.1; done
    [[ -S $DIR/n$i/run/kukeond.sock ]] || die "kukeond n$i did not start (see $DIR/n$i/kukeond.log)"
done
echo "fleet $ID up in $DIR: etcd $endpoints"
for i in $(seq 1 "$NODES"); do
    echo "  n$i  https://$(cat "$DIR/n$i/address"):$API_PORT  unix://$DIR/n$i/run/kukeond.sock"
done
echo "KUKEON_TOKEN=\"\$(<$DIR/admin.token)\" kukectl --server https://$(cat "$DIR/n1/address"):$API_PORT --certificate-authority $DIR/pki/ca.crt ..."
