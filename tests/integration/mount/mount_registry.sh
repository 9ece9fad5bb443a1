#!/usr/bin/env bash
# chunkfly-mount reading from a real docker-registry with token auth (our token server; the
# nydusd config the snapshotter writes, "auth" = base64 alice:s3cret), prefetch off:
#  - a 4 KiB file read from a 1 GiB image fetches one small range, at most 4 chunks in at most 4
#    GETs (counted by the daemon's backend metrics and by the registry's access log), not the
#    image (the bootstrap is local: --bootstrap);
#  - every file then reads back equal to the source; a second daemon over the same cache
#    fetches nothing at all;
#  - registry stopped: cached files read fine, an uncached one fails with EIO within the
#    configured timeout, and reads work again once the registry is back.
. "$(dirname "$0")/../../lib/testlib.sh"
. "$(dirname "$0")/mount_lib.sh"
. "$(dirname "$0")/backend_lib.sh"
command -v curl >/dev/null || skip "curl not installed"

S=$T/src
mkdir -p "$S/big" "$S/etc"
for i in 1 2 3; do head -c $((32 * 1048576)) /dev/urandom >"$S/big/part$i"; done
head -c 4096 /dev/urandom >"$S/etc/target"
head -c 300000 /dev/urandom >"$S/etc/other"
# big/filler makes the image 1 GiB: an AES-CTR keystream (fast, no chunk like another, does not
# compress), never stored as a file: the tar (the tree's members, the filler's header, then the
# keystream straight from openssl) is streamed into create; any range of the filler is made
# again by keystream OFF LEN.
FILLER=$(((1024 - 96) * 1048576)) # a multiple of 512: no tar padding after it
KEY=000102030405060708090a0b0c0d0e0f
keystream() { # OFF [LEN] (OFF a multiple of 16): bytes [OFF, OFF+LEN) of the filler
    # openssl ends on SIGPIPE when head has enough; a short stream fails the callers' checks
    { openssl enc -aes-128-ctr -nosalt -K $KEY -iv "$(printf %032x $(($1 / 16)))" \
        -in /dev/zero 2>/dev/null || :; } | head -c "${2:-$((FILLER - $1))}"
}
python3 - "$S" "$FILLER" "$T/head.tar" <<'PY'
import sys, tarfile
src, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(out, "wb") as f:
    t = tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT)
    t.add(src, arcname=".")
    ti = tarfile.TarInfo("big/filler")
    ti.size, ti.mode, ti.mtime = size, 0o644, 1700000000
    f.write(ti.tobuf(tarfile.PAX_FORMAT))  # header only, and no end-of-archive: more follows
PY
t0=$(date +%s%N)
{ cat "$T/head.tar"; keystream 0; head -c 1024 /dev/zero; } |
    "$CFI" create -l warn -t tar-rafs -B "$T/boot" -D "$T/blobs" -J "$T/c.json" /dev/stdin ||
    fail create
id=$(json_blob "$T/c.json")
note "1 GiB image built in $((($(date +%s%N) - t0) / 1000000)) ms"
REGISTRY_LOG="{level: info, fields: {service: registry}}" start_token_registry
t0=$(date +%s%N)
push_tok lib/app "$T/blobs/$id" "sha256:$id" >/dev/null
note "pushed in $((($(date +%s%N) - t0) / 1000000)) ms"
auth=$(printf 'alice:s3cret' | base64)
registry_config "$T/cfg.json" "$TREG" lib/app "\"auth\": \"$auth\", \"timeout\": 2, \"connect_timeout\": 2, \"retry_limit\": 1"
SOCK=$T/api.sock
metric() { curl -s --unix-socket "$SOCK" "http://x/api/v1/metrics/backend" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
gets() { grep -c '"GET /v2/lib/app/blobs/sha256:'"$id" "$REGISTRY_DIR/log" || true; }
# blob bytes the registry sent, from its access log (combined format: status $9, size $10)
sent() {
    awk -v p="/v2/lib/app/blobs/sha256:$id" '$6 == "\"GET" && index($7, p) == 1 &&
        ($9 == 200 || $9 == 206) {b += $10} END {printf "%.0f\n", b}' "$REGISTRY_DIR/log"
}

mount_start "$T/m1.log" "$T/mnt" --config "$T/cfg.json" --bootstrap "$T/boot" --apisock "$SOCK"
g0=$(gets)
s0=$(sent)
cmp "$S/etc/target" "$T/mnt/etc/target" || fail "target differs"
bytes=$(metric bytes_from_registry)
note "4 KiB file from a $(($(stat -c %s "$T/blobs/$id") / 1048576)) MiB blob: $bytes bytes from the registry in $(($(gets) - g0)) GET(s); its access log: $(($(sent) - s0)) bytes sent"
[ $(($(sent) - s0)) = "$bytes" ] || fail "the registry sent $(($(sent) - s0)) bytes, the daemon counted $bytes"
[ "$(stat -c %s "$T/blobs/$id")" -ge $((1024 * 1048576)) ] || fail "the image is not 1 GiB"
[ "$bytes" -gt 0 ] && [ "$bytes" -le $((4 * 1048576)) ] || fail "read $bytes registry bytes for a 4 KiB file"
[ $(($(gets) - g0)) -le 4 ] || fail "$(($(gets) - g0)) blob GETs for a 4 KiB file"
cmp "$S/etc/other" "$T/mnt/etc/other" || fail "other differs"
for i in 1 2 3; do cmp "$S/big/part$i" "$T/mnt/big/part$i" || fail "part$i differs"; done
[ "$(stat -c %s "$T/mnt/big/filler")" = "$FILLER" ] || fail "filler: wrong size"
# the filler is not read whole (928 MiB through FUSE): its first, a middle and its last MiB
for off in 0 $((FILLER / 2 + 4096)) $((FILLER - 1048576)); do
    cmp <(keystream "$off" 1048576) <(tail -c +$((off + 1)) "$T/mnt/big/filler" | head -c 1048576) ||
        fail "filler differs at $off"
done
note "all files equal the source; $(metric bytes_from_registry) bytes from the registry in total"
mount_stop "$MOUNT_PID" "$T/mnt"

# second daemon, same cache: nothing from the registry
mount_start "$T/m2.log" "$T/mnt" --config "$T/cfg.json" --bootstrap "$T/boot" --apisock "$SOCK"
g0=$(gets)
for i in 1 2 3; do cmp "$S/big/part$i" "$T/mnt/big/part$i" || fail "cached part$i differs"; done
[ "$(metric bytes_from_registry)" = 0 ] || fail "second mount read $(metric bytes_from_registry) bytes from the registry"
[ "$(gets)" = "$g0" ] || fail "second mount sent blob GETs"
note "second mount: everything from the cache, 0 registry bytes"
mount_stop "$MOUNT_PID" "$T/mnt"

# registry down: cached reads fine, uncached reads EIO within the timeout, then back
rm -rf "$T/cache"
mount_start "$T/m3.log" "$T/mnt" --config "$T/cfg.json" --bootstrap "$T/boot" --apisock "$SOCK"
cmp "$S/etc/target" "$T/mnt/etc/target" || fail "target (registry up)"
bg_stop "$REGISTRY_PID"
cmp "$S/etc/target" "$T/mnt/etc/target" || fail "cached file with the registry down"
t0=$(date +%s%N)
if dd if="$T/mnt/big/part2" of=/dev/null bs=1M count=1 2>"$T/err"; then fail "uncached read succeeded with the registry down"; fi
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q 'Input/output error' "$T/err" || fail "uncached read: $(cat "$T/err"), want EIO"
note "registry down: cached file fine, uncached read EIO after ${ms} ms"
[ "$ms" -lt 15000 ] || fail "EIO took ${ms} ms (timeouts are 2 s)"
bg_start "$REGISTRY_DIR/log2" docker-registry serve "$REGISTRY_DIR/config.yml"
wait_port "${TREG%:*}" "${TREG#*:}"
cmp "$S/big/part2" "$T/mnt/big/part2" || fail "part2 after the registry came back"
note "registry back: the same read works"
mount_stop "$MOUNT_PID" "$T/mnt"
no_sanitizer_reports
echo "PASS: lazy reads through a token-auth registry, cached remount, registry down and back"
