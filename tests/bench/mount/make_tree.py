#!/usr/bin/env python3
"""Deterministic source trees for bench_mount.sh (seeded: the same arguments give the same bytes).

  make_tree.py reads DIR BIG_FILES BIG_MIB SMALL_FILES
      DIR/big/bigNN.bin        BIG_FILES incompressible files of BIG_MIB MiB
      DIR/small/dNNN/fNNNNN    SMALL_FILES files, log-uniform 1..64 KiB, half text, half random
      DIR/unread.bin           4 KiB, never read by the bench (keeps a blob incomplete)
  make_tree.py meta DIR FILES
      DIR/dNNN/fNNNNN          FILES files of 0..255 bytes, 1000 per directory
"""
import math
import os
import random
import sys


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def reads(out, big_files, big_mib, small_files):
    r = random.Random(1)
    for b in range(int(big_files)):
        path = os.path.join(out, "big", "big%02d.bin" % b)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            for _ in range(int(big_mib)):
                f.write(r.randbytes(1 << 20))
    words = b"alpha beta gamma delta chunk blob layer digest offset length static void\n".split(b" ")
    for i in range(int(small_files)):
        size = int(math.exp(math.log(1024) + r.random() * (math.log(65536) - math.log(1024))))
        if i % 2:
            data = r.randbytes(size)
        else:
            data = b" ".join(r.choices(words, k=size // 5 + 1))[:size]
        write(os.path.join(out, "small", "d%03d" % (i // 100), "f%05d" % i), data)
    write(os.path.join(out, "unread.bin"), r.randbytes(4096))


def meta(out, files):
    r = random.Random(2)
    for i in range(int(files)):
        write(os.path.join(out, "d%03d" % (i // 1000), "f%06d" % i), r.randbytes(r.randrange(256)))


if __name__ == "__main__":
    {"reads": reads, "meta": meta}[sys.argv[1]](*sys.argv[2:])
