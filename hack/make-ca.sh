#!/usr/bin/env bash
# Make a local certificate authority and a server certificate for kukeond's TCP API.
# Idempotent: an existing CA is reused, and an existing server certificate is kept while it
# is signed by that CA, names every requested host and is valid for at least 30 more days.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: hack/make-ca.sh [--out DIR] [--hosts LIST] [--days N] [--quiet] [--force]

Creates in DIR (default /etc/kukeon/pki):
  ca.key, ca.crt           a local CA (EC P-256), kept if it already exists
  server.key, server.crt   a server certificate signed by the CA for LIST

  --out DIR     where the files go (created 0700 if missing)
  --hosts LIST  comma-separated DNS names and IP addresses the server answers on
                (default: localhost,127.0.0.1,::1,$(hostname))
  --days N      validity of new certificates in days (default 825)
  --force       make a new server certificate even if the current one is fine
  --quiet       print nothing on success

Point kukeond at server.crt/server.key (apiTlsCertFile/apiTlsKeyFile) and give ca.crt to
kukectl (certificateAuthority in ~/.config/kukeon/config.yaml).
USAGE
}

out=/etc/kukeon/pki
hosts="localhost,127.0.0.1,::1,$(hostname)"
days=825
quiet=false
force=false
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --hosts) hosts=${2:?--hosts needs a list}; shift 2 ;;
        --days) days=${2:?--days needs a number}; shift 2 ;;
        --quiet) quiet=true; shift ;;
        --force) force=true; shift ;;
        *) echo "make-ca.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if ! [[ $days =~ ^[0-9]+$ ]]; then
    echo "make-ca.sh: --days must be a number, got '$days'" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "make-ca.sh: openssl is required (apt-get install openssl)" >&2; exit 1; }

say() { if [[ $quiet == false ]]; then echo "$@"; fi; }

umask 077
mkdir -p "$out"

ca_key=$out/ca.key
ca_crt=$out/ca.crt
server_key=$out/server.key
server_crt=$out/server.crt

if [[ ! -s $ca_key || ! -s $ca_crt ]]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$ca_key" -out "$ca_crt" -days "$days" -sha256 \
        -subj "/CN=kukeon local CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    say "created CA $ca_crt"
else
    say "reusing CA $ca_crt"
fi

san=""
IFS=',' read -r -a host_list <<<"$hosts"
for host in "${host_list[@]}"; do
    [[ -z $host ]] && continue
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
        san+="${san:+,}IP:$host"
    else
        san+="${san:+,}DNS:$host"
    fi
done
if [[ -z $san ]]; then
    echo "make-ca.sh: --hosts names no host" >&2
    exit 2
fi

server_cert_ok() {
    [[ -s $server_key && -s $server_crt ]] || return 1
    openssl verify -CAfile "$ca_crt" "$server_crt" >/dev/null 2>&1 || return 1
    openssl x509 -in "$server_crt" -noout -checkend $((30 * 24 * 3600)) >/dev/null 2>&1 || return 1
    local names
    names=$(openssl x509 -in "$server_crt" -noout -ext subjectAltName 2>/dev/null | tr -d ' ')
    names=${names//IPAddress:/IP:}
    local entry
    IFS=',' read -r -a wanted <<<"$san"
    for entry in "${wanted[@]}"; do
        # openssl prints IP:0:0:...:1 for ::1; compare IPv4 and DNS entries literally.
        if [[ $entry == IP:*:* ]]; then continue; fi
        [[ ",${names//$'\n'/,}," == *",$entry,"* ]] || return 1
    done
}

if [[ $force == false ]] && server_cert_ok; then
    say "keeping server certificate $server_crt"
    exit 0
fi

csr=$(mktemp)
ext=$(mktemp)
trap 'rm -f "$csr" "$ext"' EXIT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$server_key" -out "$csr" -subj "/CN=kukeond" 2>/dev/null
cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in "$csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial \
    -CAserial "$out/ca.srl" -out "$server_crt" -days "$days" -sha256 -extfile "$ext" 2>/dev/null
chmod 0644 "$ca_crt" "$server_crt"
say "created server certificate $server_crt for $san"
