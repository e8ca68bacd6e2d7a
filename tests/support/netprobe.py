"""Traffic probes run inside the test namespaces (``ip netns exec NS python3 netprobe.py …``).

serve --tcp P,P --udp P,P     answer on TCP/UDP ports (IPv4 and IPv6) until killed
tcp HOST PORT                 exit 0 when HOST:PORT answers, 1 when not (0.5 s)
udp HOST PORT                 the same over UDP
hold HOST PORT SECONDS        keep one TCP connection busy; exit 1 if it stalls
flood HOST PORT SECONDS       a new TCP connection attempt every 2 ms; print how many
                              were answered
converse HOST PORT            one TCP connection: print "ready" after a first round
                              trip, then for each line read on stdin one more round trip,
                              printing "ok" or "cut" (no echo within 1 s)
icmp4 HOST TYPE               send one ICMP message of TYPE (raw socket)
udp-frame IFACE SRCMAC SRCIP DSTIP DPORT [DSTMAC]
                              send one hand-made Ethernet/IPv4/UDP frame (to DSTMAC,
                              default broadcast; a router takes only frames to its MAC)
tagged-udp-frame IFACE VID SRCMAC SRCIP DSTIP DPORT
                              the same, broadcast, with an 802.1Q header for VLAN VID
arp-frame IFACE SRCMAC SENDERIP TARGETIP
                              send one broadcast ARP request (gratuitous when SENDERIP
                              is TARGETIP)
sniff IFACE SECONDS udp PORT | icmp TYPE | arp SENDERIP [told]
                              print "ready", then the number of matching frames seen
                              (with told: until a line on stdin, and a grace after it)
seen-from PORT SECONDS        print "ready", accept one TCP connection on PORT, print
                              its source address ("none" when none came)
"""

import select
import socket
import struct
import sys
import time

TIMEOUT = 0.5


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(tcp_ports, udp_ports):
    listeners = []
    for port in tcp_ports:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
        sock.listen(64)
        listeners.append(("tcp", sock))
    for port in udp_ports:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
        listeners.append(("udp", sock))
    print("ready", flush=True)
    clients = []
    while True:
        ready, _, _ = select.select([s for _, s in listeners] + clients, [], [])
        for sock in ready:
            kind = next((k for k, s in listeners if s is sock), None)
            if kind == "tcp":
                conn, _ = sock.accept()
                clients.append(conn)
            elif kind == "udp":
                data, peer = sock.recvfrom(2048)
                sock.sendto(data, peer)
            else:
                data = sock.recv(2048)
                if data:
                    sock.sendall(data)
                else:
                    clients.remove(sock)
                    sock.close()


def tcp(host, port):
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(b"ping")
            return 0 if sock.recv(16) == b"ping" else 1
    except OSError:
        return 1


def udp(host, port):
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(b"ping", (host, int(port)))
        try:
            return 0 if sock.recv(16) == b"ping" else 1
        except OSError:
            return 1


def hold(host, port, seconds):
    """One connection, a round trip every 5 ms; a reply later than 1 s is a cut."""
    with socket.create_connection((host, int(port)), timeout=1.0) as sock:
        end = time.monotonic() + float(seconds)
        rounds = 0
        while time.monotonic() < end:
            try:
                sock.sendall(b"x")
                if sock.recv(16) != b"x":
                    return 1
            except OSError:
                print(f"cut after {rounds} round trips", file=sys.stderr)
                return 1
            rounds += 1
            time.sleep(0.005)
    print(rounds)
    return 0


def converse(host, port):
    """A held connection whose next segment the test triggers (stdin lines)."""
    with socket.create_connection((host, int(port)), timeout=1.0) as sock:
        sock.sendall(b"x")
        if sock.recv(16) != b"x":
            return 1
        print("ready", flush=True)
        for _line in sys.stdin:
            try:
                sock.sendall(b"x")
                answer = "ok" if sock.recv(16) == b"x" else "cut"
            except OSError:  # no echo within the timeout, or reset
                answer = "cut"
            print(answer, flush=True)
    return 0


def flood(host, port, seconds):
    """Open a connection attempt every 2 ms; any answered one means a window was open."""
    pending, answered = [], 0
    end = time.monotonic() + float(seconds)
    next_attempt = time.monotonic()
    while time.monotonic() < end or pending:
        now = time.monotonic()
        if now < end and now >= next_attempt:
            sock = socket.socket(_family(host), socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex((host, int(port)))
            pending.append((sock, now))
            next_attempt = now + 0.002
        wait = max(0.0, min(next_attempt - time.monotonic(), 0.002))
        _, writable, _ = select.select([], [s for s, _ in pending], [], wait)
        for sock, started in list(pending):
            done = sock in writable
            if done and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                answered += 1
            if done or time.monotonic() - started > 0.5:
                pending.remove((sock, started))
                sock.close()
    print(answered)
    return 0


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp4(host, icmp_type):
    header = struct.pack("!BBHHH", int(icmp_type), 0, 0, 0x1234, 1) + b"\0" * 12
    header = header[:2] + struct.pack("!H", _checksum(header)) + header[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(header, (host, 0))
    return 0


def _mac(text):
    return bytes(int(part, 16) for part in text.split(":"))


def udp_frame(iface, src_mac, src_ip, dst_ip, dport, dst_mac="ff:ff:ff:ff:ff:ff"):
    return _send(iface, _udp_frame(src_mac, src_ip, dst_ip, dport, dst_mac))


def tagged_udp_frame(iface, vid, src_mac, src_ip, dst_ip, dport):
    """udp-frame (broadcast) with an 802.1Q header for VLAN ``vid``, as a guest tags its own."""
    frame = _udp_frame(src_mac, src_ip, dst_ip, dport, "ff:ff:ff:ff:ff:ff")
    return _send(iface, frame[:12] + struct.pack("!HH", 0x8100, int(vid)) + frame[12:])


def _send(iface, frame):
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        sock.send(frame)
    return 0


def _udp_frame(src_mac, src_ip, dst_ip, dport, dst_mac):
    payload = b"vnm-probe"
    udp_header = struct.pack("!HHHH", 68 if src_ip == "0.0.0.0" else 40000, int(dport),
                             8 + len(payload), 0)
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp_header) + len(payload),
                            1, 0, 64, 17, 0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + ip_header + udp_header + payload


def arp_frame(iface, src_mac, sender_ip, target_ip):
    mac = _mac(src_mac)
    arp = (struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(sender_ip)
           + b"\0" * 6 + socket.inet_aton(target_ip))
    frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        sock.send(frame)
    return 0


def _matches(frame, kind, value):
    if frame[12:14] == b"\x08\x06":
        return kind == "arp" and frame[28:32] == socket.inet_aton(value)
    if frame[12:14] != b"\x08\x00" or kind == "arp":
        return False
    ip = frame[14:]
    body = ip[(ip[0] & 0x0F) * 4:]
    if kind == "udp":
        return ip[9] == 17 and struct.unpack("!H", body[2:4])[0] == int(value)
    return kind == "icmp" and ip[9] == 1 and body[0] == int(value)


TOLD_GRACE = 0.3  # after the sender said it is done: its frames are through the bridge


def sniff(iface, seconds, kind, value, told=None):
    """Count matching frames for ``seconds``; with ``told``, until a line on stdin (the
    caller's sender is done) and TOLD_GRACE after it, ``seconds`` at most: a window that
    does not depend on how long the sender takes to start (TCG, a loaded machine)."""
    waiting = [sys.stdin] if told == "told" else []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as sock:
        sock.bind((iface, 0))
        print("ready", flush=True)
        end = time.monotonic() + float(seconds)
        seen = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([sock] + waiting, [], [], left)
            if waiting and sys.stdin in ready:
                sys.stdin.readline()
                waiting = []
                end = min(end, time.monotonic() + TOLD_GRACE)
            if sock not in ready:
                continue
            frame, meta = sock.recvfrom(65535)
            if meta[2] != socket.PACKET_OUTGOING and _matches(frame, kind, value):
                seen += 1
    print(seen, flush=True)
    return 0


def seen_from(port, seconds):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", int(port)))
        sock.listen(1)
        print("ready", flush=True)
        ready, _, _ = select.select([sock], [], [], float(seconds))
        if not ready:
            print("none", flush=True)
            return 1
        conn, peer = sock.accept()
        conn.close()
        print(peer[0], flush=True)
    return 0


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "serve":
        ports = {"--tcp": [], "--udp": []}
        for flag, value in zip(args[::2], args[1::2]):
            ports[flag] = [int(p) for p in value.split(",") if p]
        return serve(ports["--tcp"], ports["--udp"])
    handlers = {"tcp": tcp, "udp": udp, "hold": hold, "converse": converse, "flood": flood, "icmp4": icmp4, "udp-frame": udp_frame,
                "tagged-udp-frame": tagged_udp_frame,
                "arp-frame": arp_frame, "sniff": sniff, "seen-from": seen_from}
    return handlers[command](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
