# shellcheck shell=bash disable=SC2034
# Helpers for the builder (create / merge / unpack) integration tests. Source after testlib.sh.

CFI=${CHUNKFLY_BIN}/chunkfly-image
RAWMOUNT=${CHUNKFLY_BUILD}/tests/rawmount
MANIFEST="python3 $CHUNKFLY_SRC/tests/lib/tree_manifest.py"

# make_tree DIR: a source tree with every file type and the edge cases a layout can get wrong.
make_tree() {
    local d=$1 i
    mkdir -p "$d"/dir/sub/deeper "$d/big-dir" "$d/empty-dir" "$d/-dash" "$d/#hash"
    echo hello >"$d/a.txt"
    : >"$d/empty"
    head -c 3000000 /dev/urandom >"$d/random.bin"
    seq 1 300000 >"$d/dir/seq.txt"
    cp "$d/dir/seq.txt" "$d/dir/sub/seq-copy.txt"          # whole-file dedup
    head -c 1048576 /dev/urandom >"$d/exactly-1MiB"
    head -c 1048577 /dev/urandom >"$d/1MiB-plus-1"
    head -c 4095 /dev/zero >"$d/zeros-4095"
    printf 'x%.0s' $(seq 1 200) >/dev/null
    echo long >"$d/$(printf 'n%.0s' $(seq 1 200))"
    echo space >"$d/name with space"
    echo bang >"$d/!bang"
    ln -s a.txt "$d/rel-link"
    ln -s /etc/passwd "$d/abs-link"
    ln -s does/not/exist "$d/dangling"
    ln -s "$(printf 'l%.0s' $(seq 1 3000))" "$d/long-target-link"
    ln "$d/a.txt" "$d/dir/hard-a"
    ln "$d/a.txt" "$d/dir/sub/hard-a2"
    mkfifo "$d/fifo"
    mknod "$d/null-dev" c 1 3
    mknod "$d/blk-dev" b 7 200
    mknod "$d/big-minor" c 4 1000
    python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$d/sock"
    chmod 4755 "$d/a.txt"; chmod 1777 "$d/empty-dir"; chmod 2710 "$d/dir/sub"
    chown 1000:1000 "$d/dir/seq.txt"; chown 65534:12345 "$d/random.bin"
    setfattr -n user.greeting -v hello "$d/a.txt"
    setfattr -n trusted.t -v 0x00ff00 "$d/dir"
    setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= "$d/dir/seq.txt"
    setfattr -n user.empty "$d/empty"
    for i in $(seq 1 400); do echo "$i" >"$d/big-dir/entry-with-a-long-name-to-fill-blocks-$i"; done
    touch -h -d '2001-02-03 04:05:06.123456789' "$d/rel-link" "$d/a.txt" "$d/dir/sub"
    touch -d '1999-12-31 23:59:59' "$d"
}

# mount_or_skip BOOT MNT BLOBDATA[,BLOBDATA2...]: kernel EROFS mount (file-backed) with one
# device per blob (in blob-table order), registered for cleanup.
mount_or_skip() {
    need_root
    [ -x "$RAWMOUNT" ] || fail "$RAWMOUNT not built"
    grep -qw erofs /proc/filesystems || skip "kernel has no EROFS"
    mkdir -p "$2"
    local data
    data=$(echo "$3" | sed 's/^/device=/; s/,/,device=/g')
    if ! "$RAWMOUNT" "$1" "$2" erofs "$data" 2>"$T/mount.err"; then
        if grep -qiE 'not supported|no such device|unknown filesystem' "$T/mount.err"; then
            skip "EROFS mount of a file-backed image unsupported: $(cat "$T/mount.err")"
        fi
        fail "mount of $1 failed: $(cat "$T/mount.err")"
    fi
    CF_MOUNTS+=("$2")
}

json_blob() { python3 -c "import json,sys; b=json.load(open(sys.argv[1]))['blobs']; print(b[0] if b else '')" "$1"; }

# reader_check BOOT DIR: chunkfly-image check -D (the reader's verifier), skipped with a note
# while the reader has not landed.
reader_check() {
    if "$CFI" check --help 2>&1 | grep -q 'not implemented'; then
        note "chunkfly-image check not implemented yet: reader check skipped"
        return 0
    fi
    "$CFI" check -D "$2" "$1" >"$T/check.out" 2>&1 || { cat "$T/check.out"; fail "check -D $2 $1 rejected our image"; }
}

# tar_listing TAR: canonical listing of a tar (name, type, mode, uid, gid, size, mtime,
# content sha256, link target, devs, xattrs), independent of our code (Python tarfile).
# With --storable-xattrs, xattrs EROFS cannot store (names outside user./trusted./security./
# system.posix_acl_*) are left out of the listing: the builder skips them with a warning.
tar_listing() {
    local storable=0
    [ "$1" = --storable-xattrs ] && { storable=1; shift; }
    STORABLE=$storable python3 - "$1" <<'PY'
import hashlib, os, sys, tarfile
STORABLE = os.environ["STORABLE"] == "1"
OK = ("user.", "trusted.", "security.", "system.posix_acl_access", "system.posix_acl_default")
def norm(n):
    while n.startswith("./"): n = n[2:]
    return n.rstrip("/")
rows, links = {}, {}
if os.path.getsize(sys.argv[1]) == 0: sys.exit(0)  # a 0-byte layer: an empty tree
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        name = norm(m.name)
        if name in ("", "."): continue
        if m.islnk():
            links[name] = norm(m.linkname)
            continue
        h = hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isreg() else "-"
        x = ";".join("%s=%s" % (k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape").hex())
                     for k, v in sorted(m.pax_headers.items()) if k.startswith("SCHILY.xattr.")
                     and (not STORABLE or k[len("SCHILY.xattr."):].startswith(OK)))
        rows[name] = [m.type.decode() if m.type not in (b"\0", b"7") else "0", oct(m.mode), m.uid,
                      m.gid, m.size if m.isreg() else 0, int(m.mtime), h,
                      m.linkname if m.issym() else "-",
                      "%d:%d" % (m.devmajor, m.devminor) if (m.ischr() or m.isblk()) else "-", x or "-"]
# hard links: same row as their target plus the sorted group, whichever member came first
groups = {}
for l, tgt in links.items():
    while tgt in links: tgt = links[tgt]
    groups.setdefault(tgt, {tgt}).add(l)
out = []
for name, r in rows.items():
    g = groups.get(name)
    members = sorted(g) if g else None
    out.append([name] + r + [",".join(members) if members else "-"])
    for l in (members or []):
        if l != name: out.append([l] + r + [",".join(members)])
for r in sorted(out): print("\t".join(map(str, r)))
PY
}
