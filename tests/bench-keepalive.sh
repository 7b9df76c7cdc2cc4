#!/usr/bin/env bash
# Cached-tile throughput through nginx with and without kept FastCGI connections
# (`fastcgi_keep_conn on` + an upstream `keepalive` pool), same wrk load as
# ../shared/bench/fcgi-bench.sh on its `hot` URL list. Not part of the test suite.
# Usage: bench-keepalive.sh KEEPALIVE WORKERS [DURATION]   (KEEPALIVE 0: one connection
# per request, as iipsrv's documentation configures nginx)
set -euo pipefail
B=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KA=$1; W=$2; DUR=${3:-8}
IMAGES=${IMAGE_DIR:-/tmp/bench/images}; URLS=${URL_DIR:-/tmp/bench/urls}/hot.txt
D=$(mktemp -d /tmp/keepalive.XXXXXX); mkdir -p "$D/tmp" "$D/logs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FP=$(free_port); HP=$(free_port)
FILESYSTEM_PREFIX="$IMAGES/" VERBOSITY=0 "${BIN:-$ROOT/target/release/tessera}" \
  --bind "127.0.0.1:$FP" --workers "$W" > "$D/tessera.log" 2>&1 &
SP=$!
trap 'kill "$(cat "$D/nginx.pid" 2>/dev/null)" 2>/dev/null; kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$D"' EXIT
if [ "$KA" = 0 ]; then POOL=""; PASS="fastcgi_pass 127.0.0.1:$FP;"
else POOL="upstream tessera { server 127.0.0.1:$FP; keepalive $KA; }"
     PASS="fastcgi_pass tessera; fastcgi_keep_conn on;"; fi
cat > "$D/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $D/nginx.pid; error_log $D/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $D/tmp/c; proxy_temp_path $D/tmp/p; fastcgi_temp_path $D/tmp/f;
  uwsgi_temp_path $D/tmp/u; scgi_temp_path $D/tmp/s;
  fastcgi_buffer_size 64k; fastcgi_buffers 64 64k; fastcgi_busy_buffers_size 128k;
  $POOL
  server { listen 127.0.0.1:$HP;
    location /fcgi-bin/iipsrv.fcgi { include /etc/nginx/fastcgi_params; $PASS } } }
CONF
nginx -p "$D" -c "$D/nginx.conf" -e "$D/logs/error.log"
sleep 0.5
# CPU seconds (user + system) of a process and its children so far.
cpu() { local t=0 p; for p in "$@" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
  t=$(awk -v t="$t" '{print t + ($14 + $15) / 100}' /proc/"$p"/stat 2>/dev/null || echo "$t"); done; echo "$t"; }
NP=$(cat "$D/nginx.pid")
N0=$(cpu "$NP"); T0=$(cpu "$SP")
URLS_FILE="$URLS" NTHREADS=2 WRK_JSON="$D/out.json" wrk -t2 -c16 -d"${DUR}s" -s "$B/urls.lua" \
  "http://127.0.0.1:$HP" > "$D/wrk.txt" 2>&1
N1=$(cpu "$NP"); T1=$(cpu "$SP")
python3 -c "import json; d=json.load(open('$D/out.json')); n=d['rps']*$DUR; print('keepalive $KA, $W workers:', d.get('rps'), 'req/s, p99', d.get('lat_p99_ms'), 'ms, non2xx', d.get('non2xx'), '| CPU per request: nginx %.1f us, tessera %.1f us' % (($N1-$N0)/n*1e6, ($T1-$T0)/n*1e6), '| nginx busy %.0f %% of a core' % (($N1-$N0)/$DUR*100))"
