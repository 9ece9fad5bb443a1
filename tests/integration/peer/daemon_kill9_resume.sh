#!/bin/bash
# kill -9 of a downloading peer 20 times, then restart (real registry, scheduler, peers on
# 127.0.0.11-12). Peer 1 holds the blob and uploads it slowly (upload_bandwidth); peer 2, the
# victim, downloads it through the local API and is killed at 20 random moments (seed printed,
# CF_SEED to replay). After each kill:
#  - the victim is gone, not alive as a zombie, and its read client saw a correct prefix;
#  - the LMDB env opens (mdb_stat -a) and its `blobs` record decodes (mdb_dump, checked here
#    against docs/peer-cache.md), and every piece its bitmap says durable holds the right bytes
#    in the data file;
#  - on restart on the same cache dir, `stat` reports exactly the recorded pieces, never more
#    than the total and never fewer than before the kill minus the unflushed window;
#  - a local API read of a sub-range of every present run gives the reference bytes.
# The reads that look at stored pieces before the blob is verified ask for cut-through
# (DAEMON_CLIENT_UV=1, as chunkfly-mount does): a verified-only read would wait for the blob.
# Then the download completes: sha256 of a full read, complete=1, one entry; SIGTERM exit 0 and
# no sanitizer report in any victim log. Size: CF_K9_MIB, default 48 MiB (32 under Sanitize, at half
# the upload rate).
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/daemon_lib.sh"

sanitize() { grep -q '^CMAKE_BUILD_TYPE:[A-Z]*=Sanitize$' "$CHUNKFLY_BUILD/CMakeCache.txt" 2>/dev/null; }
if ! command -v mdb_stat >/dev/null || ! command -v mdb_dump >/dev/null; then skip "lmdb-utils (mdb_stat, mdb_dump) not installed"; fi
SEED=${CF_SEED:-$((($$ ^ $(date +%s)) & 32767))}
RANDOM=$SEED
KILLS=${CF_K9_KILLS:-20}
# The victim goes on downloading between a restart and the next kill (the checks take 1-2 s on a
# loaded machine: ~2 pieces per round at 1 MB/s), so the blob must outlast 20 rounds of that.
if sanitize; then MIB=${CF_K9_MIB:-32}; RATE=500000; else MIB=${CF_K9_MIB:-48}; RATE=1000000; fi
note "seed $SEED (CF_SEED to replay), blob ${MIB} MiB, parent upload ${RATE} B/s, $KILLS kills"

start_registry 127.0.0.9
REPO=test/kill9
make_blob "$T/blob" "$MIB"
push_blob "$REPO" "$T/blob"
SIZE=$(stat -c %s "$T/blob")
HEX=${BLOB#sha256:}
start_scheduler
check_sha() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$HEX" ] || fail "$1: sha256 differs"; }
stat2() { "$CLIENT_BIN" "$T/p2.sock" stat "$BLOB"; }
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }

start_peer 1 --set upload_bandwidth=$RATE
get 1 0 "$SIZE" "$T/o1" || fail "peer 1 read"
check_sha "$T/o1"
for _ in $(seq 50); do grep -q "digest list published" "$T/peer1.log" && break; sleep 0.1; done

# index_check: the victim is down; checks its LMDB env and record, compares every durable
# piece of the data file with the reference, prints "count piece_size" then one "first last"
# line per run of durable pieces (nothing at all when there is no record yet).
index_check() {
    local env="$T/cache2/index"
    [ -e "$env/data.mdb" ] || return 0
    mdb_stat -a "$env" >"$T/mdbstat" 2>&1 || { cat "$T/mdbstat" >&2; fail "mdb_stat -a failed"; }
    mdb_dump -s blobs "$env" >"$T/dump" 2>"$T/dump.err" || {
        grep -q MDB_NOTFOUND "$T/dump.err" && return 0 # db not created yet
        cat "$T/dump.err" >&2; fail "mdb_dump -s blobs failed"
    }
    python3 - "$T/dump" "$HEX" "$SIZE" "$T/blob" "$T/cache2/data/${HEX:0:2}/$HEX" <<'PY'
import struct, sys
dump, hexd, size, ref, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
lines = open(dump).read().split("HEADER=END\n", 1)[1].split("DATA=END")[0].split()
recs = {bytes.fromhex(lines[i]): bytes.fromhex(lines[i + 1]) for i in range(0, len(lines), 2)}
def bad(m): sys.exit("index: " + m)
if len(recs) > 1: bad("%d blob records, expected at most 1" % len(recs))
if not recs: sys.exit(0)
key, v = next(iter(recs.items()))
if key.hex() != hexd: bad("record key %s is not the blob" % key.hex())
if len(v) < 48: bad("record of %d bytes" % len(v))
ver, flags, alg, psz, length, count, pins, _c, _a, olen, blen = struct.unpack("<BBBxIQIIQQHxxI", v[:48])
if ver != 1: bad("version %d" % ver)
if length != size: bad("length %d, blob is %d" % (length, size))
if psz == 0 or psz % 4096: bad("piece size %d" % psz)
if count != -(-length // psz): bad("piece count %d for length %d / %d" % (count, length, psz))
if blen != -(-count // 8) or len(v) != 48 + olen + blen: bad("bitmap %d / record %d bytes" % (blen, len(v)))
bm = v[48 + olen:]
have = [i for i in range(count) if bm[i // 8] >> (i % 8) & 1]
if any(bm[i // 8] >> (i % 8) & 1 for i in range(count, blen * 8)): bad("bits past the count")
if flags & 1 and len(have) != count: bad("verified but %d/%d pieces" % (len(have), count))
with open(ref, "rb") as r, open(data, "rb") as d:
    import os
    if os.fstat(d.fileno()).st_size not in (0, length): bad("data file size %d" % os.fstat(d.fileno()).st_size)
    for i in have:
        r.seek(i * psz); d.seek(i * psz)
        if r.read(psz) != d.read(psz): bad("durable piece %d: data file bytes differ from the blob" % i)
print(len(have), psz)
runs, s = [], None
for i in range(count + 1):
    if i < count and i in set(have):
        s = i if s is None else s
    elif s is not None:
        runs.append((s, i - 1)); s = None
for a, b in runs: print(a, b)
PY
}

# prefix_ok FILE: a read cut by the kill got a (possibly empty) correct prefix of the blob.
prefix_ok() {
    local n
    n=$(stat -c %s "$1")
    [ "$n" -le "$SIZE" ] || fail "read cut by kill $k got $n bytes, more than the blob"
    cmp -s -n "$n" "$1" "$T/blob" || fail "read cut by kill $k served wrong bytes ($n bytes, seed $SEED)"
}

WIN=$(((RATE + 1048575) / 1048576 + 2)) # pieces that may arrive in one flush period (250 ms tick) + slack
total=0 prev=0 regress=0 reads=0 origin=0
start=$(date +%s)
start_peer 2 --set mesh_stall=60s
: >"$T/peer2-runs.log"
for k in $(seq "$KILLS"); do
    DAEMON_CLIENT_UV=1 get 2 0 "$SIZE" "$T/part" 2>/dev/null & g=$!
    ms=$((50 + RANDOM % 750)) # the random moment: 50..800 ms into this run's download
    sleep "0.$(printf %03d "$ms")"
    peer_alive_or_fail 2
    before=$(stat2 2>/dev/null | field have || true)
    complete=$(stat2 2>/dev/null | field complete || true)
    [ "${complete:-0}" = 0 ] || fail "kill $k: the download completed before the kill: lower the rate"
    origin=$(metric 2 bytes_from_origin_total 2>/dev/null || echo "$origin")
    kill -9 "${PEER_PID[2]}"
    for _ in $(seq 50); do is_alive "${PEER_PID[2]}" || break; sleep 0.1; done
    st=$(ps -o stat= -p "${PEER_PID[2]}" 2>/dev/null || true)
    [ -z "$st" ] || [[ "$st" == Z* ]] || fail "kill $k: victim in state '$st' 5 s after kill -9"
    wait "${PEER_PID[2]}" 2>/dev/null || true
    ! is_alive "${PEER_PID[2]}" || fail "kill $k: victim still alive after kill -9"
    [ -z "$(ps -o stat= -p "${PEER_PID[2]}" 2>/dev/null || true)" ] || fail "kill $k: victim not reaped"
    wait $g 2>/dev/null || true
    prefix_ok "$T/part"
    cat "$T/peer2.log" >>"$T/peer2-runs.log"
    index_check >"$T/idx" || fail "kill $k: index inconsistent (seed $SEED)"
    durable=$(head -1 "$T/idx" | cut -d' ' -f1) psz=$(head -1 "$T/idx" | cut -d' ' -f2)
    start_peer 2 --set mesh_stall=60s
    peer_alive_or_fail 2
    s=$(stat2 || true)
    if [ -z "$durable" ]; then
        case $s in "error "*) ;; *) [ "$(echo "$s" | field have)" = 0 ] || fail "kill $k: no record but stat says $s" ;; esac
        have=0
    else
        have=$(echo "$s" | field have) pieces=$(echo "$s" | field pieces)
        [ "$have" = "$durable" ] || fail "kill $k: stat have=$have but the index records $durable pieces"
        [ "$have" -le "$pieces" ] || fail "kill $k: have=$have > pieces=$pieces"
    fi
    [ "$have" -ge "$((${before:-0} - WIN))" ] || fail "kill $k: have $have after restart, ${before:-0} before the kill (window $WIN)"
    [ "$have" -ge "$prev" ] || regress=$((regress + 1))
    # every run the index says present: a random sub-range through the local API
    while read -r a b; do
        off=$((a * psz + RANDOM % psz)) end=$(((b + 1) * psz - RANDOM % psz))
        [ "$end" -le "$SIZE" ] || end=$SIZE
        [ "$end" -gt "$off" ] || continue
        DAEMON_CLIENT_UV=1 get 2 "$off" "$((end - off))" "$T/sub" || fail "kill $k: read [$off,$end) of present pieces $a-$b"
        [ "$(stat -c %s "$T/sub")" = "$((end - off))" ] || fail "kill $k: read [$off,$end) returned $(stat -c %s "$T/sub") bytes"
        cmp -s -i "$off:0" -n "$((end - off))" "$T/blob" "$T/sub" ||
            fail "kill $k: read [$off,$end) of present pieces $a-$b: wrong bytes served (seed $SEED)"
        reads=$((reads + 1))
    done < <(tail -n +2 "$T/idx")
    echo "kill $k: have ${before:-0} before, $have durable after restart, origin bytes $origin"
    prev=$have total=$((total + 1))
done
el=$(($(date +%s) - start))

note "complete the download after $KILLS kills"
get 2 0 "$SIZE" "$T/o2" || fail "victim full read after the last restart"
check_sha "$T/o2"
for _ in $(seq 50); do stat2 | grep -q complete=1 && break; sleep 0.1; done
stat2 | grep -q complete=1 || fail "not complete after the full read: $(stat2)"
[ "$("$CLIENT_BIN" "$T/p2.sock" list | wc -l)" = 1 ] || fail "list is not one entry"
echo "kills=$total in ${el}s, sub-range reads=$reads, restarts with fewer pieces than before=$regress, origin bytes=$(metric 2 bytes_from_origin_total)"
peer_alive_or_fail 1
finish_peers
cat "$T/peer2.log" >>"$T/peer2-runs.log"
if grep -q "Sanitizer\|runtime error:" "$T/peer2-runs.log"; then fail "sanitizer report in a victim log"; fi
echo PASS
