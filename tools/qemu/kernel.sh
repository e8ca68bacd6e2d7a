#!/bin/bash
# tools/qemu/kernel.sh: prints the version of Debian's generic kernel package
# (linux-image-amd64) installed here, the newest one with its modules.
# The generic flavour, not -cloud-: only it has 9p, the runner's root filesystem.
set -euo pipefail
if [ -n "${VNM_QEMU_KVER:-}" ]; then echo "$VNM_QEMU_KVER"; exit 0; fi
for k in $(ls -v /boot/vmlinuz-*-amd64 2>/dev/null | grep -v -- -cloud- | tac); do
  v=${k#/boot/vmlinuz-}
  [ -f "/lib/modules/$v/modules.dep" ] && { echo "$v"; exit 0; }
done
echo "kernel.sh: no linux-image-amd64 kernel with modules (tools/install-deps installs it)" >&2
exit 1
