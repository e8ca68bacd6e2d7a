#!/bin/bash
# tools/uml/setup.sh [DIR]: make a User-Mode Linux kernel that boots on this host.
#
# Why not Debian 12's user-mode-linux (6.1)? On hosts whose CPUs have AMX /
# AVX-512 (large XSAVE state) its ptrace FP-register handling fails
# ("ptrace set fp regs failed, errno = 14") and the guest panics at boot;
# trixie's 6.12 fails the same way. Debian unstable's build (7.x) copes. It
# needs a newer glibc than the host's, so the kernel binary is pointed at
# unstable's libc6, unpacked next to it (patchelf), and the host is untouched:
# packages are downloaded with apt-get into DIR and unpacked there, not installed.
# Needs: apt-get, dpkg-deb, patchelf.
set -euo pipefail
DIR=${1:-${VNM_UML_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/uml}}
BIN=$DIR/linux.uml
if [ -x "$BIN" ] && [ -d "$DIR/modules" ]; then echo "$DIR"; exit 0; fi
mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/debs"
echo "deb http://deb.debian.org/debian unstable main" > "$DIR/apt/sources.list"
APT=(-o Dir::Etc::SourceList="$DIR/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$DIR/apt/lists" -o Dir::Cache="$DIR/apt/cache"
     -o APT::Sandbox::User=root)
apt-get "${APT[@]}" -q update >&2
( cd "$DIR/debs" && apt-get "${APT[@]}" -q download user-mode-linux libc6 >&2 )
rm -rf "$DIR/root"
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
cp "$DIR/root/usr/bin/linux.uml" "$BIN.tmp"
patchelf --set-interpreter "$DIR/root/usr/lib64/ld-linux-x86-64.so.2" \
         --set-rpath "$DIR/root/usr/lib/x86_64-linux-gnu" "$BIN.tmp"
rm -rf "$DIR/modules" && ln -s "$DIR/root/usr/lib/uml/modules" "$DIR/modules"
mv "$BIN.tmp" "$BIN"
echo "$DIR"
