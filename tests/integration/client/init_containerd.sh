#!/bin/bash
# `chunkfly init containerd` (docs/mirror.md) on temp directories: hosts.toml per registry
# (valid TOML, mirror first with pull+resolve, docker.io -> registry-1.docker.io, loopback
# registries over http), an idempotent re-run, a changed --mirror rewrites our file, a foreign
# file is refused with exit 1 and the block printed, --force keeps it as .bak (then .bak.1),
# --dry-run writes nothing, --all writes _default, bad hosts and mirror URLs are rejected before
# anything is written, the containerd config check (never edited). That real containerd reads
# the generated files is shown by tests/integration/peer/mirror_containerd.sh.
. "$(dirname "$0")/../../lib/testlib.sh"

need_bin chunkfly
CF=$CHUNKFLY_BIN/chunkfly
D=$T/certs.d
NOCFG=$T/no-such-config.toml

# init ARGS...: runs `chunkfly init containerd ARGS` with our dir and config; status in $rc,
# stdout in $T/out, stderr in $T/err
init() {
    rc=0
    "$CF" init containerd --config-path "$D" --containerd-config "${CTRD_CFG:-$NOCFG}" "$@" \
        >"$T/out" 2>"$T/err" || rc=$?
}
expect_rc() {
    [ "$rc" = "$1" ] || { cat "$T/out" "$T/err"; fail "$2: exit $rc, want $1"; }
}
# toml_all: every hosts.toml under $D read by python's TOML reader, a line each:
# "DIR server URL|- host URL caps,..." (one python start: it is slow on a loaded machine)
toml_all() {
    python3 - "$D" <<'PY' >"$T/toml" || fail "python3 (3.11+, tomllib) could not read the files"
import glob, os, sys, tomllib
for f in sorted(glob.glob(glob.escape(sys.argv[1]) + "/*/hosts.toml")):
    if os.path.islink(f):
        continue
    c = tomllib.load(open(f, "rb"))
    hosts = " ".join("host %s %s" % (h, ",".join(v.get("capabilities", [])))
                     for h, v in c.get("host", {}).items())
    print(os.path.basename(os.path.dirname(f)), "server", c.get("server", "-"), hosts)
PY
}
# toml DIR: its line from the last toml_all, without DIR
toml() { awk -v d="$1" '$1 == d {sub(/^[^ ]* /, ""); print}' "$T/toml"; }
M="host http://127.0.0.1:65001 pull,resolve"

note "usage errors: exit 2, nothing written"
"$CF" init containerd --help | grep -q -- "--registry HOST" || fail "--help"
"$CF" init --help >/dev/null || fail "init --help"
rc=0; "$CF" init crio 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "docs/mirror.md" "$T/err" || fail "init crio: $rc $(cat "$T/err")"
init
expect_rc 2 "no registry"
grep -q -- "--registry HOST" "$T/err" || fail "no registry: no hint"
for bad in .. . ../etc a/b /etc "foo bar" 'x"y' "" _default "a..b" ".a.com" "-a.com" \
    "a-.com" "h:99999" "h:0" "h:" "h:5000/x" "a\\b" "docker.io/library" "[::1" $'a\nb'; do
    init --registry "$bad"
    expect_rc 2 "registry '$bad'"
    grep -q "chunkfly init containerd:" "$T/err" || fail "registry '$bad': no message"
done
for bad in http://h:1/v2 ftp://h http://u@h:1 'http://a"b' "http://h:1?x" http:// ""; do
    init --registry docker.io --mirror "$bad"
    expect_rc 2 "mirror '$bad'"
done
[ ! -e "$D" ] || fail "a usage error created $D"
# the same mistakes are caught before any file is written: a good host then a bad one
init --registry docker.io --registry ../x
expect_rc 2 "good then bad"
[ ! -e "$D" ] || fail "a usage error wrote a file"

note "fresh directory: one file per registry"
init --registry docker.io --registry ghcr.io --registry 127.0.0.9:5000 --registry "[::1]:5001" \
    --registry http://10.1.2.3:5000 --registry docker.io
expect_rc 0 "fresh"
cat "$T/out"
for h in docker.io ghcr.io 127.0.0.9:5000 "[::1]:5001" 10.1.2.3:5000; do
    f=$D/$h/hosts.toml
    [ -f "$f" ] || fail "$f missing"
    [ "$(stat -c %a "$f")" = 644 ] || fail "$f mode $(stat -c %a "$f")"
    head -1 "$f" | grep -q '^# chunkfly: written by `chunkfly init containerd`' || fail "$f: no marker"
    grep -qxF "wrote $f" "$T/out" || fail "not reported: $f"
done
[ "$(ls "$D" | wc -l)" = 5 ] || fail "expected 5 dirs: $(ls "$D")"
[ -z "$(find "$D" -name '.hosts.toml.*')" ] || fail "temp files left"
toml_all
[ "$(toml docker.io)" = "server https://registry-1.docker.io $M" ] ||
    fail "docker.io hosts.toml: $(toml docker.io)"
[ "$(toml ghcr.io)" = "server https://ghcr.io $M" ] || fail "ghcr.io: $(toml ghcr.io)"
[ "$(toml 127.0.0.9:5000)" = "server http://127.0.0.9:5000 $M" ] ||
    fail "loopback registry not over http: $(toml 127.0.0.9:5000)"
[ "$(toml "[::1]:5001")" = "server http://[::1]:5001 $M" ] || fail "[::1]"
[ "$(toml 10.1.2.3:5000)" = "server http://10.1.2.3:5000 $M" ] || fail "explicit http:// not kept"
grep -qF "mirror_upstreams = docker.io, ghcr.io, 127.0.0.9:5000, [::1]:5001, http://10.1.2.3:5000 in" "$T/out" ||
    fail "no mirror_upstreams hint"
grep -q 'config_path = "'"$D"'"' "$T/out" || fail "no config_path hint for a missing config"
grep -q "version = 2" "$T/out" || fail "a missing config: block without version = 2"
[ ! -e "$NOCFG" ] || fail "the containerd config was created"

note "re-run: nothing changes"
ino=$(stat -c %i:%y "$D/docker.io/hosts.toml")
init --registry docker.io --registry ghcr.io
expect_rc 0 "re-run"
grep -q "docker.io/hosts.toml: up to date" "$T/out" || fail "re-run: $(cat "$T/out")"
[ "$(stat -c %i:%y "$D/docker.io/hosts.toml")" = "$ino" ] || fail "re-run rewrote the file"

note "another --mirror: our file is rewritten, no backup"
init --registry docker.io --mirror 127.0.0.11:5555/
expect_rc 0 "new mirror"
grep -q "updated $D/docker.io/hosts.toml" "$T/out" || fail "not updated: $(cat "$T/out")"
grep -qxF '[host."http://127.0.0.11:5555"]' "$D/docker.io/hosts.toml" || fail "mirror not changed"
[ ! -e "$D/docker.io/hosts.toml.bak" ] || fail "a backup of our own file"

note "a foreign file: refused (exit 1), the block printed, the file untouched"
mkdir -p "$D/quay.io"
printf 'server = "https://quay.io"\n\n[host."https://my-mirror.example"]\n  capabilities = ["pull"]\n' \
    >"$D/quay.io/hosts.toml"
cp "$D/quay.io/hosts.toml" "$T/foreign"
init --registry quay.io --registry docker.io
expect_rc 1 "foreign"
grep -q "quay.io/hosts.toml exists and was not written by chunkfly" "$T/err" ||
    fail "no refusal message: $(cat "$T/err")"
grep -q -- "--force" "$T/err" || fail "refusal does not mention --force"
grep -q '^server = "https://quay.io"$' "$T/out" || fail "block not printed"
grep -q '^\[host."http://127.0.0.1:65001"\]$' "$T/out" || fail "block without the mirror"
cmp "$T/foreign" "$D/quay.io/hosts.toml" || fail "foreign file changed"
grep -q "docker.io/hosts.toml" "$T/out" || fail "the other registry was not handled"
grep -qxF '[host."http://127.0.0.1:65001"]' "$D/docker.io/hosts.toml" ||
    fail "the good registry was not written next to the refused one"

note "--dry-run: prints, writes nothing, same exit status"
before=$(find "$D" -type f | sort | xargs sha256sum)
init --registry quay.io --dry-run --force
expect_rc 0 "dry-run force"
grep -q "would replace $D/quay.io/hosts.toml" "$T/out" || fail "dry-run: $(cat "$T/out")"
init --registry quay.io --registry new.example.com --dry-run
expect_rc 1 "dry-run refused"
grep -q "would write $D/new.example.com/hosts.toml" "$T/out" || fail "dry-run new"
grep -q '^server = "https://new.example.com"$' "$T/out" || fail "dry-run: block not shown"
init --all --dry-run
expect_rc 0 "dry-run all"
[ "$(find "$D" -type f | sort | xargs sha256sum)" = "$before" ] || fail "--dry-run changed files"
[ ! -e "$D/new.example.com" ] && [ ! -e "$D/_default" ] || fail "--dry-run created a directory"

note "--force: replaced, the old file kept as .bak (then .bak.1)"
# the block printed on refusal is the file --force writes
init --registry quay.io
expect_rc 1 "refused again"
sed -n '/^# chunkfly: written by/,/^  capabilities = /p' "$T/out" >"$T/block"
init --registry quay.io --force
expect_rc 0 "force"
cmp "$T/block" "$D/quay.io/hosts.toml" || fail "the printed block is not the file --force wrote"
cmp "$T/foreign" "$D/quay.io/hosts.toml.bak" || fail ".bak is not the old file"
grep -q "kept as $D/quay.io/hosts.toml.bak" "$T/out" || fail "backup not reported"
grep -qxF 'server = "https://quay.io"' "$D/quay.io/hosts.toml" || fail "forced file"
init --registry quay.io --force
expect_rc 0 "force on our own file"
[ ! -e "$D/quay.io/hosts.toml.bak.1" ] || fail "a backup of our own file"
echo 'server = "https://quay.io"' >"$D/quay.io/hosts.toml.new"
mv "$D/quay.io/hosts.toml.new" "$D/quay.io/hosts.toml"
init --registry quay.io --force
expect_rc 0 "second force"
[ "$(cat "$D/quay.io/hosts.toml.bak.1")" = 'server = "https://quay.io"' ] ||
    fail "second backup not .bak.1"
cmp "$T/foreign" "$D/quay.io/hosts.toml.bak" || fail "first backup overwritten"

note "a symlink in place of hosts.toml is not ours, even pointing at our file"
mkdir -p "$D/link.example.com"
ln -s "$D/docker.io/hosts.toml" "$D/link.example.com/hosts.toml"
init --registry link.example.com
expect_rc 1 "symlink"
init --registry link.example.com --force
expect_rc 1 "symlink force"
grep -q "not a regular file" "$T/err" || fail "symlink force: $(cat "$T/err")"
[ -L "$D/link.example.com/hosts.toml" ] || fail "symlink replaced"

note "--all: _default without a server (containerd uses the image's registry)"
init --all
expect_rc 0 "all"
toml_all
[ "$(toml _default)" = "server - $M" ] || fail "_default: $(toml _default)"
[ "$(toml quay.io)" = "server https://quay.io $M" ] || fail "quay.io after --force: $(toml quay.io)"
grep -q "each one pulled through it" "$T/out" || fail "--all: no mirror_upstreams hint"

note "containerd's config: checked, never edited"
CTRD_CFG=$T/config.toml
printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n' \
    >"$CTRD_CFG"
sum=$(sha256sum <"$CTRD_CFG")
init --registry docker.io
expect_rc 0 "config without config_path"
grep -q "has no registry config_path" "$T/out" || fail "missing config_path not reported"
grep -q '^\[plugins."io.containerd.grpc.v1.cri".registry\]$' "$T/out" || fail "v2 table"
grep -q "^version = 2" "$T/out" && fail "version line printed for a file that has one"
printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/docker/certs.d:%s/"\n' \
    "$D" >"$CTRD_CFG"
init --registry docker.io
expect_rc 0 "config with config_path"
grep -q "already reads hosts.toml files from $D" "$T/out" || fail "config_path not seen: $(cat "$T/out")"
printf 'version = 2\n[plugins]\n  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "/etc/containerd/certs.d"\n  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n    endpoint = ["https://x"]\n' \
    >"$CTRD_CFG"
init --registry docker.io
grep -q 'config_path = "/etc/containerd/certs.d", which does not include' "$T/out" ||
    fail "another config_path not reported: $(cat "$T/out")"
grep -q "registry.mirrors" "$T/out" || fail "old mirrors tables not reported"
printf 'version = 3\n' >"$CTRD_CFG"
init --registry docker.io
grep -q '^\[plugins."io.containerd.cri.v1.images".registry\]$' "$T/out" || fail "v3 table"
printf 'plugins.cri.registry.config_path = "%s"\n' "$D" >"$CTRD_CFG"
init --registry docker.io
grep -q "already reads" "$T/out" || fail "dotted v1 key not seen: $(cat "$T/out")"
printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n' \
    >"$CTRD_CFG"
sum=$(sha256sum <"$CTRD_CFG")
init --registry docker.io --force
[ "$(sha256sum <"$CTRD_CFG")" = "$sum" ] || fail "containerd config changed"

note "an unwritable config path: exit 1 with the path in the message"
rc=0
"$CF" init containerd --registry docker.io --config-path /dev/null/certs.d \
    --containerd-config "$NOCFG" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "/dev/null" "$T/err" || fail "unwritable: $rc $(cat "$T/err")"
echo PASS
