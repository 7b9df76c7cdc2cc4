#!/usr/bin/env bash
# Builds the test image corpus (the images tests/facts.rs names) with vips and
# libtiff's tools. Usage: tests/make-fixtures.sh OUT_DIR. Deterministic; ~5 s.
set -euo pipefail
OUT=${1:?usage: make-fixtures.sh OUT_DIR}
for t in vips tiffset tiffcp opj_compress python3; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install libvips-tools libtiff-tools)" >&2; exit 1; }
done
mkdir -p "$OUT"
T=$(mktemp -d "${TMPDIR:-/tmp}/tessera-fixtures.XXXXXX")
trap 'rm -rf "$T"' EXIT

# gradient W H NAME: 3-band uchar image, red falls and blue rises left to right,
# green rises top to bottom; a fine texture keeps JPEG tiles realistic.
gradient() {
  local w=$1 h=$2 n=$3
  vips xyz "$T/$n-xy.v" "$w" "$h"
  vips extract_band "$T/$n-xy.v" "$T/$n-x.v" 0
  vips extract_band "$T/$n-xy.v" "$T/$n-y.v" 1
  vips linear "$T/$n-x.v" "$T/$n-r.v" " -$(echo "scale=6; 255/$w" | bc)" 255 --uchar
  vips linear "$T/$n-x.v" "$T/$n-b.v" "$(echo "scale=6; 255/$w" | bc)" 0 --uchar
  vips linear "$T/$n-y.v" "$T/$n-g.v" "$(echo "scale=6; 255/$h" | bc)" 0 --uchar
  vips bandjoin "$T/$n-r.v $T/$n-g.v $T/$n-b.v" "$T/$n-rgb0.v"
  # 28.34 px/cm, as the reference corpus carries
  vips copy "$T/$n-rgb0.v" "$T/$n.v" --xres 2.834 --yres 2.834
}

TILE="--tile --pyramid --tile-width 256 --tile-height 256"
gradient 5000 3000 big
gradient 1001 777 small
gradient 2000 1500 photo
vips jpegsave "$T/photo.v" "$OUT/photo.jpg" --Q 90
# JPEG2000, lossless, 3 resolutions (1001x777, 501x389, 251x195), as the facts expect
vips ppmsave "$T/small.v" "$T/small.ppm"
opj_compress -i "$T/small.ppm" -o "$OUT/small.jp2" -n 3 >/dev/null
# three quality layers (600:1, 200:1, lossless)
opj_compress -i "$T/small.ppm" -o "$OUT/layers.jp2" -n 3 -r 600,200,1 >/dev/null
# codestream tiles of 1024x1024 (4x4 of the server's tiles at full size, 2x2 at half)
vips ppmsave "$T/photo.v" "$T/photo.ppm"
opj_compress -i "$T/photo.ppm" -o "$OUT/tiled.jp2" -n 4 -t 1024,1024 -I -r 20 >/dev/null
# one resolution only: the server adds virtual levels below it
opj_compress -i "$T/small.ppm" -o "$OUT/flat.jp2" -n 1 >/dev/null
vips tiffsave "$T/big.v" "$OUT/big.tif" $TILE --compression jpeg --Q 90
vips tiffsave "$T/big.v" "$OUT/big_subifd.tif" $TILE --compression jpeg --Q 90 --subifd
vips tiffsave "$T/big.v" "$OUT/big_bigtiff.tif" $TILE --compression jpeg --Q 90 --bigtiff
vips tiffsave "$T/small.v" "$OUT/small.tif" $TILE --compression deflate
vips tiffsave "$T/small.v" "$OUT/small_lzw.tif" $TILE --compression lzw --predictor horizontal
vips tiffsave "$T/small.v" "$OUT/small_zstd.tif" $TILE --compression zstd
vips tiffsave "$T/small.v" "$OUT/small_none.tif" $TILE --compression none
vips tiffsave "$T/small.v" "$OUT/small_jpeg.tif" $TILE --compression jpeg --Q 95
vips colourspace "$T/small.v" "$T/grey.v" b-w
vips tiffsave "$T/grey.v" "$OUT/grey.tif" $TILE --compression deflate
vips cast "$T/grey.v" "$T/grey16a.v" ushort
vips linear "$T/grey16a.v" "$T/grey16.v" 257 0
vips cast "$T/grey16.v" "$T/grey16c.v" ushort
vips tiffsave "$T/grey16c.v" "$OUT/grey16.tif" $TILE
# 32-bit float, values 0..1, floating-point predictor (one level)
vips linear "$T/grey.v" "$T/greyf.v" 0.00392156862745098 0
vips tiffsave "$T/greyf.v" "$OUT/float.tif" --tile --tile-width 256 --tile-height 256 --compression deflate --predictor float
# 32-bit float pyramid whose levels were rounded up on halving (501x389, 251x195, where
# vips rounds down), with stripes across both axes that show any lost row or column
FLOAT="--tile --tile-width 256 --tile-height 256 --compression deflate --predictor float"
vips xyz "$T/fxy.v" 1001 777
vips remainder_const "$T/fxy.v" "$T/fmod.v" 24
vips relational_const "$T/fmod.v" "$T/fbars.v" less 12
vips bandmean "$T/fbars.v" "$T/fbar.v"
vips linear "$T/fbar.v" "$T/fstripes.v" 0.001 0
vips linear "$T/greyf.v" "$T/fdim.v" 0.7 0
vips add "$T/fdim.v" "$T/fstripes.v" "$T/fp0.v"
vips resize "$T/fp0.v" "$T/fp1.v" 0.5005 --vscale 0.5006
vips resize "$T/fp0.v" "$T/fp2.v" 0.25075 --vscale 0.25097
for i in 0 1 2; do vips tiffsave "$T/fp$i.v" "$T/fp$i.tif" $FLOAT; done
tiffcp "$T/fp0.tif" "$T/fp1.tif" "$T/fp2.tif" "$OUT/float_pyr.tif"
# 32-bit float, values 0..1000 with SMaxSampleValue 1000 (one level). tiffset writes
# this tag's value as 0, so it makes the entry and the value is patched in place.
vips linear "$T/greyf.v" "$T/fk.v" 1000 0
vips tiffsave "$T/fk.v" "$OUT/float_range.tif" $FLOAT
tiffset -s 341 1 1000 "$OUT/float_range.tif"
python3 - "$OUT/float_range.tif" <<'PY'
import struct, sys
path = sys.argv[1]
b = bytearray(open(path, "rb").read())
e = "<" if b[:2] == b"II" else ">"
ifd = struct.unpack_from(e + "I", b, 4)[0]
for i in range(struct.unpack_from(e + "H", b, ifd)[0]):
    at = ifd + 2 + 12 * i
    tag, kind, count = struct.unpack_from(e + "HHI", b, at)
    if (tag, kind, count) == (341, 11, 1):
        struct.pack_into(e + "f", b, at + 8, 1000.0)
open(path, "wb").write(b)
PY
# untiled: the server refuses it with a clear error
vips tiffsave "$T/small.v" "$OUT/stripped.tif" --compression deflate

# Source variants: depths, photometrics, layouts and codecs (docs/sources.md §3)
vips tiffsave "$T/grey.v" "$OUT/bits1.tif" $TILE --bitdepth 1
vips tiffsave "$T/grey.v" "$OUT/bits2.tif" $TILE --bitdepth 2
vips tiffsave "$T/grey.v" "$OUT/bits4.tif" $TILE --bitdepth 4
vips tiffsave "$T/grey.v" "$OUT/miniswhite.tif" $TILE --miniswhite --compression deflate
vips tiffsave "$T/small.v" "$OUT/small_webp.tif" $TILE --compression webp --Q 90
tiffcp -c packbits "$OUT/small_none.tif" "$OUT/small_packbits.tif"
tiffcp -p separate "$OUT/small_none.tif" "$OUT/planar.tif"
vips tiffsave "$T/small.v" "$T/strip.tif"
tiffmedian "$T/strip.tif" "$T/pal.tif" >/dev/null
tiffcp -t -w 256 -l 256 "$T/pal.tif" "$OUT/palette.tif"
vips colourspace "$T/small.v" "$T/labq.v" labq
vips tiffsave "$T/labq.v" "$OUT/lab8.tif" $TILE
vips colourspace "$T/small.v" "$T/labs.v" labs
vips tiffsave "$T/labs.v" "$OUT/lab16.tif" $TILE
vips colourspace "$T/small.v" "$T/labf.v" lab
vips tiffsave "$T/labf.v" "$OUT/labf.tif" $TILE
vips cast "$T/small.v" "$T/rgb16a.v" ushort
vips linear "$T/rgb16a.v" "$T/rgb16b.v" 257 0
vips cast "$T/rgb16b.v" "$T/rgb16.v" ushort
vips tiffsave "$T/rgb16.v" "$OUT/rgb16.tif" $TILE --compression lzw --predictor horizontal
vips bandjoin "$T/small.v $T/grey.v $T/small-x.v" "$T/five.v"
vips cast "$T/five.v" "$T/five8.v" uchar
vips tiffsave "$T/five8.v" "$OUT/fiveband.tif" $TILE --compression deflate
# A 3-page stack (red, green, blue; 600x400), each page with a SubIFD pyramid
vips black "$T/k.v" 600 400 --bands 3
vips linear "$T/k.v" "$T/red.v" "1 1 1" "255 0 0" --uchar
vips linear "$T/k.v" "$T/green.v" "1 1 1" "0 255 0" --uchar
vips linear "$T/k.v" "$T/blue.v" "1 1 1" "0 0 255" --uchar
vips join "$T/red.v" "$T/green.v" "$T/rg.v" vertical
vips join "$T/rg.v" "$T/blue.v" "$T/rgbstack.v" vertical
vips tiffsave "$T/rgbstack.v" "$OUT/stack.tif" --page-height 400 $TILE --subifd

# An embedded ICC profile (vips's sRGB, 6922 bytes), JPEG tiles
vips icc_transform "$T/small.v" "$T/icc.v" srgb --input-profile srgb --embedded
vips tiffsave "$T/icc.v" "$OUT/icc.tif" $TILE --compression jpeg --Q 90

cp "$OUT/small.tif" "$OUT/meta.tif"
tiffset -s 270 'A "quoted" description' "$OUT/meta.tif"
tiffset -s 315 'Jane Doe' "$OUT/meta.tif"
tiffset -s 33432 'CC0' "$OUT/meta.tif"
tiffset -s 269 'Doc title' "$OUT/meta.tif"
tiffset -s 306 '2024:01:02 03:04:05' "$OUT/meta.tif"

# A plain JPEG with EXIF (APP1: one IFD0 entry, Make = "Tess") right after SOI
{ head -c 2 "$OUT/photo.jpg"
  printf '\377\341\000\047Exif\000\000II*\000\010\000\000\000\001\000\017\001\002\000\005\000\000\000\032\000\000\000\000\000\000\000Tess\000'
  tail -c +3 "$OUT/photo.jpg"; } > "$OUT/exif.jpg"
# The same with an XMP packet of 80 bytes (APP1, Adobe's namespace) after the EXIF
{ head -c 43 "$OUT/exif.jpg"
  printf '\377\341\000\157http://ns.adobe.com/xap/1.0/\000'
  printf '<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>Tessellated</dc:title></x:xmpmeta>'
  tail -c +44 "$OUT/exif.jpg"; } > "$OUT/xmp.jpg"

# An image sequence (FILENAME_PATTERN's default "pyr_"): angles 0/10 x 90/100
cp "$OUT/small.tif" "$OUT/seq_pyr_000_090.tif"
cp "$OUT/grey.tif" "$OUT/seq_pyr_010_090.tif"
cp "$OUT/small.tif" "$OUT/seq_pyr_000_100.tif"

printf 'this is not an image, just text\n' > "$OUT/notimage.tif"
printf 'II*\0' > "$OUT/short.tif"
# a TIFF header whose first IFD offset points far past the end of the file
printf 'II*\0\377\377\377\177padding' > "$OUT/badifd.tif"
head -c 4096 "$OUT/small.tif" > "$OUT/truncated.tif"
touch "$OUT/.complete"
