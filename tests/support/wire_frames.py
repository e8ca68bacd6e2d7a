"""Hand-made frames with scapy, run inside a VM's namespace (``ip netns exec NS python3 wire_frames.py …``).

Each command sends frames out of IFACE (a VM's side of its tap) or counts
what arrives there; a frame carries MARKER in its payload so that a sniffer
counts it whatever its tags. Run with an interpreter that has scapy (Debian's
python3-scapy, or the venv's pip scapy).

send IFACE KIND [key=value…]   send one frame of KIND (see FRAMES), repeated ``count=N`` times
                               (``inter=S`` seconds apart)
sniff IFACE SECONDS [icmp=IP | nd=TARGET | ra=PREFIX | src=IP]
                               print "ready"; after a line on stdin (the sender is done)
                               and SECONDS more, how many frames carried MARKER (or, with
                               icmp=IP, echo requests to IP; with nd=TARGET, NS/NA about it;
                               with ra=PREFIX, router advertisements of PREFIX; with
                               src=IP, only those whose IP or ARP sender is IP)
"""

import random
import sys
import threading
import time

from scapy.all import (ARP, Dot1AD, Dot1Q, Ether, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA,
                       ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr, IP,
                       IPv6, Raw, TCP, UDP, ICMP, conf, sendp, AsyncSniffer)

MARKER = b"vnm-wire-probe"
conf.verb = 0


def _l2(args, ether_type_layers):
    ether = Ether(src=args["src"], dst=args.get("dst", "ff:ff:ff:ff:ff:ff"))
    frame = ether
    if "ad" in args:
        frame = frame / Dot1AD(vlan=int(args["ad"]))
    for vid in (int(v) for v in args.get("tags", "").split(",") if v):
        frame = frame / Dot1Q(vlan=vid)
    return frame / ether_type_layers


def udp(args):
    return _l2(args, IP(src=args["sip"], dst=args["dip"]) /
               UDP(sport=int(args.get("sport", 40000)), dport=int(args.get("dport", 9)))
               / Raw(MARKER))


def udp6(args):
    return _l2(args, IPv6(src=args["sip"], dst=args["dip"]) /
               UDP(sport=int(args.get("sport", 40000)), dport=int(args.get("dport", 9)))
               / Raw(MARKER))


def arp(args):
    op = int(args.get("op", 1))
    return _l2(args, ARP(op=op, hwsrc=args.get("sha", args["src"]), psrc=args["spa"],
                         hwdst="00:00:00:00:00:00" if op == 1 else args["dst"],
                         pdst=args["tpa"]) / Raw(MARKER))


def rarp(args):
    """QEMU's announce after a migration: a RARP request (EtherType 0x8035, opcode 3)."""
    mac = args.get("sha", args["src"])
    return (Ether(src=args["src"], dst="ff:ff:ff:ff:ff:ff", type=0x8035) /
            ARP(op=3, hwsrc=mac, hwdst=mac, psrc="0.0.0.0", pdst="0.0.0.0") / Raw(MARKER))


def na(args):
    lladdr = args.get("lladdr", args["src"])
    return _l2(args, IPv6(src=args["sip"], dst="ff02::1", hlim=255) /
               ICMPv6ND_NA(tgt=args["target"], R=0, S=0, O=1) /
               ICMPv6NDOptDstLLAddr(lladdr=lladdr))


def ns(args):
    lladdr = args.get("lladdr", args["src"])
    return _l2(args, IPv6(src=args["sip"], dst=args.get("dip", "ff02::1"), hlim=255) /
               ICMPv6ND_NS(tgt=args["target"]) / ICMPv6NDOptSrcLLAddr(lladdr=lladdr))


def dad(args):
    return _l2(args, IPv6(src="::", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=args["target"]))


def ra(args):
    return _l2(args, IPv6(src=args["sip"], dst="ff02::1", hlim=255) /
               ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=args["src"]) /
               ICMPv6NDOptPrefixInfo(prefix=args["prefix"], prefixlen=64, L=1, A=1,
                                     validlifetime=3600, preferredlifetime=1800))


def other_type(args):
    """An EtherType that is neither IP nor ARP (LLDP's), carrying the marker."""
    return Ether(src=args["src"], dst=args.get("dst", "ff:ff:ff:ff:ff:ff"), type=0x88CC) / Raw(MARKER)


def syn(args):
    """``count`` TCP SYNs to dip, each from another source port (new connections)."""
    count = int(args.get("count", 1))
    ports = random.sample(range(1024, 65535), count)
    return [_l2(args, IP(src=args["sip"], dst=args["dip"]) /
                TCP(sport=port, dport=int(args.get("dport", 9)), flags="S")) for port in ports]


def random_macs(args):
    """``count`` frames, each from another random (locally administered, unicast) MAC."""
    count = int(args.get("count", 1))
    frames = []
    for _ in range(count):
        mac = "02:%02x:%02x:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(5))
        frames.append(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                      IP(src=args["sip"], dst=args["dip"]) / UDP(dport=9) / Raw(MARKER))
    return frames


FRAMES = {"udp": udp, "udp6": udp6, "arp": arp, "rarp": rarp, "na": na, "ns": ns, "dad": dad, "ra": ra,
          "other-type": other_type, "syn": syn, "random-macs": random_macs}


def send(iface, kind, args):
    frames = FRAMES[kind](args)
    if not isinstance(frames, list):
        frames = [frames] * int(args.get("count", 1))
    # inter=SECONDS between frames: a VM that keeps sending while its tap is plugged in
    sendp(frames, iface=iface, inter=float(args.get("inter", 0)))
    return 0


def sniff(iface, seconds, args):
    if "icmp" in args:
        target = args["icmp"]

        def match(pkt):
            return ICMP in pkt and pkt[IP].dst == target and pkt[ICMP].type == 8
    elif "nd" in args:  # NS / NA about this target (they carry no marker: lengths are checked)
        target = args["nd"]

        def match(pkt):
            return any(kind in pkt and pkt[kind].tgt == target
                       for kind in (ICMPv6ND_NS, ICMPv6ND_NA))
    elif "ra" in args:  # router advertisements of this prefix (they carry no marker)
        prefix = args["ra"]

        def match(pkt):
            return (ICMPv6NDOptPrefixInfo in pkt
                    and pkt[ICMPv6NDOptPrefixInfo].prefix == prefix)
    elif "src" in args:  # marked frames from src (not the receiver's ICMP error quoting one)
        source = args["src"]

        def match(pkt):
            return MARKER in bytes(pkt) and (IP in pkt and pkt[IP].src == source
                                             or IPv6 in pkt and pkt[IPv6].src == source
                                             or ARP in pkt and pkt[ARP].psrc == source)
    else:
        def match(pkt):
            return MARKER in bytes(pkt)
    bound = threading.Event()  # "ready" only once the capture socket is open
    sniffer = AsyncSniffer(iface=iface, store=True, lfilter=match, started_callback=bound.set)
    sniffer.start()
    if not bound.wait(30):
        raise SystemExit("the sniffer did not start")
    print("ready", flush=True)
    sys.stdin.readline()  # the sender is done
    time.sleep(float(seconds))  # what is still on its way
    print(len(sniffer.stop()), flush=True)
    return 0


def main(argv):
    command, iface = argv[0], argv[1]
    if command == "send":
        args = dict(a.split("=", 1) for a in argv[3:])
        return send(iface, argv[2], args)
    args = dict(a.split("=", 1) for a in argv[3:])
    return sniff(iface, argv[2], args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
