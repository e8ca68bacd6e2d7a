#!/bin/bash
# tools/uml/run.sh [-m MEM] [-t SECONDS] [--rwdir DIR]... 'COMMAND'
# Runs COMMAND with bash, as root, in a User-Mode Linux kernel (see setup.sh)
# whose root is this machine's / over hostfs, read-only; /tmp /var /etc /root
# /home get a throwaway tmpfs overlay; each --rwdir DIR is really writable.
# Exported variables and the current directory are carried in. Exit code: the
# command's; 124 on timeout; 125 if the guest died without reporting one.
set -u
MEM=1G; TMO=0; RW=""
while [ $# -gt 1 ]; do case "$1" in
  -m) MEM=$2; shift 2;; -t) TMO=$2; shift 2;;
  --rwdir) RW="$RW,$(realpath "$2")"; shift 2;; *) break;; esac; done
[ $# -eq 1 ] || { echo "usage: $0 [-m MEM] [-t SECONDS] [--rwdir DIR]... 'COMMAND'" >&2; exit 2; }
HERE=$(dirname "$(realpath "$0")")
UML_DIR=$("$HERE/setup.sh") || { echo "run.sh: no usable UML kernel (tools/uml/setup.sh failed)" >&2; exit 125; }
UML_BIN=${UML_BIN:-$UML_DIR/linux.uml}; UML_MODS=${UML_MODS:-$(realpath "$UML_DIR/modules")}
mkdir -p /lib/modules  # mount point for the guest's modules; an empty directory on the host
run=$(mktemp -d /tmp/uml-run.XXXXXX)
{ export -p; echo "export TERM=dumb"; printf 'cd %q || exit 126\n' "$PWD"; printf '%s\n' "$1"; } > "$run/cmd"
# UML backs guest RAM with a file in $TMPDIR; it must allow exec
export TMPDIR=${UML_TMPDIR:-/dev/shm}
"$UML_BIN" mem=$MEM root=/dev/root rootfstype=hostfs rootflags=/ ro quiet \
  init="$HERE/uml-init.sh" UMLRUN="$run" UML_MODS="$UML_MODS" UML_RWDIRS="${RW#,}" \
  con0=fd:0,fd:1 con=null ssl=null </dev/null \
  > >(grep --line-buffered -v -E '^(SELinux: |mmapper_init|Failed to initialize ubd|reboot: |modprobe: module ipv6 )') 2>&1 &
uml=$!   # UML makes itself a session leader: a group kill misses it, so kill it by pid
trap 'kill -TERM $uml 2>/dev/null; wait $uml; rm -rf "$run"; exit 130' INT TERM HUP
if [ "$TMO" != 0 ]; then ( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep "$TMO" & s=$!; wait $s; echo "run.sh: timeout after ${TMO}s" >&2; kill -TERM $uml 2>/dev/null ) & wd=$!; fi
wait $uml
rc=$(cat "$run/rc" 2>/dev/null) || rc=125
if [ "$TMO" != 0 ]; then kill -0 $wd 2>/dev/null || { [ -s "$run/rc" ] || rc=124; }; kill $wd 2>/dev/null; wait $wd 2>/dev/null; fi
rm -rf "$run"
exit "$rc"
