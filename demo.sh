#!/bin/bash
# Installs what the demo needs (Debian packages) and runs a VM network
# lifecycle with the bridge driver in throwaway network namespaces, as root.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (the demo creates network namespaces)" >&2; exit 1; }
tools/install-deps
exec /usr/bin/python3 -m vnmlib.cli demo
