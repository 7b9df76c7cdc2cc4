#!/usr/bin/env python3
"""Checks every JTL tile of benchmark-corpus files through nginx: each decodes (PIL) to
its level edge size. Usage: bench-alltiles.py BASE_URL IMAGE_DIR FILE...
(needs Pillow and /tmp/bench/urls/levels.json from ../shared/bench/gen-urls.py)."""
import sys, json, io, urllib.request, concurrent.futures as cf
from PIL import Image
base, imgdir = sys.argv[1], sys.argv[2]
levels = json.load(open('/tmp/bench/urls/levels.json'))
files = sys.argv[3:]
def check(args):
    f, r, t, w, h = args
    u = f"{base}/fcgi-bin/iipsrv.fcgi?FIF={f}&JTL={r},{t}"
    with urllib.request.urlopen(u) as resp:
        b = resp.read()
    im = Image.open(io.BytesIO(b)); im.load()
    return (im.size == (w, h)), u, im.size, (w, h)
jobs = []
for f in files:
    L = levels[f]['levels']
    n = len(L)
    for k, (lw, lh) in enumerate(L):
        r = n - 1 - k
        cols, rows = -(-lw // 256), -(-lh // 256)
        if f.startswith('big_') and k < 3: continue  # the 3 largest BigTIFF levels: ~47k tiles, sampled below
        for t in range(cols * rows):
            c, ro = t % cols, t // cols
            jobs.append((f, r, t, min(256, lw - c*256), min(256, lh - ro*256)))
    if f.startswith('big_'):
        for k in range(3):
            lw, lh = L[k]; cols, rows = -(-lw // 256), -(-lh // 256)
            for t in list(range(0, cols*rows, 97)) + [cols*rows-1, cols-1]:
                c, ro = t % cols, t // cols
                jobs.append((f, n-1-k, t, min(256, lw - c*256), min(256, lh - ro*256)))
bad = 0
with cf.ThreadPoolExecutor(6) as ex:
    for ok, u, got, want in ex.map(check, jobs):
        if not ok:
            bad += 1
            if bad < 5: print("BAD", u, got, want)
print(f"{len(jobs)} tiles checked, {bad} wrong size")
