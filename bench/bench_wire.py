#!/usr/bin/env python3
"""What the wire guard (issue 27, vnmlib/firewall/l2guard.py) costs: post time and traffic.

    sudo /usr/bin/python3 bench/bench_wire.py [-n RUNS] [--seconds 3]

In a throwaway namespace: two fw VMs (MAC and IP anti-spoofing) on one bridge,
their guests in namespaces of their own. Measured:

- fw/post of one NIC (its guard, chains and ipsets) and, alone, the guard's
  ``nft -f`` transaction (the part post gained);
- TCP throughput (one stream, 64 KiB writes) and UDP packet rate (64-byte
  datagrams) from VM A to VM B, with both guards and with them deleted,
  alternated three times (medians).

Python senders bound the absolute figures (one core of a shared two-core
machine); the with/without ratio is the point. Results on stdout and in
bench/out/wire.json.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import PYTHON, REPO, in_namespace, save, script, series

sys.path.insert(0, os.path.join(REPO, "tests"))
from support.oned_input import b64, bridge_nic, vm_xml  # noqa: E402

VMS = {"a": (60, "10.60.0.60"), "b": (61, "10.60.0.61")}
ROUNDS = 3

SENDER = r"""
import socket, sys, time
kind, host, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
sent = 0
if kind == "tcp":
    sock = socket.create_connection((host, 5001))
    chunk = b"x" * 65536
    while time.monotonic() < end:
        sent += sock.send(chunk)
    sock.close()
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 64
    while time.monotonic() < end:
        for _ in range(64):
            sock.sendto(payload, (host, 5002))
        sent += 64
print(sent)
"""

RECEIVER = r"""
import select, socket, sys, time
kind, seconds = sys.argv[1], float(sys.argv[2])
if kind == "tcp":
    server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 5001)); server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    got = 0
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        got += len(data)
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    sock.bind(("0.0.0.0", 5002))
    print("ready", flush=True)
    got, end = 0, time.monotonic() + seconds + 1.0
    while time.monotonic() < end:
        if select.select([sock], [], [], 0.2)[0]:
            sock.recv(2048)
            got += 1
print(got, flush=True)
"""


def sh(*argv, stdin=None):
    return subprocess.run(argv, input=stdin, capture_output=True, check=True).stdout


def vm(name):
    vm_id, ip = VMS[name]
    nic = bridge_nic(vm_id, 0, "wirebr", VN_MAD="fw", IP=ip, FILTER_MAC_SPOOFING="YES",
                     FILTER_IP_SPOOFING="YES")
    return b64(vm_xml(vm_id, [nic])), nic["MAC"]


def build(env):
    """pre, the taps (veth; the guest ends in namespaces of their own), post."""
    guests = {}
    for name, (vm_id, ip) in VMS.items():
        xml, mac = vm(name)
        sh(*script("fw", "pre"), stdin=xml)
        tap, guest = f"one-{vm_id}-0", f"vnm-bench-wire-{os.getpid()}-{name}"
        sh("ip", "netns", "add", guest)
        guests[name] = guest
        sh("ip", "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", guest)
        sh("ip", "link", "set", tap, "master", "wirebr", "up")
        sh("ip", "-n", guest, "link", "set", "eth0", "address", mac, "up")
        sh("ip", "-n", guest, "addr", "add", f"{ip}/24", "dev", "eth0")
        subprocess.run([*script("fw", "post"), f"one-{vm_id}", "node1"], input=xml, env=env,
                       check=True, capture_output=True)
    return guests


def traffic(guests, kind, seconds):
    receiver = subprocess.Popen(["ip", "netns", "exec", guests["b"], PYTHON, "-c", RECEIVER,
                                 kind, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "ready"
    sh("ip", "netns", "exec", guests["a"], PYTHON, "-c", SENDER, kind, VMS["b"][1], str(seconds))
    got = int(receiver.communicate(timeout=60)[0])
    return got / seconds


def inside(runs, seconds):
    env = dict(os.environ, VNM_RUN_DIR=tempfile.mkdtemp(prefix="vnm-bench-wire-"))
    os.environ.update(env)
    guests = build(env)
    try:
        xml, _ = vm("a")
        post = series(runs, [*script("fw", "post"), "one-60", "node1"], stdin=xml, env=env)
        sys.path.insert(0, REPO)
        from vnmlib.firewall import l2guard
        from vnmlib.firewall.layout import NicFirewall
        from vnmlib.model.template import parse_vm

        parsed = parse_vm(xml)
        nf = NicFirewall(parsed, parsed.nics[0], [], [], 65536, True, "one-60-0")
        guard = series(runs, ["nft", "-f", "-"], stdin=l2guard.render([nf.guard]).encode())
        results = {"post": post, "guard_transaction": guard}
        # alternated, ROUNDS times each, medians: the host's load drifts
        samples = {label: {"tcp_bytes_per_s": [], "udp_packets_per_s": []}
                   for label in ("with guard", "without guard")}
        for _ in range(ROUNDS):
            for label in samples:
                for name in VMS:
                    xml, _ = vm(name)
                    if label == "with guard":  # post puts the guard (back)
                        subprocess.run([*script("fw", "post"), "x", "node1"], input=xml,
                                       env=env, check=True, capture_output=True)
                    else:
                        sh("nft", "delete", "table", "netdev", f"one-{VMS[name][0]}-0")
                time.sleep(0.5)
                samples[label]["tcp_bytes_per_s"].append(traffic(guests, "tcp", seconds))
                samples[label]["udp_packets_per_s"].append(traffic(guests, "udp", seconds))
        for label, measured in samples.items():
            results[label] = {key: statistics.median(values) for key, values in measured.items()}
    finally:
        for guest in guests.values():
            subprocess.run(["ip", "netns", "del", guest], check=False)
    print(f"{'case':<48}{'median':>10}")
    print(f"{'fw/post, one NIC (guard + chains + ipsets)':<48}"
          f"{results['post']['median'] * 1000:>8.1f}ms")
    print(f"{'  of which the guard (nft -f, one table)':<48}"
          f"{results['guard_transaction']['median'] * 1000:>8.1f}ms")
    for label in ("with guard", "without guard"):
        print(f"{'TCP A->B, ' + label:<48}"
              f"{results[label]['tcp_bytes_per_s'] * 8 / 1e9:>8.2f}Gbit/s")
        print(f"{'UDP 64 B A->B received, ' + label:<48}"
              f"{results[label]['udp_packets_per_s'] / 1000:>8.1f}kpps")
    save("wire", results)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="runs of each timed action")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each stream")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args.n, args.seconds)
    return in_namespace(["-n", str(args.n), "--seconds", str(args.seconds)])


if __name__ == "__main__":
    sys.exit(main())
