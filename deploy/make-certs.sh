#!/usr/bin/env bash
# make-certs.sh DIR [NAME...]: a development CA and one certificate per mesh node, for
# chunkfly's mutual TLS (docs/security.md). Uses the openssl CLI.
#
#   DIR/ca.crt, DIR/ca.key     the CA (made once; kept and reused when DIR already has it)
#   DIR/NAME.crt, DIR/NAME.key one node: subjectAltName DNS:NAME (= its host id), CN NAME,
#                              usable as TLS server and client; EC P-256, valid DAYS (825)
#
# NAME is the node's host id (peers) or any name (schedulers); it must be a valid DNS-style
# name: letters, digits, '.', '-', '_'. Default NAMES: scheduler peer-1 peer-2 peer-3.
# For production use your own PKI: chunkfly only needs a CA bundle and per-node PEM files.
set -euo pipefail

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}
[ $# -ge 1 ] || usage
case $1 in -h | --help) usage 0 ;; esac
dir=$1
shift
[ $# -gt 0 ] || set -- scheduler peer-1 peer-2 peer-3
days=${DAYS:-825}
command -v openssl >/dev/null || { echo "make-certs.sh: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
umask 077

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days "$days" -subj "/CN=chunkfly dev CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "made CA $dir/ca.crt"
fi

for name in "$@"; do
    case $name in
    '' | *[!A-Za-z0-9._-]*)
        echo "make-certs.sh: '$name': use letters, digits, '.', '-', '_'" >&2
        exit 2
        ;;
    esac
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:$name" >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$ext" "$dir/$name.csr"
    echo "made $dir/$name.crt (identity $name)"
done
# the daemons may run as another user: certificates are public, keys stay 0600
chmod 644 "$dir"/*.crt
