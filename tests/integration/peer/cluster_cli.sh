#!/usr/bin/env bash
# The `chunkfly` command line against a real peer: --help everywhere, usage errors (exit 2),
# the daemon-not-running message (names the socket, says how to start the daemon), get of a
# blob the registry does not have (clear error, no output file left), get + status + pin/unpin,
# status over the socket alone showing a mesh download's task and its parent.
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/peer/cluster_lib.sh"

note "--help"
for c in "" get status pin unpin; do
    # shellcheck disable=SC2086
    "$CF" $c --help | grep -q "^usage: chunkfly" || fail "chunkfly $c --help"
done
set +e
"$CF" get -o "$T/x" 2>"$T/err"; [ $? = 2 ] || fail "get without a reference: not a usage error"
"$CF" get "127.0.0.1:1/a/b:tag" -o "$T/x" 2>"$T/err"; [ $? = 2 ] || fail "get of a tag: not a usage error"
grep -q "names no blob" "$T/err" || fail "get of a tag: unclear error: $(cat "$T/err")"
"$CF" frobnicate 2>"$T/err"; [ $? = 2 ] || fail "unknown command: not a usage error"
set -e

note "daemon not running"
if "$CF" status --peer "$T/nobody.sock" 2>"$T/err"; then fail "status without a daemon succeeded"; fi
cat "$T/err"
grep -q "cannot connect to peer daemon at $T/nobody.sock" "$T/err" || fail "socket not named"
grep -q "chunkfly-peer --api-socket $T/nobody.sock" "$T/err" || fail "no hint how to start it"
if CHUNKFLY_PEER_SOCKET="$T/env.sock" "$CF" get "127.0.0.1:1/a/b@sha256:$(printf '%064d' 0)" -o "$T/x" 2>"$T/err"; then
    fail "get without a daemon succeeded"
fi
grep -q "$T/env.sock" "$T/err" || fail "\$CHUNKFLY_PEER_SOCKET not used"
[ ! -e "$T/x" ] && [ ! -e "$T/x.part" ] || fail "output left behind"

cluster_up --peers 2 --schedulers 1
random_file "$T/blob" 6 cli
d=$(push_blob "$REGISTRY" cli/app "$T/blob")

note "a blob the registry does not have"
missing="sha256:$(printf 'missing' | sha256sum | cut -d' ' -f1)"
if "$CF" get -q --peer "$PEER_SOCK_1" "$REGISTRY/cli/app@$missing" -o "$T/m" 2>"$T/err"; then
    fail "get of a missing blob succeeded"
fi
cat "$T/err"
grep -q "failed after 0 bytes: peer: " "$T/err" || fail "missing blob: unclear error"
[ ! -e "$T/m" ] && [ ! -e "$T/m.part" ] || fail "output left behind for a missing blob"

note "get, status, pin/unpin"
"$CF" get --peer "$PEER_SOCK_1" "$REGISTRY/cli/app@$d" -o "$T/out" 2>"$T/get.err" || fail "get"
cat "$T/get.err"
cmp -s "$T/blob" "$T/out" || fail "copy differs"
grep -q "sha256 verified" "$T/get.err" || fail "no final line"
"$CF" get -q --plain-http --peer "$PEER_SOCK_2" "$REGISTRY/cli/app@$d" -o "$T/out2" || fail "get --plain-http"
cmp -s "$T/blob" "$T/out2" || fail "--plain-http copy differs"
note "status over the socket alone shows peer 2's task and its parent, peer 1"
# the task verifies the whole blob's sha256 after the last byte was read: wait for "done"
for _ in $(seq 50); do
    "$CF" status --peer "$PEER_SOCK_2" >"$T/status2"
    grep -q "^${d:0:23} *done " "$T/status2" && break
    sleep 0.1
done
cat "$T/status2"
grep -q "^tasks: [1-9]" "$T/status2" || fail "status shows no tasks"
grep -q "^${d:0:23} *done .*($PEER_ADDR_1, [1-9][0-9]*)" "$T/status2" ||
    fail "status does not show the done task with its parent at $PEER_ADDR_1"
"$CF" status --raw-tasks --peer "$PEER_SOCK_2" |
    awk -F'\t' -v d="$d" -v a="$PEER_ADDR_1" '$1 == d && $2 == "done" && $3 == $4 && $5 > 0 && $8 == a && $9 == "ok" {f = 1} END {exit !f}' ||
    fail "status --raw-tasks does not show the task fetched from parent $PEER_ADDR_1"
"$CF" status --peer "$PEER_SOCK_1" --http "$PEER_HTTP_1" | tee "$T/status"
grep -q "^$d .* complete" "$T/status" || fail "status does not list the blob as complete"
grep -q "chunkfly_peer_bytes_from_origin_total" "$T/status" || fail "status --http shows no metrics"
"$CF" pin --peer "$PEER_SOCK_1" "$d"
"$CF" status --raw --peer "$PEER_SOCK_1" | awk -F'\t' -v d="$d" '$1 == d && $7 == 1 {f = 1} END {exit !f}' ||
    fail "pin not shown"
"$CF" unpin --peer "$PEER_SOCK_1" "$d"
"$CF" status --raw --peer "$PEER_SOCK_1" | awk -F'\t' -v d="$d" '$1 == d && $7 == 0 {f = 1} END {exit !f}' ||
    fail "unpin not shown"
if "$CF" pin --peer "$PEER_SOCK_2" "$missing" 2>"$T/err"; then fail "pin of an unknown blob succeeded"; fi
cat "$T/err"
note "ok"
