#!/usr/bin/env bash
# Starts tessera on the bundled sample image behind a private nginx on loopback.
#   bash samples/run.sh            then open http://127.0.0.1:8080/ URLs it prints
# Env: HTTP_PORT (8080), FCGI_PORT (9000), WORKERS (number of CPUs). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTP_PORT=${HTTP_PORT:-8080}
FCGI_PORT=${FCGI_PORT:-9000}

need=""
for t in cc cmake nasm pkg-config nginx; do command -v "$t" >/dev/null || need=1; done
[ -e /usr/include/zstd.h ] || need=1
if [ -n "$need" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    build-essential pkg-config cmake nasm libzstd-dev nginx-light
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
cargo build --release

RUN=$(mktemp -d /tmp/tessera-sample.XXXXXX)
mkdir -p "$RUN/tmp"
cat > "$RUN/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $RUN/nginx.pid;
error_log $RUN/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $RUN/tmp/client; proxy_temp_path $RUN/tmp/proxy;
  fastcgi_temp_path $RUN/tmp/fcgi; uwsgi_temp_path $RUN/tmp/uwsgi; scgi_temp_path $RUN/tmp/scgi;
  server {
    listen 127.0.0.1:$HTTP_PORT;
    location = /fcgi-bin/iipsrv.fcgi { include /etc/nginx/fastcgi_params; fastcgi_pass 127.0.0.1:$FCGI_PORT; }
    location /iiif/ { include /etc/nginx/fastcgi_params; fastcgi_pass 127.0.0.1:$FCGI_PORT; }
  }
}
CONF
nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/error.log"
cleanup() { kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT

B="http://127.0.0.1:$HTTP_PORT"
cat <<MSG
tessera is serving samples/sample.tif. Try:
  curl '$B/fcgi-bin/iipsrv.fcgi?FIF=sample.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number'
  curl -o tile.jpg '$B/fcgi-bin/iipsrv.fcgi?FIF=sample.tif&JTL=4,10'
  curl '$B/iiif/sample.tif/info.json'
  curl '$B/fcgi-bin/iipsrv.fcgi?DeepZoom=sample.tif.dzi'
Press Ctrl-C to stop.
MSG
FILESYSTEM_PREFIX="$PWD/samples/" URI_MAP="iiif=>IIIF" LOGFILE=- VERBOSITY=${VERBOSITY:-1} \
  MEMCACHED_SERVERS="" ./target/release/tessera --bind "127.0.0.1:$FCGI_PORT" ${WORKERS:+--workers $WORKERS}
