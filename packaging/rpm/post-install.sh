getent group tessera >/dev/null || groupadd -r tessera
getent passwd tessera >/dev/null || useradd -r -g tessera -d /nonexistent -s /sbin/nologin tessera
install -d -o tessera -g tessera -m 0750 /var/log/tessera
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
