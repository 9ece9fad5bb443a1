#!/usr/bin/env python3
"""Canonical, sorted manifest of a directory tree, for comparing trees in tests
(kernel EROFS mount vs source dir vs our reader's listing vs umoci unpack).

One line per entry, tab-separated:
  path  type  mode  uid  gid  size  mtime  extra  xattrs  link
type: d f l c b p s; mode: octal permission bits (incl. suid/sgid/sticky);
size: regular files only (else 0); mtime: seconds;
extra: sha256 of content (f), target (l), major:minor (c/b), '-' otherwise;
xattrs: name=hex;name=hex sorted, '-' if none;
link: for regular files with nlink>1, the first path (sorted) of the hard-link group, else '-'.
Options drop fields that a given comparison cannot carry: --no-content, --no-xattrs,
--no-owner, --no-mtime, --no-links, --exclude PATH (repeatable, relative path prefix).
"""
import hashlib
import os
import stat
import sys


def main():
    args = sys.argv[1:]
    opts = {"content": True, "xattrs": True, "owner": True, "mtime": True, "links": True}
    excludes = []
    root = None
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--no-"):
            opts[a[5:]] = False
        elif a == "--exclude":
            i += 1
            excludes.append(args[i].strip("/"))
        elif root is None:
            root = a
        else:
            sys.exit("usage: tree_manifest.py [--no-content|--no-xattrs|--no-owner|--no-mtime|"
                     "--no-links] [--exclude P] ROOT")
        i += 1
    if root is None:
        sys.exit("usage: tree_manifest.py ROOT")
    entries = []
    inode_paths = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if any(rel == e or rel.startswith(e + "/") for e in excludes):
                continue
            st = os.lstat(full)
            entries.append((rel, full, st))
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                inode_paths.setdefault((st.st_dev, st.st_ino), []).append(rel)
    st = os.lstat(root)
    entries.append((".", root, st))
    out = []
    for rel, full, st in entries:
        m = st.st_mode
        if stat.S_ISDIR(m): t = "d"
        elif stat.S_ISREG(m): t = "f"
        elif stat.S_ISLNK(m): t = "l"
        elif stat.S_ISCHR(m): t = "c"
        elif stat.S_ISBLK(m): t = "b"
        elif stat.S_ISFIFO(m): t = "p"
        else: t = "s"
        extra = "-"
        if t == "f" and opts["content"]:
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for blk in iter(lambda: f.read(1 << 20), b""):
                    h.update(blk)
            extra = h.hexdigest()
        elif t == "l":
            extra = os.readlink(full)
        elif t in "cb":
            extra = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        xs = "-"
        if opts["xattrs"]:
            try:
                names = sorted(os.listxattr(full, follow_symlinks=False))
            except OSError:
                names = []
            if names:
                xs = ";".join("%s=%s" % (n, os.getxattr(full, n, follow_symlinks=False).hex())
                              for n in names)
        link = "-"
        if opts["links"] and t == "f" and st.st_nlink > 1:
            link = sorted(inode_paths[(st.st_dev, st.st_ino)])[0]
        out.append("\t".join([
            rel, t, "%o" % stat.S_IMODE(m),
            str(st.st_uid) if opts["owner"] else "-",
            str(st.st_gid) if opts["owner"] else "-",
            str(st.st_size) if t == "f" else "0",
            str(int(st.st_mtime)) if opts["mtime"] else "-",
            extra, xs, link]))
    out.sort()
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
