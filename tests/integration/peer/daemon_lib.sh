# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the sourcing test scripts
# Helpers for the chunkfly-peer daemon tests (source after tests/lib/testlib.sh).
# Peers run on 127.0.0.11.., the scheduler on 127.0.0.10, the registry on 127.0.0.9.

: "${PEER_BIN:=$CHUNKFLY_BIN/chunkfly-peer}"
: "${CLIENT_BIN:=$CHUNKFLY_BUILD/tests/daemon_client}"
need_bin chunkfly-peer
[ -x "$CLIENT_BIN" ] || fail "$CLIENT_BIN not built"

# push_blob REPO FILE: uploads FILE as a blob of REPO to $REGISTRY; sets BLOB (sha256:...).
push_blob() {
    local repo=$1 file=$2 loc h
    h=$(sha256sum "$file" | cut -d' ' -f1)
    loc=$(curl -fsSi -X POST "http://$REGISTRY/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    [ -n "$loc" ] || fail "registry gave no upload location"
    case $loc in http*) ;; *) loc="http://$REGISTRY$loc" ;; esac
    case $loc in *\?*) loc="$loc&digest=sha256:$h" ;; *) loc="$loc?digest=sha256:$h" ;; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" "$loc" \
        >/dev/null || fail "blob upload failed"
    BLOB="sha256:$h"
}

# start_scheduler: chunkfly-scheduler on 127.0.0.10; sets SCHED (addr) and SCHED_PID.
start_scheduler() {
    need_bin chunkfly-scheduler
    local port=${SCHED_PORT:-$(free_port 127.0.0.10)} hport
    SCHED_PORT=$port
    hport=$(free_port 127.0.0.10)
    bg_start "$T/sched.log.$port.$RANDOM" "$CHUNKFLY_BIN/chunkfly-scheduler" \
        --listen "127.0.0.10:$port" --http "127.0.0.10:$hport" --log-level info "$@"
    SCHED_PID=$CF_LAST_PID
    SCHED="127.0.0.10:$port"
    SCHED_HTTP="127.0.0.10:$hport"
    wait_port 127.0.0.10 "$port"
}

# start_peer N [ARGS...]: peer N on 127.0.0.(10+N); socket $T/pN.sock, cache $T/cacheN,
# metrics on PEER_HTTP[N]; PEER_PID[N]. Extra args go to chunkfly-peer.
declare -A PEER_PID PEER_HTTP PEER_LISTEN
start_peer() {
    local n=$1; shift
    local ip="127.0.0.$((10 + n))" port hport
    port=${PEER_LISTEN_PORT[$n]:-$(free_port "$ip")}
    PEER_LISTEN_PORT[$n]=$port
    hport=$(free_port "$ip")
    local sargs=()
    [ -n "${SCHED:-}" ] && sargs=(--scheduler "$SCHED")
    bg_start "$T/peer$n.log" "${PEER_EXEC:-$PEER_BIN}" --listen "$ip:$port" --http "$ip:$hport" \
        --cache-dir "$T/cache$n" --api-socket "$T/p$n.sock" --log-level debug \
        --set origin_plain_http=true "${sargs[@]}" "$@"
    PEER_PID[$n]=$CF_LAST_PID
    PEER_HTTP[$n]="$ip:$hport"
    PEER_LISTEN[$n]="$ip:$port"
    wait_port "$ip" "$hport"
    for _ in $(seq 50); do [ -S "$T/p$n.sock" ] && break; sleep 0.1; done
}
declare -A PEER_LISTEN_PORT

# metric N NAME: the value of chunkfly_peer_NAME on peer N.
metric() {
    curl -fsS "http://${PEER_HTTP[$1]}/metrics" | awk -v m="chunkfly_peer_$2" '$1==m{print $2}'
}

# get N OFFSET LENGTH OUT: local API read of $BLOB from peer N.
get() {
    "$CLIENT_BIN" "$T/p$1.sock" read "$BLOB" "$REGISTRY/$REPO@$BLOB" "$2" "$3" "$4"
}

# make_blob FILE MiB: deterministic random data.
make_blob() {
    head -c "$(($2 * 1048576 + 12345))" /dev/urandom >"$1"
}

# faults_peer_bin: sets FAULTY to a chunkfly-peer with the test-only faults compiled in: the
# configured build's own when it has them, else one built (chunkfly-peer target only, same build
# type) in $CHUNKFLY_BUILD/faults.
faults_peer_bin() {
    if "$PEER_BIN" --version | grep -q faults; then
        FAULTY=$PEER_BIN
    else
        local bt rc=0
        bt=$(awk -F= '/^CMAKE_BUILD_TYPE:/{print $2}' "$CHUNKFLY_BUILD/CMakeCache.txt" 2>/dev/null)
        note "building chunkfly-peer with -DCHUNKFLY_FAULTS=ON in $CHUNKFLY_BUILD/faults (${bt:-Release})"
        # two tests may configure and build it at once (CI runs them in parallel): both steps
        # under one lock, or one configure sees the other's half-written cache
        (
            flock 9
            cmake -S "$CHUNKFLY_SRC" -B "$CHUNKFLY_BUILD/faults" -DCHUNKFLY_FAULTS=ON \
                -DCMAKE_BUILD_TYPE="${bt:-Release}" >"$T/faults-cmake.log" 2>&1 ||
                { tail -20 "$T/faults-cmake.log"; exit 1; }
            cmake --build "$CHUNKFLY_BUILD/faults" --target chunkfly-peer -j2 \
                >"$T/faults-build.log" 2>&1 ||
                { tail -20 "$T/faults-build.log"; exit 2; }
        ) 9>"$CHUNKFLY_BUILD/faults.lock" || rc=$?
        case $rc in
            0) ;;
            1) fail "cmake of the faults build failed" ;;
            *) fail "faults build failed" ;;
        esac
        FAULTY=$CHUNKFLY_BUILD/faults/bin/chunkfly-peer
    fi
    "$FAULTY" --version | grep -q faults || fail "$FAULTY has no faults compiled in"
}

peer_alive_or_fail() {
    is_alive "${PEER_PID[$1]}" || { tail -30 "$T/peer$1.log" >&2; fail "peer $1 died"; }
}

# finish_peers: SIGTERM every running peer; each must exit 0 (clean shutdown, and under the
# Sanitize build no leak or UB report), and no peer log may hold a sanitizer report.
finish_peers() {
    local n rc
    for n in "${!PEER_PID[@]}"; do
        is_alive "${PEER_PID[$n]}" || continue
        kill "${PEER_PID[$n]}"
        rc=0
        wait "${PEER_PID[$n]}" || rc=$?
        [ "$rc" = 0 ] || { tail -40 "$T/peer$n.log" >&2; fail "peer $n exited $rc after SIGTERM"; }
    done
    if grep -l "Sanitizer\|runtime error:" "$T"/peer*.log 2>/dev/null; then
        fail "sanitizer report in a peer log"
    fi
}
