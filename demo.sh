#!/bin/bash
# Installs what the demo needs (Debian packages) and runs a VM network
# lifecycle with the bridge driver in throwaway network namespaces, as root.
set -euo pipefail
cd "$(dirname "$0")"
# as root; a user with sudo is lifted (a root shell on a host without sudo runs it as it is)
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "demo.sh: run as root (the demo creates network namespaces)" >&2; exit 1; }
  exec sudo "$PWD/$(basename "$0")" "$@"
fi
tools/install-deps
exec /usr/bin/python3 -m vnmlib.cli demo
