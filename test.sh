#!/bin/bash
# Installs what the tests need and runs every test (unit, functional in network
# namespaces, libvirt guests, full-kernel in Debian's kernel under QEMU), as root.
#   1. venv .venv with the current PyPI releases: unit + functional tests;
#   2. the functional tests again with the action scripts on Debian's
#      /usr/bin/python3 and its packages (python3-lxml, python3-pyroute2 0.7, …),
#      as on a hypervisor;
#   3. the full_kernel tests in Debian's own kernel under QEMU (one boot), with both
#      interpreters.
set -euo pipefail
cd "$(dirname "$0")"
# as root; a user with sudo is lifted (a root shell on a host without sudo runs it as it is)
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "test.sh: run as root (the tests create network namespaces)" >&2; exit 1; }
  exec sudo "$PWD/$(basename "$0")" "$@"
fi
tools/install-deps
if [ ! -x .venv/bin/python ]; then /usr/bin/python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,iptc,aws]'
PY=.venv/bin/python
echo "== unit + functional tests (venv: $($PY -c 'import pyroute2,lxml.etree as e;print("pyroute2",pyroute2.__version__,"lxml",e.__version__)'))"
$PY -m pytest -q -p no:cacheprovider tests
echo "== functional tests, actions on Debian's /usr/bin/python3 and apt packages"
# (not packaging/: its actions run on the throwaway Debian root's own python3 either way)
VNM_TEST_PYTHON=/usr/bin/python3 $PY -m pytest -q -p no:cacheprovider tests/functional \
  --ignore=tests/functional/packaging
echo "== full_kernel tests in Debian's kernel under QEMU (venv, then Debian's python3)"
VNM_FULL_KERNEL=1 tools/qemu/run.sh -t 2400 --snapshot . "$PY -m pytest -m full_kernel -q -p no:cacheprovider tests \
  && VNM_TEST_PYTHON=/usr/bin/python3 $PY -m pytest -m full_kernel -q -p no:cacheprovider tests"
