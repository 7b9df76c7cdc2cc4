#!/usr/bin/env bash
# Serves a tile and an info.json through each shipped web-server snippet on loopback:
# nginx, Apache mod_proxy_fcgi, Apache mod_fcgid (spawning tessera), lighttpd with a
# running tessera and lighttpd spawning it (bin-path). Only the port, the binary path and
# the image root are substituted. Usage: test-snippets.sh TESSERA_BINARY IMAGE_DIR
# Ends with "snippets: N passed, M failed".
set -uo pipefail
BIN=$(readlink -f "$1"); IMG=$(readlink -f "$2")
cd "$(dirname "$0")"
W=$(mktemp -d /tmp/tessera-snippets.XXXXXX); chmod 755 "$W"
pass=0; fail=0
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
probe() { # name base-url
  local name=$1 b=$2 ct id
  ct=$(curl -s -o "$W/t.jpg" -w '%{http_code} %{content_type}' "$b/fcgi-bin/iipsrv.fcgi?FIF=small.tif&JTL=2,0")
  if [ "$ct" = "200 image/jpeg" ] && file "$W/t.jpg" | grep -q 'JPEG image data'; then
    pass=$((pass + 1)); echo "PASS $name tile"
  else fail=$((fail + 1)); echo "FAIL $name tile: $ct"; fi
  id=$(curl -s "$b/iiif/small.tif/info.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)
  # Debian's fastcgi_params passes HTTP_HOST as nginx's $host, without the port.
  if [ "$id" = "${b}/iiif/small.tif" ] || [ "$name:$id" = "nginx:${b%:*}/iiif/small.tif" ]; then
    pass=$((pass + 1)); echo "PASS $name info.json"
  else fail=$((fail + 1)); echo "FAIL $name info.json id: '$id'"; fi
}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT
KEEP=${KEEP:-}

# A running tessera for the "service" snippets.
TP=$(free_port)
FILESYSTEM_PREFIX="$IMG/" URI_MAP='iiif=>IIIF' LOGFILE="$W/tessera.log" MEMCACHED_SERVERS= \
  "$BIN" --bind "127.0.0.1:$TP" --workers 2 & PIDS+=($!)
up "$TP" || { echo "tessera did not start"; exit 1; }

# nginx
NP=$(free_port); mkdir -p "$W/nginx/tmp"; cp /etc/nginx/fastcgi_params "$W/nginx/"
sed "s/127.0.0.1:9000/127.0.0.1:$TP/" nginx.conf > "$W/nginx/snippet.conf"
cat > "$W/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $W/nginx/pid; error_log $W/nginx/error.log warn;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $W/nginx/tmp/c; proxy_temp_path $W/nginx/tmp/p;
  fastcgi_temp_path $W/nginx/tmp/f; uwsgi_temp_path $W/nginx/tmp/u; scgi_temp_path $W/nginx/tmp/s;
  server { listen 127.0.0.1:$NP; server_name localhost; include $W/nginx/snippet.conf; } }
CONF
nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" & PIDS+=($!)
up "$NP" && probe nginx "http://127.0.0.1:$NP"

apache() { # name snippet-file
  local name=$1 port d; port=$(free_port); d="$W/$name"; mkdir -p "$d/fcgid"; chmod 777 "$d" "$d/fcgid"
  sed -e "s/127.0.0.1:9000/127.0.0.1:$TP/g" -e "s|/usr/sbin/tessera|$BIN|g" \
      -e "s|/usr/share/tessera/images/|$IMG/|g" -e "s|/tmp/tessera.log|$d/tessera.log|" "$2" > "$d/snippet.conf"
  cat > "$d/httpd.conf" <<CONF
ServerRoot "$d"
Listen 127.0.0.1:$port
PidFile $d/httpd.pid
ErrorLog $d/error.log
ServerName localhost
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so
LoadModule fcgid_module /usr/lib/apache2/modules/mod_fcgid.so
FcgidIPCDir $d/fcgid
FcgidProcessTableFile $d/fcgid/shm
Include $d/snippet.conf
CONF
  /usr/sbin/apache2 -f "$d/httpd.conf" -DFOREGROUND & PIDS+=($!)
  up "$port" && probe "$name" "http://127.0.0.1:$port"
}
apache apache-proxy-fcgi apache-proxy-fcgi.conf
apache apache-fcgid apache-fcgid.conf

lighttpd_run() { # name snippet-file
  local name=$1 port d; port=$(free_port); d="$W/$name"; mkdir -p "$d"; chmod 777 "$d"
  sed -e "s/\"port\" => 9000/\"port\" => $TP/g" -e "s|/usr/sbin/tessera|$BIN|g" -e "s|/usr/share/tessera/images/|$IMG/|g" \
      -e "s|/run/lighttpd/tessera.sock|$d/tessera.sock|g" -e "s|/var/log/lighttpd/tessera.log|$d/tessera.log|" "$2" > "$d/snippet.conf"
  cat > "$d/lighttpd.conf" <<CONF
server.modules = ( "mod_fastcgi" )
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$d"
server.errorlog = "$d/error.log"
server.pid-file = "$d/pid"
include "$d/snippet.conf"
CONF
  lighttpd -D -f "$d/lighttpd.conf" & PIDS+=($!)
  up "$port" && probe "$name" "http://127.0.0.1:$port"
}
lighttpd_run lighttpd lighttpd.conf
lighttpd_run lighttpd-spawn lighttpd-spawn.conf

echo "snippets: $pass passed, $fail failed"
[ "$fail" = 0 ]
