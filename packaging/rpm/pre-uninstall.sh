if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now tessera.service tessera.socket >/dev/null 2>&1 || :
fi
