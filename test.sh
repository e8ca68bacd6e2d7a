#!/bin/bash
# Installs what the tests need and runs every test (unit, functional in network
# namespaces, libvirt guests, full-kernel in Debian's kernel under QEMU), as root.
#   1. venv .venv with the current PyPI releases: unit + functional tests;
#   2. the functional tests again with the action scripts on Debian's
#      /usr/bin/python3 and its packages (python3-pyroute2 0.7, python3-yaml, …),
#      as on a hypervisor;
#   3. the full_kernel tests in Debian's own kernel under QEMU (one boot), the actions
#      on Debian's /usr/bin/python3 (the hypervisor's interpreter), run beside phase 2.
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
echo "== unit + functional tests (venv: $($PY -c 'import pyroute2,yaml;print("pyroute2",pyroute2.__version__,"PyYAML",yaml.__version__)'))"
$PY -m pytest -q -p no:cacheprovider tests
# The full_kernel group runs in Debian's kernel under QEMU beside phase 2: the guest is its
# own machine (its own kernel, namespaces, /etc and /tmp overlay), and phase 2 spends most
# of its time waiting on packets and timeouts, so the two share the 2 cores well and the
# suite saves the group's 5-6 minutes. Its output follows phase 2's.
full_kernel_log=$(mktemp /tmp/vnm-full-kernel.XXXXXX)
# one interpreter there, the hypervisor's own: under TCG each pass costs minutes, and the
# venv's newer libraries already run every other test in phase 1; its pytest's temporary
# directories on the guest's own tmpfs (/run), never beside the host's in /tmp
VNM_FULL_KERNEL=1 tools/qemu/run.sh -t 2400 --snapshot . \
  "VNM_TEST_PYTHON=/usr/bin/python3 $PY -m pytest -m full_kernel -q -p no:cacheprovider --basetemp=/run/vnm-pytest tests" \
  > "$full_kernel_log" 2>&1 &
full_kernel=$!
trap 'kill -TERM $full_kernel 2>/dev/null; wait $full_kernel 2>/dev/null; rm -f "$full_kernel_log"' EXIT
echo "== functional tests, actions on Debian's /usr/bin/python3 and apt packages"
# (not packaging/: its actions run on the throwaway Debian root's own python3 either way)
phase2=0
VNM_TEST_PYTHON=/usr/bin/python3 $PY -m pytest -q -p no:cacheprovider tests/functional \
  --ignore=tests/functional/packaging || phase2=$?
echo "== full_kernel tests in Debian's kernel under QEMU (actions on Debian's python3)"
full=0
wait $full_kernel || full=$?
cat "$full_kernel_log"
trap - EXIT
rm -f "$full_kernel_log"
[ "$phase2" = 0 ] && [ "$full" = 0 ] || { echo "test.sh: phase 2 exit $phase2, full_kernel exit $full" >&2; exit 1; }
