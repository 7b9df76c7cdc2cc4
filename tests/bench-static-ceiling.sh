#!/usr/bin/env bash
# The "hot" ceiling: nginx serving the hot workload's tile bytes as static files, with the
# same nginx settings and wrk load as ../shared/bench/fcgi-bench.sh. Not part of the test
# suite. Usage: bench-static-ceiling.sh FCGI_PORT_OF_A_RUNNING_SERVER [DURATION]
set -euo pipefail
B=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
. "$B/lib-nginx.sh"
PORT=$1; DUR=${2:-10}
D=$(mktemp -d /tmp/static-ceiling.XXXXXX); chmod 755 "$D"; mkdir -p "$D/static"
trap 'nginx_stop; [ -n "${SN:-}" ] && kill "$(cat "$SN/nginx.pid")" 2>/dev/null; rm -rf "$D"' EXIT
nginx_start "$PORT"
i=0; : > "$D/urls.txt"
while read -r u; do
  curl -sf -o "$D/static/t$i.jpg" "$BASE$u"; echo "/static/t$i.jpg" >> "$D/urls.txt"; i=$((i + 1))
done < /tmp/bench/urls/hot.txt
nginx_stop
SN=$D/nginx; mkdir -p "$SN/tmp" "$SN/logs"
SP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$SN/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $SN/nginx.pid; error_log $SN/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $SN/tmp/c; proxy_temp_path $SN/tmp/p; fastcgi_temp_path $SN/tmp/f;
  uwsgi_temp_path $SN/tmp/u; scgi_temp_path $SN/tmp/s;
  server { listen 127.0.0.1:$SP; location /static/ { root $D; } } }
CONF
nginx -p "$SN" -c "$SN/nginx.conf" -e "$SN/logs/error.log"
sleep 0.3
URLS_FILE="$D/urls.txt" NTHREADS=2 WRK_JSON="$D/out.json" wrk -t2 -c16 -d"${DUR}s" -s "$B/urls.lua" "http://127.0.0.1:$SP" > "$D/wrk.txt" 2>&1
python3 -c "import json; d=json.load(open('$D/out.json')); print('nginx static ceiling (hot tiles):', round(d['requests']/d['duration_s'] if 'duration_s' in d else d['rps'],1), 'req/s', 'non2xx', d.get('non2xx'))"
