#!/bin/bash
# deploy/systemd: `systemd-analyze verify` accepts every unit with no message at all. verify
# checks that each ExecStart binary exists, so it runs with --root on a temporary root holding a
# copy of the host's unit directory (sysinit.target, network-online.target...), the units, and
# the built binaries at the units' ExecStart paths. Also: the offline security exposure stays
# under a threshold per unit, the sysusers file is accepted (--dry-run), the units' directories
# and --config paths are the daemons' defaults and deploy/config's, every unit has
# NoNewPrivileges, ProtectSystem=strict where a unit does not mount, and the chunkfly-mount
# example config is accepted by chunkfly-mount itself.
. "$(dirname "$0")/../../lib/testlib.sh"

command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed (Debian: systemd)"
for b in chunkfly-peer chunkfly-scheduler chunkfly-mount chunkfly-snapshotter chunkfly-convertd; do need_bin "$b"; done
SD=$CHUNKFLY_SRC/deploy/systemd
CFG=$CHUNKFLY_SRC/deploy/config
UNITDIR=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
[ -f "$UNITDIR/sysinit.target" ] || skip "no systemd unit directory at $UNITDIR"

R=$T/root
mkdir -p "$R/etc/systemd/system" "$R/usr/lib/systemd"
cp -a "$UNITDIR" "$R/usr/lib/systemd/system"
cp "$SD"/*.service "$R/etc/systemd/system/"
# every absolute program a unit runs (ExecStart*, with systemd's prefixes -@:+!) exists in $R
for prog in $(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$SD"/*.service | sort -u); do
    mkdir -p "$R$(dirname "$prog")"
    b=$(basename "$prog")
    if [ -x "$CHUNKFLY_BIN/$b" ]; then
        cp "$CHUNKFLY_BIN/$b" "$R$prog"
    elif [ -x "$prog" ]; then
        cp "$prog" "$R$prog"  # a system tool (mkdir)
    else
        fail "a unit runs $prog: neither built nor on this machine"
    fi
done

note "systemd-analyze verify"
units=()
for f in "$SD"/*.service; do
    u=$(basename "$f")
    case $u in *@.service) u=${u%@.service}@test.service ;; esac
    units+=("$u")
    rc=0
    systemd-analyze verify --root="$R" "$u" >"$T/verify.out" 2>&1 || rc=$?
    [ "$rc" = 0 ] && [ ! -s "$T/verify.out" ] || { cat "$T/verify.out"; fail "verify $u: exit $rc"; }
    echo "verified $u"
done
# the check bites: an unknown key and a missing binary are reported
sed 's/^UMask=.*/&\nNoSuchKey=1/' "$SD/chunkfly-peer.service" >"$R/etc/systemd/system/chunkfly-peer.service"
systemd-analyze verify --root="$R" chunkfly-peer.service >"$T/verify.out" 2>&1 || true
grep -q "NoSuchKey" "$T/verify.out" || fail "verify did not report an unknown key"
cp "$SD/chunkfly-peer.service" "$R/etc/systemd/system/"
mv "$R/usr/local/bin/chunkfly-peer" "$T/peer.moved"
rc=0; systemd-analyze verify --root="$R" chunkfly-peer.service >"$T/verify.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "not executable" "$T/verify.out" || fail "verify accepted a missing ExecStart binary"
mv "$T/peer.moved" "$R/usr/local/bin/chunkfly-peer"

note "security exposure (systemd-analyze security --offline)"
# limits: a little above what the units score today (peer 1.7, scheduler 1.7, mount 4.3)
declare -A LIMIT=([chunkfly-peer.service]=2.0 [chunkfly-scheduler.service]=2.0
                  [chunkfly-mount@test.service]=4.5 [chunkfly-snapshotter.service]=5.0
                  [chunkfly-convertd.service]=2.0)
for u in "${units[@]}"; do
    out=$(systemd-analyze security --offline=yes --root="$R" --threshold=100 "$u" 2>&1) ||
        { echo "$out"; fail "security $u"; }
    score=$(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [ -n "$score" ] || { echo "$out"; fail "no exposure level for $u"; }
    echo "$u exposure $score (limit ${LIMIT[$u]})"
    python3 -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$score" "${LIMIT[$u]}" ||
        fail "$u: exposure $score above ${LIMIT[$u]}"
done

note "sysusers"
if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers --root="$R" --dry-run "$SD/chunkfly.sysusers" >"$T/sysusers.out" 2>&1 ||
        { cat "$T/sysusers.out"; fail "systemd-sysusers refused chunkfly.sysusers"; }
    grep -q "Creating user 'chunkfly'" "$T/sysusers.out" || { cat "$T/sysusers.out"; fail "no user chunkfly"; }
else
    note "systemd-sysusers not installed: sysusers file not checked"
fi

note "directories and paths = the configs' and the daemons' defaults"
key() { sed -n "s/^$1 *= *//p" "$2" | head -1; }   # key KEY FILE: first value
ukey() { sed -n "s/^$1=//p" "$2"; }                 # ukey KEY UNIT: its values
P=$SD/chunkfly-peer.service
S=$SD/chunkfly-scheduler.service
M=$SD/chunkfly-mount@.service
cache=$(key cache_dir "$CFG/peer.conf"); sock=$(key api_socket "$CFG/peer.conf")
[ "/var/cache/$(ukey CacheDirectory "$P")" = "$cache" ] || fail "peer CacheDirectory != cache_dir $cache"
[ "/run/$(ukey RuntimeDirectory "$P")" = "$(dirname "$sock")" ] || fail "peer RuntimeDirectory != dir of $sock"
# the same paths are the daemon's built-in defaults (its --help shows them)
"$CHUNKFLY_BIN/chunkfly-peer" --help >"$T/peer-help"
grep -qF "[cache_dir, $cache]" "$T/peer-help" || fail "peer default cache_dir is not $cache"
grep -qF "[api_socket, $sock]" "$T/peer-help" || fail "peer default api_socket is not $sock"
grep -q "^ExecStart=/usr/local/bin/chunkfly-peer --config /etc/chunkfly/peer.conf$" "$P" || fail "peer ExecStart"
grep -q "^ExecStart=/usr/local/bin/chunkfly-scheduler --config /etc/chunkfly/scheduler.conf$" "$S" ||
    fail "scheduler ExecStart"
grep -q "^User=chunkfly$" "$P" && grep -q "^u chunkfly " "$SD/chunkfly.sysusers" || fail "peer user"
grep -q "^SupplementaryGroups=chunkfly$" "$M" || fail "chunkfly-mount cannot open the peer's socket (group)"
grep -qF -- "--cache-dir /var/cache/$(ukey CacheDirectory "$M")" "$M" || fail "mount --cache-dir != CacheDirectory"
grep -qF -- "--apisock /run/$(ukey RuntimeDirectory "$M")/" "$M" || fail "mount --apisock not in RuntimeDirectory"
for u in "$P" "$S" "$M"; do
    grep -q "^NoNewPrivileges=yes$" "$u" || fail "$(basename "$u"): no NoNewPrivileges"
done
for u in "$P" "$S"; do
    grep -q "^ProtectSystem=strict$" "$u" || fail "$(basename "$u"): not ProtectSystem=strict"
    grep -q "^CapabilityBoundingSet=$" "$u" || fail "$(basename "$u"): keeps capabilities"
done
# the mount unit must not sandbox the file system (its mounts would not reach the host)
if grep -qE "^(ProtectSystem|ReadWritePaths|ReadOnlyPaths|PrivateTmp|ProtectHome|PrivateDevices|PrivateMounts|TemporaryFileSystem|BindPaths)=" "$M"; then
    fail "chunkfly-mount@: file-system namespacing would hide its mounts from the host"
fi
grep -q "^CapabilityBoundingSet=CAP_SYS_ADMIN$" "$M" || fail "chunkfly-mount@: capabilities"

note "chunkfly-snapshotter: paths, no file-system namespacing, the example config"
N=$SD/chunkfly-snapshotter.service
grep -q "^ExecStart=/usr/local/bin/chunkfly-snapshotter --config /etc/chunkfly/snapshotter.conf$" "$N" ||
    fail "snapshotter ExecStart"
grep -q "^NoNewPrivileges=yes$" "$N" || fail "snapshotter: no NoNewPrivileges"
[ "/var/lib/$(ukey StateDirectory "$N")" = "$(key root "$CFG/snapshotter.conf")" ] ||
    fail "snapshotter StateDirectory != root"
"$CHUNKFLY_BIN/chunkfly-snapshotter" --help >"$T/snap-help"
grep -qF "$(key root "$CFG/snapshotter.conf")" "$T/snap-help" || fail "snapshotter default root"
grep -qF "$(key address "$CFG/snapshotter.conf")" "$T/snap-help" || fail "snapshotter default address"
[ "$(dirname "$(key address "$CFG/snapshotter.conf")")" = "/run/$(ukey RuntimeDirectory "$P")" ] &&
    grep -q "^RuntimeDirectoryPreserve=yes$" "$P" || fail "stopping the peer would remove the snapshotter's socket"
grep -q "^KillMode=process$" "$N" || fail "stopping the snapshotter would kill chunkfly-mount (containers' reads)"
if grep -qE "^(ProtectSystem|ReadWritePaths|ReadOnlyPaths|PrivateTmp|ProtectHome|PrivateDevices|PrivateMounts|TemporaryFileSystem|BindPaths)=" "$N"; then
    fail "chunkfly-snapshotter: file-system namespacing would hide its mounts from containerd"
fi
# the example config parses: the daemon stops at its (unwritable here) socket or root, not at a key
rc=0
timeout 5 "$CHUNKFLY_BIN/chunkfly-snapshotter" --config "$CFG/snapshotter.conf" --root "$T/snaproot" \
    --address "$T/snap.sock" --metrics-listen 127.0.0.1:0 >"$T/snap.out" 2>&1 || rc=$?
[ "$rc" = 124 ] || [ "$rc" = 0 ] || { cat "$T/snap.out"; fail "snapshotter refused deploy/config/snapshotter.conf"; }
# it started its shared chunkfly-mount (FUSE mode starts it with the snapshotter) and left it
# running, as it must for containers: stop it by its PID file and unmount
CF_MOUNTS+=("$T/snaproot/mnt")
if [ -s "$T/snaproot/mount.pid" ]; then
    mpid=$(cat "$T/snaproot/mount.pid")
    if is_alive "$mpid" && grep -q chunkfly-mount "/proc/$mpid/cmdline" 2>/dev/null; then
        kill "$mpid"
        for _ in $(seq 50); do is_alive "$mpid" || break; sleep 0.1; done
        is_alive "$mpid" && kill -9 "$mpid"
    fi
fi
umount -l "$T/snaproot/mnt" 2>/dev/null || true

note "chunkfly-convertd: paths = the config's and the daemon's defaults, sandbox, the example config"
C=$SD/chunkfly-convertd.service
grep -q "^ExecStart=/usr/local/bin/chunkfly-convertd --config /etc/chunkfly/convertd.conf$" "$C" ||
    fail "convertd ExecStart"
for k in "NoNewPrivileges=yes" "ProtectSystem=strict" "CapabilityBoundingSet=" "DynamicUser=yes"; do
    grep -q "^$k$" "$C" || fail "convertd: no $k"
done
cwork=$(key work_dir "$CFG/convertd.conf")
# it writes exactly its work dir (the LMDB queue is under it unless db_dir says otherwise)
[ "/var/lib/$(ukey StateDirectory "$C")" = "$cwork" ] || fail "convertd StateDirectory != work_dir $cwork"
[ "$(ukey ReadWritePaths "$C")" = "$cwork" ] || fail "convertd ReadWritePaths != work_dir $cwork"
[ -z "$(key db_dir "$CFG/convertd.conf")" ] || fail "convertd.conf: db_dir outside the work dir is not writable"
"$CHUNKFLY_BIN/chunkfly-convertd" --help >"$T/cvd-help"
grep -qF "$cwork" "$T/cvd-help" || fail "convertd default work_dir is not $cwork"
# the credential the config reads is the one the unit loads
cred=$(ukey LoadCredential "$C"); cred=${cred%%:*}
[ "$(key auth_header_file "$CFG/convertd.conf")" = "/run/credentials/chunkfly-convertd.service/$cred" ] ||
    fail "convertd: auth_header_file is not the unit's credential $cred"
# the example config parses: with a secret file and a free port it serves, then stops on SIGTERM
echo "Bearer example" >"$T/cvd.auth"
rc=0
timeout 3 "$CHUNKFLY_BIN/chunkfly-convertd" --config "$CFG/convertd.conf" --work-dir "$T/cvd" \
    --auth-header-file "$T/cvd.auth" --listen 127.0.0.1:0 >"$T/cvd.out" 2>&1 || rc=$?
[ "$rc" = 124 ] && grep -q "listening on" "$T/cvd.out" ||
    { cat "$T/cvd.out"; fail "chunkfly-convertd refused deploy/config/convertd.conf"; }

note "chunkfly-mount accepts the example config"
rc=0
"$CHUNKFLY_BIN/chunkfly-mount" fuse --config "$CFG/mount/example.json" --bootstrap "$T/none.boot" \
    --mountpoint "$T" >"$T/mount.out" 2>&1 || rc=$?
# it stops at the (missing) bootstrap, after the config was parsed and checked
[ "$rc" = 1 ] && grep -q "bootstrap $T/none.boot" "$T/mount.out" ||
    { cat "$T/mount.out"; fail "chunkfly-mount refused deploy/config/mount/example.json"; }
for v in CHUNKFLY_MOUNT_BOOTSTRAP CHUNKFLY_MOUNTPOINT CHUNKFLY_MOUNT_ARGS; do
    grep -q "^$v=" "$CFG/mount/example.env" || fail "example.env: no $v"
    grep -q "\${\{0,1\}$v" "$M" || fail "chunkfly-mount@ does not use $v"
done
echo "ok"
