#!/usr/bin/env bash
# bench_p2p.sh: Chunkfly P2P distribution against its baselines, all in one run (not a test).
#
# N nodes in network namespaces, every link (each node, the registry, the mirror, the scheduler)
# tbf-shaped to --mbit in both directions (egress tbf on eth0, ingress via an ifb with tbf), all
# pull one random blob at the same moment:
#   direct   curl in each node straight from the origin docker-registry
#   mirror   curl in each node from a docker-registry pull-through cache (cold) of the origin
#   p2p      `chunkfly get` in each node through its own chunkfly-peer (one chunkfly-scheduler)
# and, for a multi-layer image (--image-mib, made by ../shared/tools/make-test-image.sh, random
# data so gzip cannot shrink it), a containerd 1.6 in every node fetching all of its content
# (`ctr content fetch`: the network part of a pull; unpacking is the same CPU work in every
# scenario and would only measure this 2-core machine):
#   containerd-direct  from the origin registry
#   containerd-pullthrough  through a docker-registry pull-through cache (hosts.toml)
#   containerd-mirror  through the node's own chunkfly-peer registry mirror (hosts.toml, the
#                      origin as fallback), the peers meshing through the scheduler
# Reported: origin payload bytes / blob size (the origin's access log), time until the last node
# finishes, its ratio to direct, mirror and the bandwidth bound (size / link rate).
# During the p2p round, every 0.5 s (tests/bench/p2p/link_sampler.py, one process): each link's
# bytes in and out (node, origin, scheduler), the peers' CPU and their /metrics gauges of pieces
# waiting for a parent / for the origin and idle upload slots: a CSV, a per-node summary (link
# utilisation while downloading, seconds the downlink sat idle) and a PNG of every link's
# utilisation over time (gnuplot, tests/bench/p2p/links.gp).
# Variants of the p2p round (issue 14): --mixed F:R (a fraction F of the nodes, the last ones,
# on R Mbit/s links; each group against its own bound), --late K:SEC (the last K nodes start SEC
# seconds late; each against the bound from its own start).
# Also, on node 1's own loopback (unshaped): piece serving throughput of its peer (mesh
# protocol, blob in page cache, tests/bench/p2p/piece_bench) vs a plain sendfile loop over the
# same address (ratio), and the peers' RSS idle and during the p2p run.
#
# Everything that carries test traffic runs inside namespaces this script creates (started with
# `ip netns exec`); the bridge lives in a hub namespace; nothing is added to the root namespace,
# and every namespace is checked to reach its targets on-link with no default route before any
# traffic. Everything is removed on exit. Needs root, docker-registry, iproute2, curl, openssl.
set -Eeuo pipefail
export LC_ALL=C

PROG=${0##*/}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${CHUNKFLY_BUILD:-$SRC/build}
BIN=${CHUNKFLY_BIN:-$BUILD/bin}
NODES=8
SIZE_MIB=256
MBIT=100
SCENARIOS="direct,mirror,p2p"
IMAGE_MIB=256
WORK_BASE=/tmp
KEEP=0
PEER_SET=()
MIXED=""
LATE=""
LINKS_OUT=""
NET=10.198.0
PORT=5000
REPO=bench/blob

usage() {
  cat <<EOF
Usage: $PROG [options]
  --nodes N          nodes (1..60, default $NODES)
  --size-mib S       blob size in MiB (default $SIZE_MIB)
  --mbit R           link rate, Mbit/s, every link both ways (default $MBIT)
  --scenarios LIST   comma list of direct,mirror,p2p,containerd-direct,containerd-pullthrough,
                     containerd-mirror (default $SCENARIOS; containerd = the three containerd
                     ones); the loopback and RSS figures come with p2p
  --image-mib S      image size for the containerd scenarios (4 layers, default $IMAGE_MIB)
  --work-dir DIR     parent of the scratch dir (default $WORK_BASE)
  --keep             keep the scratch dir (logs)
  --peer-set K=V     an extra chunkfly-peer config line (repeatable), e.g. log_level=debug
  --mixed F:R        a fraction F (0..1) of the nodes, the last ones, get R Mbit/s links; the
                     p2p round reports slow and fast nodes against their own bounds
  --late K:SEC       in the p2p round the last K nodes start SEC seconds after the others; each
                     node is judged from its own start
  --links-out PFX    keep the p2p round's link samples as PFX.csv (+ PFX.runs: start/end per node)
                     and the plot as PFX.png
                     (also in the scratch dir, p2p/links.*, with --keep)
  -h, --help
Binaries from \$CHUNKFLY_BIN (default $BIN), piece_bench from \$CHUNKFLY_BUILD/tests.
The last line is a summary:
  p2p bench: nodes=N size=SMiB link=RMbit origin_x=<p2p origin bytes/blob> last=<s> direct_last=<s>
  mirror_last=<s> bound=<s> vs_direct=<x> vs_mirror=<x> vs_bound=<x> serve_ratio=<x> rss_idle_kib=<k> rss_run_kib=<k>
EOF
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
  case $1 in
    --nodes) NODES=${2:?}; shift 2 ;;
    --size-mib) SIZE_MIB=${2:?}; shift 2 ;;
    --mbit) MBIT=${2:?}; shift 2 ;;
    --scenarios) SCENARIOS=${2:?}; shift 2 ;;
    --image-mib) IMAGE_MIB=${2:?}; shift 2 ;;
    --work-dir) WORK_BASE=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --mixed) MIXED=${2:?}; shift 2 ;;
    --late) LATE=${2:?}; shift 2 ;;
    --links-out) LINKS_OUT=${2:?}; shift 2 ;;
    --peer-set) [ $# -ge 2 ] && [[ $2 == *=* ]] || die "--peer-set needs KEY=VALUE"; PEER_SET+=("$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$PROG: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
is_uint "$NODES" && [ "$NODES" -ge 1 ] && [ "$NODES" -le 60 ] || die "--nodes must be 1..60"
is_uint "$SIZE_MIB" && [ "$SIZE_MIB" -ge 1 ] || die "--size-mib must be >= 1"
is_uint "$MBIT" && [ "$MBIT" -ge 1 ] && [ "$MBIT" -le 10000 ] || die "--mbit must be 1..10000"
is_uint "$IMAGE_MIB" && [ "$IMAGE_MIB" -ge 4 ] || die "--image-mib must be >= 4"
N_SLOW=0 SLOW_MBIT=$MBIT N_LATE=0 LATE_S=0
if [ -n "$MIXED" ]; then
  [[ $MIXED =~ ^(0?\.[0-9]+|1(\.0*)?):([0-9]+)$ ]] || die "--mixed F:R, e.g. 0.25:20"
  SLOW_MBIT=${BASH_REMATCH[3]}
  N_SLOW=$(awk -v f="${BASH_REMATCH[1]}" -v n="$NODES" 'BEGIN{printf "%d", f*n+0.5}')
  [ "$SLOW_MBIT" -ge 1 ] && [ "$SLOW_MBIT" -le 10000 ] || die "--mixed: rate must be 1..10000"
fi
if [ -n "$LATE" ]; then
  [[ $LATE =~ ^([0-9]+):([0-9]+)$ ]] || die "--late K:SEC, e.g. 2:10"
  N_LATE=${BASH_REMATCH[1]} LATE_S=${BASH_REMATCH[2]}
  [ "$N_LATE" -lt "$NODES" ] || die "--late: K must leave at least one node on time"
fi
[ "$(id -u)" = 0 ] || die "needs root (namespaces, tc)"
SCENARIOS=${SCENARIOS//containerd,/containerd-direct,containerd-pullthrough,containerd-mirror,}
[[ $SCENARIOS != *,containerd ]] || SCENARIOS=${SCENARIOS%containerd}containerd-direct,containerd-pullthrough,containerd-mirror
[ "$SCENARIOS" != containerd ] || SCENARIOS=containerd-direct,containerd-pullthrough,containerd-mirror
want() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
want_ctrd() { [[ $SCENARIOS == *containerd-* ]]; }
MKIMG=$SRC/../shared/tools/make-test-image.sh
if want_ctrd; then
  for c in containerd ctr skopeo umoci; do command -v $c >/dev/null || die "missing $c"; done
  [ -x "$MKIMG" ] || die "$MKIMG missing"
fi
for c in docker-registry ip tc curl openssl sha256sum awk; do command -v $c >/dev/null || die "missing $c"; done
if want p2p || want containerd-mirror; then
  for b in chunkfly-peer chunkfly-scheduler chunkfly; do [ -x "$BIN/$b" ] || die "$BIN/$b not built"; done
  [ -x "$BUILD/tests/piece_bench" ] || die "$BUILD/tests/piece_bench not built"
fi
if want p2p; then command -v python3 >/dev/null || die "missing python3 (link sampler)"; fi
command -v gnuplot >/dev/null || log "no gnuplot (apt-get install gnuplot-nox): no link plot"

SIZE=$((SIZE_MIB * 1048576))
BOUND=$(awk -v b=$SIZE -v r=$MBIT 'BEGIN{printf "%.2f", b*8/(r*1e6)}')
NSENV=(env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u all_proxy
       -u NO_PROXY -u no_proxy -u REGISTRY_HTTP_ADDR -u REGISTRY_PROXY_REMOTEURL LC_ALL=C)

PFX="cfb$$"
HUB=$PFX-hub REG_NS=$PFX-reg MIR_NS=$PFX-mir SCH_NS=$PFX-sch
REG_IP=$NET.2 MIR_IP=$NET.3 SCH_IP=$NET.4
node_ns() { echo "$PFX-n$1"; }
node_ip() { echo "$NET.$((10 + $1))"; }
node_mbit() { if [ "$1" -gt $((NODES - N_SLOW)) ]; then echo "$SLOW_MBIT"; else echo "$MBIT"; fi; }
node_late() { if [ "$1" -gt $((NODES - N_LATE)) ]; then echo "$LATE_S"; else echo 0; fi; }
NSS=()
PIDS=()
WORK=""

alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null || true); [ -n "$st" ] && [[ $st != Z* ]]; }
stop_pid() {
  local p=$1 i
  alive "$p" || { wait "$p" 2>/dev/null || true; return 0; }
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$p" || break; sleep 0.1; done
  alive "$p" && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null || true
}
cleanup() {
  set +e
  local p i
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  for ((i = ${#NSS[@]} - 1; i >= 0; i--)); do ip netns del "${NSS[$i]}" 2>/dev/null || log "could not delete ${NSS[$i]}"; done
  if [ -n "$WORK" ]; then if [ $KEEP = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi; fi
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM HUP

in_ns() { # only our own namespaces
  local ns=$1; shift
  [[ " ${NSS[*]} " == *" $ns "* ]] || die "refusing to run in foreign namespace $ns"
  ip netns exec "$ns" "${NSENV[@]}" "$@"
}
mk_ns() {
  [ -e "/run/netns/$1" ] && die "namespace $1 exists"
  ip netns add "$1"; NSS+=("$1")
  ip -n "$1" link set lo up
  in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
}
attach() { # ns hub-if ip [mbit]: veth to the hub bridge, shaped both ways
  local ns=$1 hif=$2 ip=$3 rate=${4:-$MBIT} burst
  burst=$((rate * 1000000 / 8 / 500)); [ $burst -ge 65536 ] || burst=65536
  mk_ns "$ns"
  ip -n "$HUB" link add "$hif" type veth peer name eth0 netns "$ns"
  ip -n "$HUB" link set "$hif" master br0
  ip -n "$HUB" link set "$hif" up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  tc -n "$ns" qdisc add dev eth0 root tbf rate "${rate}mbit" burst $burst latency 50ms
  ip -n "$ns" link add ifb0 type ifb
  ip -n "$ns" link set ifb0 up
  tc -n "$ns" qdisc add dev eth0 handle ffff: ingress
  tc -n "$ns" filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ifb0
  tc -n "$ns" qdisc add dev ifb0 root tbf rate "${rate}mbit" burst $burst latency 50ms
}
onlink() { # ns target: no default route, target reached without a gateway
  local out
  [ -z "$(ip -n "$1" route show default)" ] || die "$1 has a default route"
  out=$(in_ns "$1" ip route get "$2") || die "$1: no route to $2"
  [[ $out != *" via "* ]] || die "$1: route to $2 goes via a gateway: $out"
}

bg() { # ns log cmd...: start inside ns, remember the PID
  local ns=$1 logf=$2; shift 2
  ip netns exec "$ns" "${NSENV[@]}" "$@" >"$logf" 2>&1 </dev/null &
  PIDS+=($!)
  LAST=$!
}

wait_http() { # ns url [pid]
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(in_ns "$1" curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$2" || true)" = 200 ] && return 0
    [ -z "${3:-}" ] || alive "$3" || die "process $3 died before $2 answered"
    sleep 0.1
  done
  die "$2 did not answer in 30 s"
}

start_registry() { # ns dir ip [proxy-url]
  mkdir -p "$2/data"
  {
    echo "version: 0.1"
    echo "log: {level: info, fields: {service: $(basename "$2")}}"
    echo "storage: {filesystem: {rootdirectory: $2/data}, delete: {enabled: true}}"
    echo "http: {addr: $3:$PORT}"
    [ -z "${4:-}" ] || echo "proxy: {remoteurl: $4}"
  } >"$2/config.yml"
  bg "$1" "$2/registry.log" docker-registry serve "$2/config.yml"
  wait_http "$1" "http://$3:$PORT/v2/" "$LAST"
}

# blob GET payload bytes in a registry log
origin_bytes() {
  awk '$6 == "\"GET" && $7 ~ /\/blobs\/sha256:/ && ($9 == 200 || $9 == 206) { b += $10 } END { printf "%.0f\n", b }' "$WORK/origin/registry.log"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
peer_metrics() { # I: node I's peer /metrics
  in_ns "$(node_ns "$1")" curl -s --noproxy '*' --max-time 5 "http://$(node_ip "$1"):8101/metrics"
}
print_peer_metrics() { # LABEL REGEX: the matching metrics of every node's peer, a line each
  local i m
  for ((i = 1; i <= NODES; i++)); do
    m=$(peer_metrics "$i" | awk -v re="$2" '$1 ~ re {printf "%s=%s ", $1, $2}')
    echo "  $1 node $i metrics: ${m:-none}"
  done
}

# ---------------------------------------------------------------- setup
WORK=$(mktemp -d "$WORK_BASE/bench-p2p.XXXXXX")
log "nodes=$NODES size=${SIZE_MIB}MiB link=${MBIT}Mbit bound=${BOUND}s scenarios=$SCENARIOS work=$WORK"
[ $N_SLOW = 0 ] || log "mixed: nodes $((NODES - N_SLOW + 1))..$NODES on ${SLOW_MBIT} Mbit/s links"
[ $N_LATE = 0 ] || log "late: in the p2p round nodes $((NODES - N_LATE + 1))..$NODES start ${LATE_S} s late"
mk_ns "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
attach "$REG_NS" h-reg "$REG_IP"
attach "$MIR_NS" h-mir "$MIR_IP"
attach "$SCH_NS" h-sch "$SCH_IP"
for ((i = 1; i <= NODES; i++)); do attach "$(node_ns $i)" "h-n$i" "$(node_ip $i)" "$(node_mbit $i)"; done
onlink "$MIR_NS" "$REG_IP"
for ((i = 1; i <= NODES; i++)); do
  for t in "$REG_IP" "$MIR_IP" "$SCH_IP" "$(node_ip 1)"; do onlink "$(node_ns $i)" "$t"; done
done
log "route check ok: ${#NSS[@]} namespaces, on-link only"

log "generating the blob"
head -c $SIZE /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$(printf bench | sha256sum | cut -c1-32)" \
  -iv 00000000000000000000000000000000 | head -c $SIZE >"$WORK/blob"
SHA=$(sha256sum "$WORK/blob" | cut -d' ' -f1)
DIGEST=sha256:$SHA
start_registry "$REG_NS" "$WORK/origin" "$REG_IP"
ORIGIN_PID=$LAST
hdr=$WORK/push.hdr
in_ns "$REG_NS" curl -sS -f --noproxy '*' -X POST -D "$hdr" -o /dev/null "http://$REG_IP:$PORT/v2/$REPO/blobs/uploads/"
loc=$(awk 'tolower($1) == "location:" {print $2}' "$hdr" | tr -d '\r')
case $loc in /*) loc="http://$REG_IP:$PORT$loc" ;; esac
case $loc in *\?*) loc="$loc&digest=$DIGEST" ;; *) loc="$loc?digest=$DIGEST" ;; esac
in_ns "$REG_NS" curl -sS -f --noproxy '*' -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' \
  -T "$WORK/blob" -o /dev/null "$loc"
rm -f "$WORK/blob"
log "pushed $DIGEST"

# runner inside a node: wait for the common start, run the command, record times and sha256
cat >"$WORK/run.sh" <<'EOF'
#!/usr/bin/env bash
# run.sh START_US OUT_PREFIX CMD...  (CMD writes the blob to OUT_PREFIX.blob)
t0=$1 out=$2; shift 2
now=${EPOCHREALTIME/./}
d=$((t0 - now))
if ((d > 0)); then sleep "$((d / 1000000)).$(printf '%06d' $((d % 1000000)))"; fi
start=${EPOCHREALTIME/./}
"$@" >"$out.log" 2>&1
rc=$?
end=${EPOCHREALTIME/./}
sha=$(sha256sum "$out.blob" 2>/dev/null | cut -d' ' -f1)
rm -f "$out.blob"
echo "$start $end $rc $sha" >"$out.res"
EOF
chmod 755 "$WORK/run.sh"

declare -A R
# scenario NAME CMD-TEMPLATE: every node runs the command at the same moment; @IP@ @OUT@ @I@
scenario() {
  local name=$1 tmpl=$2 dir=$WORK/$1 i b0 t0 pids=() last=0 ok=1 tmo slowest=$MBIT late
  [ "$SLOW_MBIT" -ge "$MBIT" ] || slowest=$SLOW_MBIT
  # every node through one link, three times over, plus a minute
  tmo=$(awk -v b="${SCEN_SIZE:-$SIZE}" -v r=$slowest -v n=$NODES -v l=$LATE_S 'BEGIN{printf "%.0f", 3*(n+1)*b*8/(r*1e6)+60+l}')
  mkdir -p "$dir"
  b0=$(origin_bytes)
  [ "$name" != p2p ] || start_link_sampler "$dir"
  # launching N `ip netns exec` takes ~0.1 s each on a loaded 2-core machine
  t0=$((${EPOCHREALTIME/./} + 1000000 + 150000 * NODES))
  for ((i = 1; i <= NODES; i++)); do
    local cmd=${tmpl//@IP@/$(node_ip $i)}
    cmd=${cmd//@OUT@/$dir/n$i.blob}
    cmd=${cmd//@I@/$i}
    late=0
    [ "$name" != p2p ] || late=$(node_late "$i")
    # shellcheck disable=SC2086
    timeout -k 5 "$tmo" ip netns exec "$(node_ns $i)" "${NSENV[@]}" "$WORK/run.sh" "$((t0 + late * 1000000))" "$dir/n$i" $cmd &
    pids+=($!)
  done
  log "$name: $NODES nodes start together"
  if [ "$name" = p2p ]; then sample_rss "$dir" & RSS_SAMPLER=$!; fi
  for p in "${pids[@]}"; do wait "$p" || true; done
  [ "$name" != p2p ] || { kill "$RSS_SAMPLER" 2>/dev/null; wait "$RSS_SAMPLER" 2>/dev/null || true; }
  sleep 1 # the registry logs a request when it ends
  [ "$name" != p2p ] || stop_link_sampler
  : >"$dir/runs"
  for ((i = 1; i <= NODES; i++)); do
    local s e rc sha grp=""
    read -r s e rc sha <"$dir/n$i.res" || { ok=0; continue; }
    local el=$(((e - t0) / 1000)) own=$(((e - s) / 1000))
    [ "$rc" = 0 ] && [ "$sha" = "${EXPECT:-$SHA}" ] || { ok=0; log "$name: node $i failed (rc $rc): $(tail -n 3 "$dir/n$i.log")"; }
    [ $el -gt $last ] && last=$el
    [ "$(node_mbit $i)" = "$MBIT" ] || grp=S
    [ "$name" != p2p ] || [ "$(node_late $i)" = 0 ] || grp=${grp}L
    printf '%s %s %s %s\n' "n$i" "$(awk -v a=$((s - t0)) 'BEGIN{printf "%.2f", a/1e6}')" \
      "$(awk -v a=$((e - t0)) 'BEGIN{printf "%.2f", a/1e6}')" "${grp:--}" >>"$dir/runs"
    R[$name.own.$i]=$own
    printf '  %-7s node %2d done %7.2f s (%7.2f s from its own start)%s rc=%s sha256 %s\n' "$name" "$i" \
      "$(awk -v m=$el 'BEGIN{print m/1000}')" "$(awk -v m=$own 'BEGIN{print m/1000}')" \
      "${grp:+ [$grp]}" "$rc" "$([ "$sha" = "${EXPECT:-$SHA}" ] && echo ok || echo BAD)"
  done
  R[$name.last]=$(awk -v m=$last 'BEGIN{printf "%.2f", m/1000}')
  R[$name.origin_x]=$(awk -v b="$(($(origin_bytes) - b0))" -v s="${SCEN_SIZE:-$SIZE}" 'BEGIN{printf "%.3f", b/s}')
  R[$name.ok]=$ok
  log "$name: last node ${R[$name.last]} s, origin served ${R[$name.origin_x]} x the blob, all ok=$ok"
  T0=$t0
  [ "$name" != p2p ] || links_report "$dir"
}

# ---------------------------------------------------------------- where the time goes
start_link_sampler() { # DIR: one sampler process in the hub namespace (no routes there)
  local i k
  : >"$1/links.spec"
  for ((i = 1; i <= NODES; i++)); do
    echo "n$i $i $(node_ns $i) ${PEER_PIDS[$((i - 1))]} $(($(node_mbit $i) * 1000000)) $(node_ip $i):8101" >>"$1/links.spec"
  done
  echo "origin 0 $REG_NS $ORIGIN_PID $((MBIT * 1000000)) -" >>"$1/links.spec"
  echo "sched -1 $SCH_NS $SCHED_PID $((MBIT * 1000000)) -" >>"$1/links.spec"
  bg "$HUB" "$1/links.log" python3 "$SRC/tests/bench/p2p/link_sampler.py" sample "$1/links.spec" "$1/links.csv" 0.5
  LINK_SAMPLER=$LAST
  # its first rows (the baseline of every counter) before anything starts
  for ((k = 0; k < 100; k++)); do [ "$(cat "$1/links.csv" 2>/dev/null | wc -l)" -lt 2 ] || break; sleep 0.1; done
}
stop_link_sampler() { stop_pid "$LINK_SAMPLER"; }
links_report() { # DIR: per-node summary, the plot, groups against their bounds
  local dir=$1 tend ttl
  echo "  where the time goes (p2p round, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
  python3 "$SRC/tests/bench/p2p/link_sampler.py" report "$dir/links.csv" "$dir/runs" "$dir" "$T0" || log "link report failed"
  if command -v gnuplot >/dev/null && [ -s "$dir/links.dat" ]; then
    tend=$(awk -v l="${R[p2p.last]}" 'BEGIN{printf "%d", l + 3}')
    ttl="p2p: $NODES nodes, ${SIZE_MIB} MiB, ${MBIT} Mbit/s links"
    [ $N_SLOW = 0 ] || ttl="$ttl (nodes $((NODES - N_SLOW + 1))-$NODES at ${SLOW_MBIT})"
    [ $N_LATE = 0 ] || ttl="$ttl, nodes $((NODES - N_LATE + 1))-$NODES ${LATE_S} s late"
    ttl="$ttl: last node ${R[p2p.last]} s, bound ${BOUND} s, origin ${R[p2p.origin_x]} x"
    gnuplot -e "dir='$dir'; out='$dir/links.png'; ttl='$ttl'; nodes=$NODES; tend=$tend; slots=16" \
      "$SRC/tests/bench/p2p/links.gp" 2>"$dir/gnuplot.log" || log "gnuplot failed: $(tail -n 3 "$dir/gnuplot.log")"
  fi
  if [ -n "$LINKS_OUT" ]; then
    mkdir -p "$(dirname "$LINKS_OUT")"
    cp "$dir/links.csv" "$LINKS_OUT.csv"
    { echo "# t0_us $T0"; cat "$dir/runs"; } >"$LINKS_OUT.runs"
    [ ! -s "$dir/links.png" ] || cp "$dir/links.png" "$LINKS_OUT.png"
    log "links: $LINKS_OUT.csv${LINKS_OUT:+ $LINKS_OUT.png}"
  fi
  group_report
}
group_report() { # each group of nodes against the bound of its own links, from its own start
  local i g b n worst
  for g in fast slow late ontime; do
    worst=0 n=0
    for ((i = 1; i <= NODES; i++)); do
      case $g in
        fast) [ $N_SLOW -gt 0 ] && [ "$(node_mbit $i)" = "$MBIT" ] || continue ;;
        slow) [ $N_SLOW -gt 0 ] && [ "$(node_mbit $i)" != "$MBIT" ] || continue ;;
        late) [ "$(node_late $i)" != 0 ] || continue ;;
        ontime) [ $N_LATE -gt 0 ] && [ "$(node_late $i)" = 0 ] || continue ;;
      esac
      n=$((n + 1))
      [ "${R[p2p.own.$i]:-0}" -le $worst ] || worst=${R[p2p.own.$i]}
    done
    [ $n -gt 0 ] || continue
    b=$(awk -v s=$SIZE -v r="$([ $g = slow ] && echo "$SLOW_MBIT" || echo "$MBIT")" 'BEGIN{printf "%.2f", s*8/(r*1e6)}')
    R[p2p.group.$g]=$(printf 'p2p group %-6s nodes=%d last(from own start)=%s s bound=%s s last/bound=%s (goal <= 1.3)' "$g" "$n" \
      "$(awk -v m=$worst 'BEGIN{printf "%.2f", m/1000}')" "$b" "$(awk -v m=$worst -v b="$b" 'BEGIN{printf "%.3f", m/1000/b}')")
    echo "  ${R[p2p.group.$g]}"
  done
}

sample_rss() { # max RSS of all peers while the p2p round runs
  local max=0 p v
  while :; do
    for p in "${PEER_PIDS[@]}"; do v=$(rss_kib "$p"); [ "${v:-0}" -gt $max ] && max=$v; done
    echo $max >"$1/rss_max"
    sleep 0.25
  done
}

want direct && scenario direct "curl -sS -f -o @OUT@ http://$REG_IP:$PORT/v2/$REPO/blobs/$DIGEST"

PULLTHROUGH=0
pullthrough() { # the docker-registry pull-through cache of the origin, started once
  [ $PULLTHROUGH = 1 ] && return 0
  start_registry "$MIR_NS" "$WORK/mirror" "$MIR_IP" "http://$REG_IP:$PORT"
  PULLTHROUGH=1
}
if want mirror; then
  pullthrough
  scenario mirror "curl -sS -f -o @OUT@ http://$MIR_IP:$PORT/v2/$REPO/blobs/$DIGEST"
fi

if want p2p || want containerd-mirror; then
  mkdir -p "$WORK/sched"
  bg "$SCH_NS" "$WORK/sched/log" "$BIN/chunkfly-scheduler" --listen "$SCH_IP:8002" --http "$SCH_IP:8003"
  SCHED_PID=$LAST
  wait_http "$SCH_NS" "http://$SCH_IP:8003/healthz" "$LAST"
  printf 'origin_plain_http = true\n' >"$WORK/peer.conf"
  for kv in "${PEER_SET[@]}"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}" >>"$WORK/peer.conf"; done
  PEER_PIDS=()
  for ((i = 1; i <= NODES; i++)); do
    mkdir -p "$WORK/p$i/cache"
    bg "$(node_ns $i)" "$WORK/p$i/log" "$BIN/chunkfly-peer" --config "$WORK/peer.conf" \
      --listen "$(node_ip $i):8100" --scheduler "$SCH_IP:8002" --cache-dir "$WORK/p$i/cache" \
      --api-socket "$WORK/p$i/peer.sock" --http "$(node_ip $i):8101" \
      --set mirror_listen="$(node_ip $i):8104" --set mirror_upstreams="http://$REG_IP:$PORT" \
      --set mirror_default_upstream="http://$REG_IP:$PORT"
    PEER_PIDS+=("$LAST")
  done
  for ((i = 1; i <= NODES; i++)); do wait_http "$(node_ns $i)" "http://$(node_ip $i):8101/healthz" "${PEER_PIDS[$((i - 1))]}"; done
  sleep 2
  RSS_IDLE=0
  for p in "${PEER_PIDS[@]}"; do v=$(rss_kib "$p"); [ "$v" -gt $RSS_IDLE ] && RSS_IDLE=$v; done
  log "p2p: $NODES peers up; idle RSS max ${RSS_IDLE} KiB"
fi

if want p2p; then
  scenario p2p "$BIN/chunkfly get -q --timeout 600 --peer $WORK/p@I@/peer.sock $REG_IP:$PORT/$REPO@$DIGEST -o @OUT@"
  RSS_RUN=$(cat "$WORK/p2p/rss_max" 2>/dev/null || echo 0)
  print_peer_metrics "p2p    " 'bytes_from_(parents|origin)'

  # loopback serving inside node 1 (its own address is routed over its lo: unshaped)
  log "loopback: piece serving from page cache vs a plain sendfile loop (node 1)"
  in_ns "$(node_ns 1)" "$BIN/chunkfly" get -q --peer "$WORK/p1/peer.sock" "$REG_IP:$PORT/$REPO@$DIGEST" -o "$WORK/lo.blob"
  cat "$WORK/lo.blob" >/dev/null
  onlink "$(node_ns 1)" "$(node_ip 1)"
  SERVE=$(in_ns "$(node_ns 1)" "$BUILD/tests/piece_bench" peer --addr "$(node_ip 1):8100" --task "$DIGEST" \
    --socket "$WORK/p1/peer.sock" --rounds 3)
  SENDF=$(in_ns "$(node_ns 1)" "$BUILD/tests/piece_bench" sendfile --file "$WORK/lo.blob" --bind "$(node_ip 1)" --rounds 3)
  echo "  loopback $SERVE"
  echo "  loopback $SENDF"
  SERVE_RATIO=$(awk -v a="${SERVE##*mib_s=}" -v b="${SENDF##*mib_s=}" 'BEGIN{printf "%.3f", a/b}')
  RSS_AFTER=0
  for p in "${PEER_PIDS[@]}"; do v=$(rss_kib "$p"); [ "$v" -gt $RSS_AFTER ] && RSS_AFTER=$v; done
fi

# ---------------------------------------------------------------- containerd scenarios
if want_ctrd; then
  IMG_REF=$REG_IP:$PORT/bench/image:v1
  log "containerd: building a ${IMAGE_MIB} MiB 4-layer image (random data) and pushing it"
  in_ns "$REG_NS" "$MKIMG" --registry "$REG_IP:$PORT" --repo bench/image --tag v1 \
    --size-mb "$IMAGE_MIB" --layers 4 --text-pct 0 --seed 11 --workdir "$WORK/img" \
    >"$WORK/img.log" 2>&1 || die "image build failed: $(tail -n 5 "$WORK/img.log")"
  rm -rf "$WORK/img"
  # what every node must end up holding: the manifest, its config and its layers
  in_ns "$REG_NS" curl -sS -f --noproxy '*' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -o "$WORK/manifest.json" "http://$REG_IP:$PORT/v2/bench/image/manifests/v1" || die "no manifest"
  read -r IMG_BYTES IMG_LAYERS < <(python3 -c '
import hashlib, json, sys
raw = open(sys.argv[1], "rb").read()
m = json.loads(raw)
ds = [m["config"]] + m["layers"]
with open(sys.argv[2], "w") as f:
    for d in sorted(["sha256:" + hashlib.sha256(raw).hexdigest()] + [x["digest"] for x in ds]):
        f.write(d + "\n")
print(sum(x["size"] for x in ds), len(m["layers"]))
' "$WORK/manifest.json" "$WORK/expect.list")
  CTRD_EXPECT=$(sha256sum <"$WORK/expect.list" | cut -d' ' -f1)
  log "containerd: image $IMG_REF: $IMG_LAYERS layers, $IMG_BYTES bytes of blobs"
  # ctrd_fetch.sh SOCK HOSTS_DIR|- REF OUT: fetch all content of REF, list what the store holds
  printf '%s\n' '#!/usr/bin/env bash' 'sock=$1 hosts=$2 ref=$3 out=$4' 'args=(--plain-http)' \
    '[ "$hosts" = - ] || args+=(--hosts-dir "$hosts")' \
    'ctr -a "$sock" content fetch "${args[@]}" "$ref" >/dev/null || exit 1' \
    'ctr -a "$sock" content ls -q | sort >"$out"' >"$WORK/ctrd_fetch.sh"
  chmod 755 "$WORK/ctrd_fetch.sh"
  CTRD_PIDS=()
  start_ctrds() { # NAME: a containerd per node, own root/state/socket
    local i d k
    CTRD_PIDS=()
    for ((i = 1; i <= NODES; i++)); do
      d=$WORK/ctrd-$1-$i
      mkdir -p "$d"
      printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/t.sock"\n' \
        "$d" "$d" "$d" "$d" >"$d/config.toml"
      bg "$(node_ns $i)" "$d/containerd.log" containerd --config "$d/config.toml"
      CTRD_PIDS+=("$LAST")
    done
    for ((i = 1; i <= NODES; i++)); do
      d=$WORK/ctrd-$1-$i
      for ((k = 0; k < 100; k++)); do [ -S "$d/c.sock" ] && break; sleep 0.1; done
      ctr -a "$d/c.sock" version >/dev/null 2>&1 || die "containerd $1/$i did not start"
    done
  }
  stop_ctrds() {
    local p i
    for p in "${CTRD_PIDS[@]}"; do stop_pid "$p"; done
    for ((i = 1; i <= NODES; i++)); do umount -R "$WORK/ctrd-$1-$i/root" 2>/dev/null || true; done
  }
  hosts_toml() { # DIR HOST-URL: containerd asks HOST-URL first, the origin after
    mkdir -p "$1/$REG_IP:$PORT"
    printf 'server = "http://%s:%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n' \
      "$REG_IP" "$PORT" "$2" >"$1/$REG_IP:$PORT/hosts.toml"
  }
  ctrd_scenario() { # NAME HOST-URL-TEMPLATE|-  (@IP@ = the node's address)
    local name=$1 i hd=-
    start_ctrds "$name"
    for ((i = 1; i <= NODES; i++)); do
      [ "$2" = - ] || hosts_toml "$WORK/hosts-$name-$i" "${2//@IP@/$(node_ip $i)}"
    done
    [ "$2" = - ] || hd="$WORK/hosts-$name-@I@"
    EXPECT=$CTRD_EXPECT SCEN_SIZE=$IMG_BYTES scenario "$name" \
      "$WORK/ctrd_fetch.sh $WORK/ctrd-$name-@I@/c.sock $hd $IMG_REF @OUT@"
    stop_ctrds "$name"
  }
  mirror_bytes() { # sum of the peers' mirror_bytes_total
    local i v sum=0
    for ((i = 1; i <= NODES; i++)); do
      v=$(peer_metrics "$i" | awk '$1 == "chunkfly_peer_mirror_bytes_total" {print $2}')
      sum=$((sum + ${v:-0}))
    done
    echo $sum
  }
  want containerd-direct && ctrd_scenario containerd-direct -
  if want containerd-pullthrough; then
    pullthrough
    ctrd_scenario containerd-pullthrough "http://$MIR_IP:$PORT"
  fi
  if want containerd-mirror; then
    mb0=$(mirror_bytes)
    ctrd_scenario containerd-mirror "http://@IP@:8104"
    R[containerd-mirror.via_mirror]=$(awk -v b=$(($(mirror_bytes) - mb0)) -v s="$IMG_BYTES" -v n=$NODES 'BEGIN{printf "%.3f", b/(s*n)}')
    print_peer_metrics containerd-mirror 'bytes_from_(parents|origin)|mirror_bytes'
    log "containerd-mirror: the mirrors served ${R[containerd-mirror.via_mirror]} x (image x nodes)"
  fi
fi

echo
echo "bandwidth bound (one link carries the blob once): ${BOUND} s"
for n in direct mirror p2p; do
  want $n || continue
  printf '%-7s last node %8s s  origin bytes %6s x blob  all sha256 ok: %s\n' "$n" "${R[$n.last]}" "${R[$n.origin_x]}" "$([ "${R[$n.ok]}" = 1 ] && echo yes || echo NO)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else printf "-" }'; }
if want p2p; then
  echo "p2p vs direct (time): $(ratio "${R[p2p.last]}" "${R[direct.last]:-0}")   vs mirror: $(ratio "${R[p2p.last]}" "${R[mirror.last]:-0}")   vs bound: $(ratio "${R[p2p.last]}" "$BOUND")"
  for g in fast slow late ontime; do [ -z "${R[p2p.group.$g]:-}" ] || echo "${R[p2p.group.$g]}"; done
  echo "peer RSS max: idle ${RSS_IDLE} KiB (target <= 10240), during the run ${RSS_RUN} KiB, after ${RSS_AFTER} KiB"
  echo "loopback piece serving / sendfile loop: $SERVE_RATIO (target >= 0.9)"
  printf 'p2p bench: nodes=%d size=%dMiB link=%dMbit origin_x=%s last=%s direct_last=%s mirror_last=%s bound=%s vs_direct=%s vs_mirror=%s vs_bound=%s serve_ratio=%s rss_idle_kib=%s rss_run_kib=%s\n' \
    "$NODES" "$SIZE_MIB" "$MBIT" "${R[p2p.origin_x]}" "${R[p2p.last]}" "${R[direct.last]:--}" "${R[mirror.last]:--}" "$BOUND" \
    "$(ratio "${R[p2p.last]}" "${R[direct.last]:-0}")" "$(ratio "${R[p2p.last]}" "${R[mirror.last]:-0}")" "$(ratio "${R[p2p.last]}" "$BOUND")" \
    "$SERVE_RATIO" "$RSS_IDLE" "$RSS_RUN"
fi
if want_ctrd; then
  IMG_BOUND=$(awk -v b="$IMG_BYTES" -v r=$MBIT 'BEGIN{printf "%.2f", b*8/(r*1e6)}')
  echo "containerd: image blobs $IMG_BYTES bytes, bound (one link carries them once) ${IMG_BOUND} s"
  for n in containerd-direct containerd-pullthrough containerd-mirror; do
    want $n || continue
    printf '%-22s last node %8s s  origin bytes %6s x image  all content ok: %s\n' "$n" "${R[$n.last]}" "${R[$n.origin_x]}" "$([ "${R[$n.ok]}" = 1 ] && echo yes || echo NO)"
  done
  if want containerd-mirror; then
    printf 'containerd bench: nodes=%d image=%sB link=%dMbit mirror_origin_x=%s mirror_last=%s direct_last=%s pullthrough_last=%s bound=%s vs_direct=%s vs_pullthrough=%s vs_bound=%s via_mirror_x=%s (goals: origin_x <= 1.1, vs_direct <= 0.25)\n' \
      "$NODES" "$IMG_BYTES" "$MBIT" "${R[containerd-mirror.origin_x]}" "${R[containerd-mirror.last]}" \
      "${R[containerd-direct.last]:--}" "${R[containerd-pullthrough.last]:--}" "$IMG_BOUND" \
      "$(ratio "${R[containerd-mirror.last]}" "${R[containerd-direct.last]:-0}")" \
      "$(ratio "${R[containerd-mirror.last]}" "${R[containerd-pullthrough.last]:-0}")" \
      "$(ratio "${R[containerd-mirror.last]}" "$IMG_BOUND")" "${R[containerd-mirror.via_mirror]}"
  fi
fi
for n in direct mirror p2p containerd-direct containerd-pullthrough containerd-mirror; do want $n && [ "${R[$n.ok]}" != 1 ] && exit 1; done
exit 0
