#!/usr/bin/env python3
"""Compares JPEG tiles served with pass-through to JPEGTables + the stored tile bytes.
Usage: bench-passthrough.py BASE_URL FILE_PATH NAME FULL_RESOLUTION_NUMBER"""
import struct, sys, urllib.request
base, path, name = sys.argv[1], sys.argv[2], sys.argv[3]
d = open(path, 'rb').read()
le = d[:2] == b'II'; E = '<' if le else '>'
big = struct.unpack(E+'H', d[2:4])[0] == 43
def ifd_tags(off):
    tags = {}
    if big:
        n = struct.unpack(E+'Q', d[off:off+8])[0]; p = off + 8; es = 20
    else:
        n = struct.unpack(E+'H', d[off:off+2])[0]; p = off + 2; es = 12
    sizes = {1:1,2:1,3:2,4:4,5:8,7:1,16:8}
    for i in range(n):
        e = p + i*es
        tag, typ = struct.unpack(E+'HH', d[e:e+4])
        cnt = struct.unpack(E+('Q' if big else 'I'), d[e+4:e+(12 if big else 8)])[0]
        vs = sizes.get(typ, 1) * cnt
        fld = e + (12 if big else 8)
        lim = 8 if big else 4
        at = fld if vs <= lim else struct.unpack(E+('Q' if big else 'I'), d[fld:fld+lim])[0]
        raw = d[at:at+vs]
        if typ in (3,4,16):
            fmt = {3:'H',4:'I',16:'Q'}[typ]
            tags[tag] = list(struct.unpack(E+fmt*cnt, raw))
        else:
            tags[tag] = raw
    return tags
first = struct.unpack(E+('Q' if big else 'I'), d[(8 if big else 4):(16 if big else 8)])[0]
t = ifd_tags(first)
tables = t[347]; ok = 0; n = 0
W, H = t[256][0], t[257][0]
cols = -(-W // 256); rows = -(-H // 256)
# IIP resolution of the full level = number of levels - 1
res = int(sys.argv[4])
for idx in [0, 1, cols + 1, (rows // 2) * cols + cols // 2, (rows - 2) * cols + cols - 2]:
    off, cnt = t[324][idx], t[325][idx]
    expected = tables[:-2] + d[off+2:off+cnt]
    got = urllib.request.urlopen(f"{base}/fcgi-bin/iipsrv.fcgi?FIF={name}&JTL={res},{idx}").read()
    n += 1; ok += (got == expected)
print(f"{name}: {ok}/{n} full-resolution JPEG tiles byte-identical to JPEGTables+stored tile")
