#!/usr/bin/env bash
# local-cluster.sh: a whole Chunkfly cluster on this machine's loopback, for demos and tests.
#
#   local-cluster.sh up [--peers N] [--schedulers M] [--state-dir DIR] [--base-port P]
#                       [--quota BYTES] [--tls] [--peer-arg ARG]... [--scheduler-arg ARG]...
#   local-cluster.sh status [--state-dir DIR]
#   local-cluster.sh down   [--state-dir DIR]
#   local-cluster.sh restart-peer I [--state-dir DIR]   (start a stopped/killed peer again)
#
# `up` starts a real docker-registry (access log on), M chunkfly-scheduler and N chunkfly-peer
# processes, waits until every endpoint answers, and prints one line per endpoint:
#   registry http://HOST:PORT
#   scheduler HOST:PORT                 (mesh address; its HTTP is PORT+1)
#   peer I SOCKET_PATH HOST:PORT        (local API socket, mesh address; its HTTP is PORT+1)
#   mirror I http://HOST:PORT           (peer I's registry mirror, upstream = the registry;
#                                        docs/mirror.md)
# `status` prints the same lines plus `registry_blob_bytes N` (blob bytes the registry served so
# far, from its access log); exit 1 when a process is gone. `down` stops what `up` started, by
# PID. --tls: mesh mutual TLS everywhere (docs/security.md), certificates made by
# deploy/make-certs.sh in STATE/pki (CA ca.crt, scheduler-j, peer-i = the peers' host ids). Addresses: registry 127.0.0.1:P, scheduler j 127.0.0.1:P+10+2(j-1), peer i (from 1)
# 127.0.0.(10+i):P+2. Also written to STATE/cluster.env for scripts (PEER_HTTP_i=..., etc).
# Binaries: $CHUNKFLY_BIN, else build/bin of this checkout. Distinct --state-dir and --base-port
# let several clusters run at once.
set -euo pipefail
export LC_ALL=C

PROG=${0##*/}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${CHUNKFLY_BIN:-$HERE/../build/bin}
STATE=/tmp/chunkfly-cluster
PEERS=2
SCHEDS=1
BASE=17000
QUOTA=""
TLS=0
PEER_ARGS=()
SCHED_ARGS=()

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "$PROG: $*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
CMD=$1; shift
PEER_NO=""
case $CMD in
  up|down|status) ;;
  restart-peer) PEER_NO=${1:?restart-peer needs a peer number}; shift ;; -h|--help|help) usage; exit 0 ;; *) echo "$PROG: unknown command '$CMD' (up, down, status)" >&2; exit 2 ;; esac
while [ $# -gt 0 ]; do
  case $1 in
    --peers) PEERS=${2:?--peers needs a value}; shift 2 ;;
    --schedulers) SCHEDS=${2:?--schedulers needs a value}; shift 2 ;;
    --state-dir) STATE=${2:?--state-dir needs a value}; shift 2 ;;
    --base-port) BASE=${2:?--base-port needs a value}; shift 2 ;;
    --quota) QUOTA=${2:?--quota needs a value}; shift 2 ;;
    --tls) TLS=1; shift ;;
    --peer-arg) PEER_ARGS+=("${2:?--peer-arg needs a value}"); shift 2 ;;
    --scheduler-arg) SCHED_ARGS+=("${2:?--scheduler-arg needs a value}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$PROG: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
is_uint "$PEERS" && [ "$PEERS" -ge 1 ] && [ "$PEERS" -le 200 ] || die "--peers must be 1..200"
is_uint "$SCHEDS" && [ "$SCHEDS" -ge 1 ] && [ "$SCHEDS" -le 16 ] || die "--schedulers must be 1..16"
is_uint "$BASE" && [ "$BASE" -ge 1024 ] && [ "$BASE" -le 65000 ] || die "--base-port must be 1024..65000"
STATE=$(mkdir -p "$STATE" && cd "$STATE" && pwd)

reg_addr() { echo "127.0.0.1:$BASE"; }
sched_addr() { echo "127.0.0.1:$((BASE + 10 + 2 * ($1 - 1)))"; }
sched_http() { echo "127.0.0.1:$((BASE + 11 + 2 * ($1 - 1)))"; }
peer_ip() { echo "127.0.0.$((10 + $1))"; }
peer_addr() { echo "$(peer_ip "$1"):$((BASE + 2))"; }
peer_http() { echo "$(peer_ip "$1"):$((BASE + 3))"; }
peer_sock() { echo "$STATE/peer-$1/peer.sock"; }
peer_mirror() { echo "$(peer_ip "$1"):$((BASE + 4))"; }

alive() { # PID: running and not a zombie (PID 1 here does not reap orphans)
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null || true)
  [ -n "$st" ] && [[ $st != Z* ]]
}

stop_pid() { # PID NAME: TERM, up to 10 s, then KILL
  local p=$1 i
  alive "$p" || return 0
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$p" || return 0; sleep 0.1; done
  echo "$PROG: $2 (pid $p) ignored SIGTERM; SIGKILL" >&2
  kill -KILL "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$p" || return 0; sleep 0.1; done
  echo "$PROG: $2 (pid $p) still there after SIGKILL" >&2
  return 1
}

do_down() {
  [ -f "$STATE/pids" ] || { echo "$PROG: nothing to stop in $STATE"; return 0; }
  local name pid cmd rc=0
  # peers first (they say goodbye to the schedulers), then schedulers, then the registry
  while read -r name pid cmd; do
    # Only a PID still running what we started (its comm) is ours to signal.
    if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$cmd" ]; then
      stop_pid "$pid" "$name" || rc=1
    fi
  done < <(tac "$STATE/pids")
  rm -f "$STATE/pids" "$STATE/cluster.env"
  return $rc
}

# The registry's access log (combined format lines in its output): payload bytes of blob GETs.
blob_bytes() {
  awk '$6 == "\"GET" && $7 ~ /\/blobs\/sha256:/ && ($9 == 200 || $9 == 206) { b += $10 }
       END { printf "%.0f\n", b }' "$STATE/registry/registry.log" 2>/dev/null || echo 0
}

print_lines() {
  local i
  echo "registry http://$(reg_addr)"
  for ((i = 1; i <= SCHEDS; i++)); do echo "scheduler $(sched_addr "$i")"; done
  for ((i = 1; i <= PEERS; i++)); do echo "peer $i $(peer_sock "$i") $(peer_addr "$i")"; done
  for ((i = 1; i <= PEERS; i++)); do echo "mirror $i http://$(peer_mirror "$i")"; done
}

load_env() {
  [ -f "$STATE/cluster.env" ] || die "no cluster in $STATE (run '$PROG up --state-dir $STATE')"
  # shellcheck disable=SC1091
  . "$STATE/cluster.env"
  PEERS=$CLUSTER_PEERS SCHEDS=$CLUSTER_SCHEDULERS BASE=$CLUSTER_BASE_PORT
}

http_ok() { curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null | grep -q '^200$'; }

# wait_for NAME PID CHECK...: until CHECK succeeds; fails when PID dies or after 30 s
wait_for() {
  local name=$1 pid=$2 i; shift 2
  for ((i = 0; i < 300; i++)); do
    "$@" && return 0
    if ! alive "$pid"; then
      echo "$PROG: $name exited during startup; its log ($STATE/$name/$name.log) ends:" >&2
      tail -n 30 "$STATE/$name/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "$PROG: $name did not answer within 30 s" >&2
  return 1
}

start() { # NAME COMM LOG CMD...: background, PID recorded, command line kept for restarts
  local name=$1 comm=$2 log=$3; shift 3
  "$@" >>"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$name $pid $comm" >>"$STATE/pids"
  printf '%q ' "$@" >"$STATE/$name/cmdline"
  LAST_PID=$pid
}

peer_ready() { [ -S "$(peer_sock "$1")" ] && http_ok "http://$(peer_http "$1")/healthz"; }

do_restart_peer() {
  load_env
  local i=$PEER_NO name pid comm
  is_uint "$i" && [ "$i" -ge 1 ] && [ "$i" -le "$PEERS" ] || die "no peer $i (1..$PEERS)"
  name=peer-$i
  pid=$(awk -v n="$name" '$1 == n {p = $2} END {print p}' "$STATE/pids")
  [ -n "$pid" ] && alive "$pid" && die "$name (pid $pid) is still running"
  local cmd
  cmd=$(cat "$STATE/$name/cmdline")
  rm -f "$(peer_sock "$i")"
  awk -v n="$name" '$1 != n' "$STATE/pids" >"$STATE/pids.new" && mv "$STATE/pids.new" "$STATE/pids"
  eval "start $name chunkfly-peer $(printf '%q' "$STATE/$name/$name.log") $cmd"
  wait_for "$name" "$LAST_PID" peer_ready "$i"
  echo "peer $i $(peer_sock "$i") $(peer_addr "$i")"
}

do_up() {
  local i
  if [ -f "$STATE/pids" ]; then
    while read -r _ pid _; do
      alive "$pid" && die "a cluster from $STATE is still running (run '$PROG down --state-dir $STATE')"
    done <"$STATE/pids"
    rm -f "$STATE/pids"
  fi
  command -v docker-registry >/dev/null || die "docker-registry not installed (apt-get install docker-registry)"
  command -v curl >/dev/null || die "curl not installed"
  for b in chunkfly-scheduler chunkfly-peer; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found (build first, or set CHUNKFLY_BIN)"
  done
  # ports must be free: a leftover process would answer our readiness checks
  local addrs=("$(reg_addr)") a
  for ((i = 1; i <= SCHEDS; i++)); do addrs+=("$(sched_addr "$i")" "$(sched_http "$i")"); done
  for ((i = 1; i <= PEERS; i++)); do
    addrs+=("$(peer_addr "$i")" "$(peer_http "$i")" "$(peer_mirror "$i")")
  done
  for a in "${addrs[@]}"; do
    if (exec 3<>"/dev/tcp/${a%:*}/${a##*:}") 2>/dev/null; then
      die "$a is already in use (another cluster? pick --base-port)"
    fi
  done
  trap 'echo "$PROG: startup failed; stopping what was started" >&2; do_down >/dev/null 2>&1 || true' ERR

  mkdir -p "$STATE/registry/data"
  cat >"$STATE/registry/config.yml" <<YML
version: 0.1
log: {level: info, fields: {service: chunkfly-cluster-registry}}
storage:
  filesystem: {rootdirectory: $STATE/registry/data}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: $(reg_addr)
YML
  start registry docker-registry "$STATE/registry/registry.log" \
    env -u REGISTRY_HTTP_ADDR docker-registry serve "$STATE/registry/config.yml"
  wait_for registry "$LAST_PID" http_ok "http://$(reg_addr)/v2/" || false

  local sched_flags=() names=()
  tls_flags() { :; } # tls_flags NAME: the --set flags of node NAME (none without --tls)
  if [ "$TLS" = 1 ]; then
    for ((i = 1; i <= SCHEDS; i++)); do names+=("scheduler-$i"); done
    for ((i = 1; i <= PEERS; i++)); do names+=("peer-$i"); done
    "$HERE/make-certs.sh" "$STATE/pki" "${names[@]}" >/dev/null
    tls_flags() {
      printf '%s\n' --set "tls_cert=$STATE/pki/$1.crt" --set "tls_key=$STATE/pki/$1.key" \
        --set "tls_ca=$STATE/pki/ca.crt"
    }
  fi
  for ((i = 1; i <= SCHEDS; i++)); do
    mkdir -p "$STATE/scheduler-$i"
    start "scheduler-$i" chunkfly-schedu "$STATE/scheduler-$i/scheduler-$i.log" \
      "$BIN/chunkfly-scheduler" --listen "$(sched_addr "$i")" --http "$(sched_http "$i")" \
      --node-id "scheduler-$i" $(tls_flags "scheduler-$i") "${SCHED_ARGS[@]}"
    wait_for "scheduler-$i" "$LAST_PID" http_ok "http://$(sched_http "$i")/healthz" || false
    sched_flags+=(--scheduler "$(sched_addr "$i")")
  done

  local pids=()
  for ((i = 1; i <= PEERS; i++)); do
    mkdir -p "$STATE/peer-$i/cache"
    rm -f "$(peer_sock "$i")"
    local q=()
    [ -z "$QUOTA" ] || q=(--quota "$QUOTA")
    start "peer-$i" chunkfly-peer "$STATE/peer-$i/peer-$i.log" \
      "$BIN/chunkfly-peer" --listen "$(peer_addr "$i")" "${sched_flags[@]}" \
      --cache-dir "$STATE/peer-$i/cache" --api-socket "$(peer_sock "$i")" \
      --http "$(peer_http "$i")" --set mirror_listen="$(peer_mirror "$i")" \
      --set mirror_upstreams="$(reg_addr)" --set mirror_default_upstream="$(reg_addr)" \
      $(tls_flags "peer-$i") "${q[@]}" "${PEER_ARGS[@]}"
    pids+=("$LAST_PID")
  done
  for ((i = 1; i <= PEERS; i++)); do wait_for "peer-$i" "${pids[$((i - 1))]}" peer_ready "$i" || false; done
  trap - ERR

  {
    echo "CLUSTER_PEERS=$PEERS"
    echo "CLUSTER_SCHEDULERS=$SCHEDS"
    echo "CLUSTER_BASE_PORT=$BASE"
    echo "CLUSTER_TLS=$TLS"
    echo "REGISTRY=$(reg_addr)"
    echo "REGISTRY_LOG=$STATE/registry/registry.log"
    for ((i = 1; i <= SCHEDS; i++)); do
      echo "SCHEDULER_$i=$(sched_addr "$i")"
      echo "SCHEDULER_HTTP_$i=$(sched_http "$i")"
    done
    for ((i = 1; i <= PEERS; i++)); do
      echo "PEER_SOCK_$i=$(peer_sock "$i")"
      echo "PEER_ADDR_$i=$(peer_addr "$i")"
      echo "PEER_HTTP_$i=$(peer_http "$i")"
      echo "PEER_MIRROR_$i=http://$(peer_mirror "$i")"
      echo "PEER_CACHE_$i=$STATE/peer-$i/cache"
      echo "PEER_LOG_$i=$STATE/peer-$i/peer-$i.log"
    done
  } >"$STATE/cluster.env"
  print_lines
}

do_status() {
  load_env
  print_lines
  echo "registry_blob_bytes $(blob_bytes)"
  local name pid comm rc=0
  while read -r name pid comm; do
    alive "$pid" || { echo "$PROG: $name (pid $pid) is not running" >&2; rc=1; }
  done <"$STATE/pids"
  return $rc
}

case $CMD in
  up) do_up ;;
  status) do_status ;;
  down) do_down ;;
  restart-peer) do_restart_peer ;;
esac
