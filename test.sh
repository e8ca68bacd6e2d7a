#!/bin/bash
# Installs what the tests need and runs every test (unit, functional in network
# namespaces, libvirt guests, full-kernel in Debian's kernel under QEMU), as root.
#   1. venv .venv with the current PyPI releases: unit + functional tests;
#   2. the functional tests again with the action scripts on Debian's
#      /usr/bin/python3 and its packages (python3-lxml, python3-pyroute2 0.7, …),
#      as on a hypervisor;
#   3. the full_kernel tests in Debian's own kernel under QEMU (one boot), the actions
#      on Debian's /usr/bin/python3 (the hypervisor's interpreter).
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
# libnftables' binding (:firewall_backend: nft) is Debian's only (pure Python over
# libnftables.so.1, not on PyPI): that one package is linked into the venv
ln -sfn /usr/lib/python3/dist-packages/nftables \
  "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nftables"
PY=.venv/bin/python
echo "== unit + functional tests (venv: $($PY -c 'import pyroute2,lxml.etree as e;print("pyroute2",pyroute2.__version__,"lxml",e.__version__)'))"
$PY -m pytest -q -p no:cacheprovider tests
echo "== functional tests, actions on Debian's /usr/bin/python3 and apt packages"
# (not packaging/: its actions run on the throwaway Debian root's own python3 either way)
VNM_TEST_PYTHON=/usr/bin/python3 $PY -m pytest -q -p no:cacheprovider tests/functional \
  --ignore=tests/functional/packaging
echo "== full_kernel tests in Debian's kernel under QEMU (actions on Debian's python3)"
# one interpreter there, the hypervisor's own: under TCG each pass costs minutes, and the
# venv's newer libraries already run every other test in phase 1
VNM_FULL_KERNEL=1 tools/qemu/run.sh -t 2400 --snapshot . \
  "VNM_TEST_PYTHON=/usr/bin/python3 $PY -m pytest -m full_kernel -q -p no:cacheprovider tests"
