#!/usr/bin/env bash
# Starts tessera on the bundled sample image in its built-in HTTP mode, with the
# OpenSeadragon viewer page at http://127.0.0.1:8080/ (OpenSeadragon comes from npm
# when npm is available). Env: HTTP_PORT (8080), WORKERS (number of CPUs). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTP_PORT=${HTTP_PORT:-8080}

need=""
for t in cc cmake nasm pkg-config; do command -v "$t" >/dev/null || need=1; done
[ -e /usr/include/zstd.h ] || need=1
if [ -n "$need" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    build-essential pkg-config cmake nasm libzstd-dev
fi
cargo build --release

VIEWER=target/viewer/node_modules/openseadragon/build/openseadragon
if [ ! -e "$VIEWER/openseadragon.min.js" ] && command -v npm >/dev/null; then
  npm install --prefix target/viewer --no-audit --no-fund openseadragon >/dev/null || true
fi

B="http://127.0.0.1:$HTTP_PORT"
cat <<MSG
tessera is serving samples/sample.tif. Open $B/ in a browser, or try:
  curl '$B/?FIF=sample.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number'
  curl -o tile.jpg '$B/?FIF=sample.tif&JTL=4,10'
  curl '$B/iiif/sample.tif/info.json'
  curl -o region.jpg '$B/iiif/sample.tif/1024,768,2048,1536/800,/0/default.jpg'
Press Ctrl-C to stop.
MSG
FILESYSTEM_PREFIX="$PWD/samples/" LOGFILE=- VERBOSITY=${VERBOSITY:-1} MEMCACHED_SERVERS="" \
  exec ./target/release/tessera --http "127.0.0.1:$HTTP_PORT" --viewer "$VIEWER" --workers "${WORKERS:-4}"
