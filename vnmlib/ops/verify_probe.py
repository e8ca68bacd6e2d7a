"""``vnm verify``'s throwaway probe: a veth port on a VM's bridge that sends real frames.

The probe stands where the network stands, never in the VM's place: a frame
it sends to the VM's MAC is bridged to the VM's tap through FORWARD, vnm's
``opennebula`` chain and the NIC's real ``-i`` chain, exactly as a frame from
the uplink or another VM would be. Whether it got through is read on the tap
itself, with a packet socket that sees what the bridge transmits to the VM
(``PACKET_OUTGOING``): nothing is added to the VM's rules, and the VM's
protection is never touched.

What it changes, and how it is undone:

- one veth pair ``vnmvp<pid>``/``vnmvq<pid>`` (names of this process, so
  nothing else is touched), the first end a port of the VM's bridge
  (with the tap's untagged VLAN when the bridge filters VLANs), both ends
  without IPv6 address generation, so they send nothing of their own;
- the pair is deleted when the probe ends: on success, on error, on SIGTERM
  or Ctrl-C; a pair left by a run that was killed (SIGKILL) is deleted by the
  next run once its process is gone.

The bridge's link lock is held while the probe is on it, so no vnm action
sees (or deletes the bridge around) a port it does not know.
"""

import json
import os
import re
import select
import signal
import socket
import struct
import time

from vnmlib.errors import VnmError
from vnmlib.host import process, sysfs
from vnmlib.host.locks import LinkLocks

PREFIX = "vnmvp"  # the bridge port; "vnmvq" is the end frames are sent from
_STALE = re.compile(r"^vnmv[pq]([0-9]{1,9})$")
LISTEN = 0.6  # seconds to wait for a frame on the tap: a bridged frame takes microseconds
PROBE_MAC = "02:76:6e:6d:00:01"  # locally administered, "vnm"
PROBE_IP = {4: "198.51.100.77", 6: "2001:db8:76:6e6d::77"}  # documentation ranges


def _ip(*args, check=True):
    result = process.run([process.which("ip"), *args])
    if check:
        result.check(f"ip {' '.join(args[:3])}")
    return result


def remove_stale():
    """Delete probe pairs whose process is gone (a killed ``vnm verify``)."""
    for name in os.listdir("/sys/class/net"):
        found = _STALE.match(name)
        if found and name.startswith(PREFIX) and not os.path.exists(f"/proc/{found.group(1)}"):
            _ip("link", "del", name, check=False)


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so the probe's cleanup runs."""


class Probe:
    """A veth port on ``bridge`` for as long as the ``with`` block runs."""

    def __init__(self, bridge, tap):
        self.bridge, self.tap = bridge, tap
        self.port = f"{PREFIX}{os.getpid()}"
        self.sender = f"vnmvq{os.getpid()}"
        self._locks = LinkLocks([bridge])
        self._old_handler = None

    def __enter__(self):
        self._old_handler = signal.signal(signal.SIGTERM, self._terminate)
        self._locks.__enter__()
        try:
            remove_stale()
            self._create()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)  # SIGTERM: exits 143 there
            raise
        return self

    @staticmethod
    def _terminate(signum, frame):
        raise _Terminated()

    def __exit__(self, *exc):
        # a second SIGTERM must not break off the removal of the probe
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if sysfs.exists(self.port):
                _ip("link", "del", self.port, check=False)
        finally:
            self._locks.__exit__(None, None, None)
            signal.signal(signal.SIGTERM, self._old_handler or signal.SIG_DFL)
        if exc and exc[0] is _Terminated:
            raise SystemExit(143)  # the usual exit status of a process ended by SIGTERM
        return False

    def _create(self):
        if not sysfs.is_bridge(self.bridge):
            raise VnmError(f"verify: {self.bridge} is not a Linux bridge")
        _ip("link", "add", self.port, "type", "veth", "peer", "name", self.sender)
        for name in (self.port, self.sender):
            # no IPv6 link-local: the probe sends only the frames verify builds
            _ip("link", "set", name, "addrgenmode", "none")
        _ip("link", "set", self.sender, "address", PROBE_MAC)
        pvid = self._tap_pvid()
        _ip("link", "set", self.port, "master", self.bridge)
        if pvid is not None:
            bridge = process.which("bridge")
            process.run([bridge, "vlan", "add", "dev", self.port, "vid", str(pvid), "pvid",
                         "untagged"]).check(f"putting {self.port} in VLAN {pvid}")
            if pvid != 1:  # the default VLAN a new port gets: the probe stays out of it
                process.run([bridge, "vlan", "del", "dev", self.port, "vid", "1"])
        for name in (self.sender, self.port):
            _ip("link", "set", name, "up")

    def _tap_pvid(self):
        """On a VLAN-filtering bridge, the tap's untagged PVID (the probe gets it, so its
        frames meet the VM in the VLAN the VM is in); else None."""
        try:
            with open(f"/sys/class/net/{self.bridge}/bridge/vlan_filtering",
                      encoding="ascii") as f:
                if f.read().strip() != "1":
                    return None
        except FileNotFoundError:  # a kernel without VLAN filtering: no bridge filters
            return None
        out = process.run([process.which("bridge"), "-j", "vlan", "show", "dev", self.tap]) \
            .check(f"reading the VLANs of {self.tap}").stdout
        pvids = [v["vlan"] for entry in json.loads(out or "[]") for v in entry.get("vlans", [])
                 if "PVID" in v.get("flags", [])]
        if not pvids:
            raise VnmError(f"verify: {self.tap} has no untagged VLAN on {self.bridge}: no frame "
                           "of the probe could reach it untagged")
        return pvids[0]

    def send_and_watch(self, frame, matches):
        """Send ``frame`` from the probe; True when a frame ``matches`` leaves on the tap."""
        watcher = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        try:
            watcher.bind((self.tap, 0))
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sender:
                sender.bind((self.sender, 0))
                sender.send(frame)
            end = time.monotonic() + LISTEN
            while (left := end - time.monotonic()) > 0:
                ready, _, _ = select.select([watcher], [], [], left)
                if not ready:
                    continue
                seen, meta = watcher.recvfrom(65535)
                if meta[2] == socket.PACKET_OUTGOING and matches(seen):
                    return True
            return False
        finally:
            watcher.close()


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(text):
    return bytes(int(part, 16) for part in text.split(":"))


def tcp_syn(dst_mac, src, dst, sport, dport):
    """An Ethernet frame holding one TCP SYN ``src:sport -> dst:dport`` (IPv4 or IPv6)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0x766E6D00, 0, 5 << 4, 0x02, 64240, 0, 0)
    src_b, dst_b = src.packed, dst.packed
    if src.version == 4:
        pseudo = src_b + dst_b + struct.pack("!BBH", 0, 6, len(tcp))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src_b, dst_b)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        ethertype = b"\x08\x00"
    else:
        pseudo = src_b + dst_b + struct.pack("!IxxxB", len(tcp), 6)
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, src_b, dst_b)
        ethertype = b"\x86\xdd"
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    return _mac(dst_mac) + _mac(PROBE_MAC) + ethertype + ip + tcp


def is_syn(frame, sport, dport):
    """Whether ``frame`` is the probe's SYN (its ports and sequence number)."""
    if frame[12:14] == b"\x08\x00":
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != 6:
            return False
        tcp = frame[14 + ihl:]
    elif frame[12:14] == b"\x86\xdd":
        if frame[20] != 6:
            return False
        tcp = frame[54:]
    else:
        return False
    return len(tcp) >= 8 and struct.unpack("!HHI", tcp[:8]) == (sport, dport, 0x766E6D00)
