#!/usr/bin/env bash
# Names are bytes: a tar whose paths hold a latin-1 byte (not UTF-8), UTF-8 text and other
# non-ASCII bytes (file, directory, symlink target, hard link, a 150-byte name) goes through
# `create` and `unpack` run with an empty environment (`env -i`: LANG/LC_* unset, the C
# locale), and the unpacked tar holds exactly the same name bytes, link targets and contents.
# Checked twice, independently of our code: Python's tarfile decoding names back to bytes, and
# GNU tar --list under LC_ALL=C. Both PAX and GNU input tars. `check -D` accepts the images.
set -euo pipefail
: "${CHUNKFLY_SRC:=$(cd "$(dirname "$0")/../../.." && pwd)}"
. "$CHUNKFLY_SRC/tests/lib/testlib.sh"
. "$CHUNKFLY_SRC/tests/integration/rafs/create_lib.sh"
need_bin chunkfly-image

# make_tar FORMAT OUT: the same entries in a pax or gnu tar (Python writes raw bytes; a pax
# name that is not UTF-8 gets hdrcharset=BINARY, as the standard says)
make_tar() {
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
fmt = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT}[sys.argv[1]]
def s(b): return b.decode("utf-8", "surrogateescape")
with tarfile.open(sys.argv[2], "w", format=fmt, encoding="utf-8", errors="surrogateescape") as t:
    def add(name, typ=tarfile.REGTYPE, data=b"", link=b""):
        ti = tarfile.TarInfo(s(name))
        ti.type, ti.mode, ti.mtime = typ, 0o755 if typ == tarfile.DIRTYPE else 0o644, 1700000000
        ti.linkname = s(link)
        ti.size = len(data) if typ == tarfile.REGTYPE else 0
        t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
    add(b"caf\xe9", data=b"latin-1 name\n")                             # latin-1, not UTF-8
    add("héllo-日本語.txt".encode(), data=b"utf-8 name\n")               # UTF-8
    add(b"r\xe9pertoire", tarfile.DIRTYPE)                               # latin-1 directory
    add(b"r\xe9pertoire/\xff\xfe-bytes", data=b"inside\n")
    add("ünïcödé-dir".encode(), tarfile.DIRTYPE)
    add("ünïcödé-dir/".encode() + "ß".encode() * 75, data=b"long\n")     # 150-byte name
    add(b"lien-\xe9", tarfile.SYMTYPE, link=b"caf\xe9")                  # symlink target
    add("lien-ü".encode(), tarfile.SYMTYPE, link="héllo-日本語.txt".encode())
    add(b"dur-\xe9", tarfile.LNKTYPE, link=b"caf\xe9")                   # hard link
    add(b"plain-ascii", data=b"ascii\n")
PY
}

# listing TAR: one line per entry: name bytes (hex), type, link target bytes (hex), content
# sha256; names decoded back to the exact bytes in the tar (surrogateescape), sorted
listing() {
    python3 - "$1" <<'PY'
import hashlib, sys, tarfile
def b(x): return x.encode("utf-8", "surrogateescape")
rows = []
with tarfile.open(sys.argv[1], encoding="utf-8", errors="surrogateescape") as t:
    for m in t:
        name = b(m.name)
        while name.startswith(b"./"): name = name[2:]
        name = name.rstrip(b"/")
        if name in (b"", b"."): continue
        h = hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isreg() else "-"
        link = b(m.linkname).hex() if (m.issym() or m.islnk()) else "-"
        typ = "0" if m.isreg() else m.type.decode()
        rows.append("%s\t%s\t%s\t%s" % (name.hex(), typ, link, h))
for r in sorted(rows): print(r)
PY
}

# gnu_names TAR: GNU tar's own listing of the names (escaped bytes, C locale), sorted; hard
# links are listed as regular files by their name only
gnu_names() {
    LC_ALL=C tar --list --quoting-style=escape -f "$1" 2>"$T/gnutar.err" |
        sed -e 's|^\./||' -e 's|/$||' | grep -v '^\.\?$' | LC_ALL=C sort
}

CFI_ABS=$(cd "$(dirname "$CFI")" && pwd)/chunkfly-image
for fmt in pax gnu; do
    o="$T/$fmt"; mkdir -p "$o"
    make_tar $fmt "$o/in.tar"
    listing "$o/in.tar" >"$o/want"
    [ "$(wc -l <"$o/want")" = 10 ] || { cat "$o/want"; fail "$fmt: input tar listing"; }
    grep -q "^$(printf 'caf\xe9' | od -An -tx1 | tr -d ' \n')	" "$o/want" ||
        fail "$fmt: the input tar lacks the raw latin-1 name"
    env -i "$CFI_ABS" create -l warn -t tar-rafs -B "$o/boot" -D "$o/blobs" "$o/in.tar" \
        2>"$o/create.err" || { cat "$o/create.err"; fail "$fmt: create under env -i"; }
    env -i "$CFI_ABS" unpack -l warn -B "$o/boot" -D "$o/blobs" -o "$o/out.tar" \
        2>"$o/unpack.err" || { cat "$o/unpack.err"; fail "$fmt: unpack under env -i"; }
    [ ! -s "$o/unpack.err" ] || { cat "$o/unpack.err"; fail "$fmt: unpack warned"; }
    listing "$o/out.tar" >"$o/got"
    diff -u "$o/want" "$o/got" || fail "$fmt: names, links or contents differ after unpack"
    gnu_names "$o/in.tar" >"$o/gnu.want" || fail "$fmt: GNU tar cannot list the input"
    gnu_names "$o/out.tar" >"$o/gnu.got" || { cat "$T/gnutar.err"; fail "$fmt: GNU tar cannot list the output"; }
    diff -u "$o/gnu.want" "$o/gnu.got" || fail "$fmt: GNU tar lists other names"
    grep -qxF 'caf\351' "$o/gnu.got" || fail "$fmt: GNU tar does not see the latin-1 byte"
    # an unpack in a UTF-8 locale writes the same bytes
    env -i LANG=C.UTF-8 LC_ALL=C.UTF-8 "$CFI_ABS" unpack -l warn -B "$o/boot" -D "$o/blobs" \
        -o "$o/out-utf8.tar" || fail "$fmt: unpack under C.UTF-8"
    cmp "$o/out.tar" "$o/out-utf8.tar" || fail "$fmt: unpack output depends on the locale"
    reader_check "$o/boot" "$o/blobs"
    note "ok: $fmt: $(wc -l <"$o/got") entries, names byte for byte"
done
echo "PASS: non-UTF-8 and UTF-8 names survive create + unpack without a locale"
