#!/usr/bin/env bash
# Writes small seed files for the fuzz targets: tiled TIFF pyramids in every codec,
# depth and layout the reader knows, and JPEG2000 files. Usage: fuzz/make-seeds.sh
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/tiff corpus/jp2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
vips xyz "$T/xy.v" 48 40
vips extract_band "$T/xy.v" "$T/g.v" 0
vips cast "$T/g.v" "$T/g8.v" uchar
vips bandjoin "$T/g8.v $T/g8.v $T/g8.v" "$T/rgb.v"
S="--tile --pyramid --tile-width 16 --tile-height 16"
for c in none deflate lzw zstd jpeg webp packbits; do
  vips tiffsave "$T/rgb.v" "corpus/tiff/rgb-$c.tif" $S --compression $c || true
done
vips tiffsave "$T/rgb.v" corpus/tiff/subifd.tif $S --subifd
vips tiffsave "$T/rgb.v" corpus/tiff/bigtiff.tif $S --bigtiff
vips tiffsave "$T/g8.v" corpus/tiff/bits1.tif $S --bitdepth 1
vips tiffsave "$T/g8.v" corpus/tiff/bits4.tif $S --bitdepth 4
vips tiffsave "$T/g8.v" corpus/tiff/minwhite.tif $S --miniswhite --predictor horizontal --compression deflate
vips cast "$T/g.v" "$T/g16.v" ushort
vips tiffsave "$T/g16.v" corpus/tiff/grey16.tif $S --compression lzw --predictor horizontal
vips cast "$T/g.v" "$T/gf.v" float
vips tiffsave "$T/gf.v" corpus/tiff/float.tif $S --compression deflate --predictor float
vips colourspace "$T/rgb.v" "$T/lab.v" labq
vips tiffsave "$T/lab.v" corpus/tiff/lab.tif $S
tiffcp -p separate corpus/tiff/rgb-none.tif corpus/tiff/planar.tif
vips ppmsave "$T/rgb.v" "$T/rgb.ppm"
opj_compress -i "$T/rgb.ppm" -o corpus/jp2/rgb.jp2 -n 3 >/dev/null
opj_compress -i "$T/rgb.ppm" -o corpus/jp2/layers.jp2 -n 2 -r 40,10,1 -t 16,16 >/dev/null
opj_compress -i "$T/rgb.ppm" -o corpus/jp2/rgb.j2k -n 2 >/dev/null
ls corpus/tiff corpus/jp2 | wc -l
