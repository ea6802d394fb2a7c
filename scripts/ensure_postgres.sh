#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the tests (they start a throw-away cluster with
# initdb/pg_ctl in a temporary folder; no system service is used) when it is missing.
set -euo pipefail
for bin in $(pg_config --bindir 2>/dev/null) /usr/lib/postgresql/*/bin; do
    if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then exit 0; fi
done
if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian's postgresql for the database tests..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
