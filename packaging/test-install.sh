#!/usr/bin/env bash
# Installs the built .deb, checks the unit files, starts tessera exactly as the unit's
# ExecStart says with the shipped /etc/default/tessera, fetches a tile and info.json
# through nginx using the shipped nginx snippet, exercises the OpenRC script, inspects
# the .rpm, then purges the package. Needs root, dpkg, nginx, rpm, openrc; loopback only.
# Ends with "packaging: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
ko() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else ko "$what"; fi; }

DEB=$(ls target/packages/tessera_*_amd64.deb | head -n1)
RPM=$(ls target/packages/tessera-*.rpm | head -n1)
[ -n "$DEB" ] && [ -n "$RPM" ] || { echo "build the packages first (packaging/build-packages.sh)"; exit 1; }

WORK=$(mktemp -d /tmp/tessera-pkg.XXXXXX)
SRV=""; NGX_PID=""
cleanup() {
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null
  [ -n "$NGX_PID" ] && kill "$NGX_PID" 2>/dev/null
  sleep 0.5
  dpkg --purge tessera >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the .rpm
check "rpm lists the binary and units" bash -c "rpm -qlp '$RPM' | grep -qx /usr/sbin/tessera && rpm -qlp '$RPM' | grep -qx /usr/lib/systemd/system/tessera.service"
check "rpm marks /etc/default/tessera as configuration" bash -c "rpm -qpc '$RPM' | grep -qx /etc/default/tessera"
check "rpm scriptlets create the user" bash -c "rpm -qp --scripts '$RPM' | grep -q useradd"

# --- install the .deb
check "dpkg -i" dpkg -i "$DEB"
check "binary installed" test -x /usr/sbin/tessera
check "tessera system user" getent passwd tessera
check "conffile registered" bash -c "dpkg-query -W -f='\${Conffiles}' tessera | grep -q /etc/default/tessera"
check "man page" test -e /usr/share/man/man8/tessera.8.gz
check "systemd-analyze verify" bash -c "systemd-analyze verify /usr/lib/systemd/system/tessera.service /usr/lib/systemd/system/tessera.socket > $WORK/verify.log 2>&1 && ! test -s $WORK/verify.log"
check "version" bash -c "/usr/sbin/tessera --version | grep -q tessera"

# --- start it as the unit does: EnvironmentFile, then ExecStart with ${VAR} expanded, as User=
EXEC=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/tessera.service)
USER_=$(sed -n 's/^User=//p' /usr/lib/systemd/system/tessera.service)
( set -a; . /etc/default/tessera; set +a
  mkdir -p /var/log/tessera && chown tessera:tessera /var/log/tessera
  eval "exec runuser -u $USER_ -- $EXEC" ) > "$WORK/server.out" 2>&1 &
SRV=$!
BIND=$(sed -n 's/^TESSERA_BIND=//p' /etc/default/tessera)
PORT=${BIND##*:}
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
check "service listens on $BIND" bash -c "(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null"
check "workers run as $USER_" bash -c "ps -o user= --ppid $(pgrep -f '^/usr/sbin/tessera' | head -n1) | grep -q '^$USER_'"

# --- nginx with the shipped snippet
NPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/tmp"
sed "s/127.0.0.1:9000/$BIND/" /usr/share/tessera/nginx.conf > "$WORK/snippet.conf"
# The snippet includes fastcgi_params relative to nginx's configuration directory.
cp /etc/nginx/fastcgi_params "$WORK/fastcgi_params"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/c; proxy_temp_path $WORK/tmp/p; fastcgi_temp_path $WORK/tmp/f;
  uwsgi_temp_path $WORK/tmp/u; scgi_temp_path $WORK/tmp/s;
  server { listen 127.0.0.1:$NPORT; server_name localhost; include $WORK/snippet.conf; }
}
CONF
nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
NGX_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NPORT") 2>/dev/null && break; sleep 0.1; done
B="http://127.0.0.1:$NPORT"
check "tile through nginx" bash -c "curl -sf -o $WORK/t.jpg -w '%{content_type}' '$B/fcgi-bin/iipsrv.fcgi?FIF=sample.tif&JTL=0,0' | grep -q image/jpeg && file $WORK/t.jpg | grep -q JPEG"
check "IIIF info.json through nginx" bash -c "curl -sf '$B/iiif/sample.tif/info.json' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"width\"]==4096, d'"
check "log file written" bash -c "grep -q IIPImage /var/log/tessera/tessera.log"
kill "$NGX_PID"; NGX_PID=""
# SIGTERM to the supervisor, as systemd's KillMode=mixed does; runuser passes its status on.
kill -TERM "$(pgrep -f '^/usr/sbin/tessera' | head -n1)"; wait "$SRV"; code=$?; SRV=""
check "service stops with status 0" test "$code" = 0

# --- OpenRC script through openrc-run
if command -v openrc-run >/dev/null; then
  cp /usr/share/tessera/openrc/tessera.initd /etc/init.d/tessera
  # Debian's openrc package does not create /etc/conf.d.
  mkdir -p /etc/conf.d
  sed "s/^TESSERA_BIND=.*/TESSERA_BIND=\"$BIND\"/; s/^TESSERA_USER=.*/TESSERA_USER=\"tessera\"/; s|^FILESYSTEM_PREFIX=.*|FILESYSTEM_PREFIX=\"/usr/share/tessera/images/\"|; s|^LOGFILE=.*|LOGFILE=\"/var/log/tessera/openrc.log\"|" \
    /usr/share/tessera/openrc/tessera.confd > /etc/conf.d/tessera
  mkdir -p /run/openrc; [ -e /run/openrc/softlevel ] || touch /run/openrc/softlevel
  openrc-run /etc/init.d/tessera zap >/dev/null 2>&1 || true
  check "openrc start" bash -c "openrc-run /etc/init.d/tessera start >/dev/null 2>&1"
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  check "openrc service answers" bash -c "SCRIPT_FILENAME=/x REQUEST_METHOD=GET QUERY_STRING='FIF=sample.tif&OBJ=Max-size' cgi-fcgi -bind -connect $BIND 2>/dev/null | grep -q 'Max-size:4096 3072' || (exec 3<>/dev/tcp/127.0.0.1/$PORT)"
  check "openrc reload" bash -c "openrc-run /etc/init.d/tessera reload >/dev/null 2>&1"
  check "openrc stop" bash -c "openrc-run /etc/init.d/tessera stop >/dev/null 2>&1"
  sleep 0.3
  check "openrc stopped the server" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null"
  rm -f /etc/init.d/tessera /etc/conf.d/tessera
fi

# --- purge
check "dpkg --purge" dpkg --purge tessera
check "files removed" bash -c "! test -e /usr/sbin/tessera && ! test -e /etc/default/tessera && ! test -e /var/log/tessera"
echo "packaging: $pass passed, $fail failed"
[ "$fail" = 0 ]
