#!/usr/bin/env python3
"""TProxy: what the proxy adds to a VM's request, and 200 connections held at once.

    sudo /usr/bin/python3 bench/bench_tproxy.py [-n RUNS]

Runs in a throwaway network namespace (re-executing itself there). The host
has bridge br-tp with 10.0.0.1 on it, where an HTTP server stands for OneGate
(port 8080) next to a TCP echo server (port 9000); a VM namespace (10.0.0.10)
sits on the bridge. ``bridge/pre`` with ``:tproxy:`` (5030 -> 10.0.0.1:8080,
5031 -> 10.0.0.1:9000) gives it 169.254.16.9.

- latency: RUNS requests, each on a new connection (as a OneGate client does),
  to 10.0.0.1:8080 directly and to 169.254.16.9:5030, interleaved; medians,
  p10-p90 and the added time;
- held: 200 connections to 169.254.16.9:5031 opened together, then one echo
  round trip on each while all are open; how many answered, the round's time,
  the daemon's resident memory;
- what it costs a warm ``bridge/pre`` (bridge and TProxy already there: checks,
  rule and state rewritten, the daemon reloaded), against the same ``pre``
  without ``:tproxy:``.

Budgets: added median latency <= 2 ms; all 200 connections answered.
JSON in bench/out/bench_tproxy.json.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

from common import PYTHON, REPO, check_budgets, in_namespace, save, series

sys.path.insert(0, os.path.join(REPO, "tests"))
from support.remotes import copy_tree  # noqa: E402

BRIDGE, VM_NS = "br-tp", f"vnm-bench-tp-vm-{os.getpid()}"
HELD = 200
CONF = """\
:tproxy:
- :service_port: 5030
  :remote_addr: 10.0.0.1
  :remote_port: 8080
- :service_port: 5031
  :remote_addr: 10.0.0.1
  :remote_port: 9000
"""
VM = base64.b64encode(
    b"<VM><ID>7</ID><DEPLOY_ID>one-7</DEPLOY_ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID>"
    b"<BRIDGE><![CDATA[br-tp]]></BRIDGE><NETWORK_ID>0</NETWORK_ID>"
    b"<TARGET><![CDATA[one-7-0]]></TARGET><VN_MAD><![CDATA[bridge]]></VN_MAD></NIC></TEMPLATE>"
    b"<HISTORY_RECORDS><HISTORY><VM_MAD>kvm</VM_MAD></HISTORY></HISTORY_RECORDS></VM>")

SERVERS = r"""
import asyncio, sys
BODY = b"onegate"
async def http(reader, writer):
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    await writer.drain()
    writer.close()
async def echo(reader, writer):
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    await asyncio.start_server(http, "10.0.0.1", 8080, backlog=1024)
    await asyncio.start_server(echo, "10.0.0.1", 9000, backlog=1024)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

CLIENT = r"""
import json, socket, sys, time
runs, held = int(sys.argv[1]), int(sys.argv[2])
REQUEST = b"GET /whoami HTTP/1.0\r\nHost: onegate\r\n\r\n"
def request(addr):
    start = time.perf_counter()
    with socket.create_connection(addr, timeout=5) as sock:
        sock.sendall(REQUEST)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.endswith(b"onegate"), data
    return time.perf_counter() - start
direct, proxied = [], []
for _ in range(3):  # warm: ARP, the first connection
    request(("10.0.0.1", 8080)), request(("169.254.16.9", 5030))
for _ in range(runs):
    direct.append(request(("10.0.0.1", 8080)))
    proxied.append(request(("169.254.16.9", 5030)))
socks = [socket.create_connection(("169.254.16.9", 5031), timeout=10) for _ in range(held)]
start = time.perf_counter()
for index, sock in enumerate(socks):
    sock.sendall(b"%d\n" % index)
answered = sum(1 for index, sock in enumerate(socks) if sock.recv(64) == b"%d\n" % index)
round_time = time.perf_counter() - start
print(json.dumps({"direct": direct, "proxied": proxied, "answered": answered,
                  "round": round_time}), flush=True)
sys.stdin.readline()  # held open until the bench has read the daemon's memory
"""


def sh(*argv, stdin=None):
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {argv} failed: {done.stderr.decode()}")
    return done.stdout.decode()


def quantiles(samples):
    import statistics

    q = statistics.quantiles(samples, n=10)
    return {"median": statistics.median(samples), "p10": q[0], "p90": q[-1]}


def daemon_rss(run_dir):
    with open(next(os.path.join(root, "pid") for root, _, files in os.walk(run_dir)
                   if "pid" in files), encoding="ascii") as handle:
        pid = int(handle.read())
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))


def measure(runs, work):
    tree = copy_tree(os.path.join(work, "remotes"), CONF)
    plain = copy_tree(os.path.join(work, "plain"))
    env = dict(os.environ, VNM_RUN_DIR=os.path.join(work, "run"))
    pre = [PYTHON, os.path.join(tree, "bridge", "pre")]
    clean = [PYTHON, os.path.join(tree, "bridge", "clean")]
    sh("ip", "link", "set", "lo", "up")
    servers = client = None
    try:
        subprocess.run(pre, input=VM, env=env, check=True, capture_output=True)
        sh("ip", "addr", "add", "10.0.0.1/24", "dev", BRIDGE)
        servers = subprocess.Popen([PYTHON, "-c", SERVERS], stdout=subprocess.PIPE)
        assert servers.stdout.readline() == b"ready\n"
        sh("ip", "netns", "add", VM_NS)
        sh("ip", "link", "add", "one-7-0", "type", "veth", "peer", "name", "vm0")
        sh("ip", "link", "set", "one-7-0", "master", BRIDGE, "up")
        sh("ip", "link", "set", "vm0", "netns", VM_NS)
        for argv in (["link", "set", "lo", "up"], ["link", "set", "vm0", "up"],
                     ["addr", "add", "10.0.0.10/24", "dev", "vm0"],
                     ["route", "add", "169.254.16.9/32", "dev", "vm0"]):
            sh("ip", "-n", VM_NS, *argv)
        client = subprocess.Popen(["ip", "netns", "exec", VM_NS, PYTHON, "-c", CLIENT,
                                   str(runs), str(HELD)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        figures = json.loads(client.stdout.readline())
        figures["daemon_rss_kib"] = daemon_rss(env["VNM_RUN_DIR"])
        client.communicate(b"\n")
        warm_runs = max(runs // 10, 5)
        figures["pre warm, :tproxy:"] = series(warm_runs, pre, VM, env=env)
        figures["pre warm, no :tproxy:"] = series(
            warm_runs, [PYTHON, os.path.join(plain, "bridge", "pre")], VM, env=env)
        sh("ip", "link", "del", "one-7-0")
        subprocess.run(clean + ["h"], input=VM, env=env, check=True, capture_output=True)
    finally:
        for proc in (client, servers):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", VM_NS], capture_output=True, check=False)
    return figures


def report(figures):
    direct, proxied = quantiles(figures["direct"]), quantiles(figures["proxied"])
    added = proxied["median"] - direct["median"]
    print(f"{'case':<44}{'median':>10}{'p10-p90':>19}")
    for name, r in (("HTTP request, direct to 10.0.0.1:8080", direct),
                    ("HTTP request, through 169.254.16.9:5030", proxied)):
        print(f"{name:<44}{r['median'] * 1000:>8.2f}ms"
              f"{r['p10'] * 1000:>9.2f}-{r['p90'] * 1000:<7.2f}ms")
    print(f"added by the proxy (median): {added * 1000:.2f} ms "
          f"({proxied['median'] / direct['median']:.2f}x)")
    print(f"{HELD} connections held: {figures['answered']} answered, one echo round "
          f"{figures['round'] * 1000:.1f} ms, "
          f"daemon RSS {figures['daemon_rss_kib'] / 1024:.1f} MiB")
    for name in ("pre warm, no :tproxy:", "pre warm, :tproxy:"):
        r = figures[name]
        print(f"bridge/{name:<37}{r['median'] * 1000:>8.1f}ms"
              f"{r['p10'] * 1000:>9.1f}-{r['p90'] * 1000:<7.1f}ms")
    return check_budgets([("added latency <= 2 ms", added <= 0.002),
                          (f"{HELD} held connections all answered",
                           figures["answered"] == HELD)]), {
        "direct": direct, "proxied": proxied, "added": added, "held": HELD,
        "answered": figures["answered"], "round": figures["round"],
        "daemon_rss_kib": figures["daemon_rss_kib"],
        "pre_warm_tproxy": figures["pre warm, :tproxy:"],
        "pre_warm_plain": figures["pre warm, no :tproxy:"]}


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=200)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        return in_namespace(["-n", str(args.runs)])
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        figures = measure(args.runs, work)
    ok, summary = report(figures)
    save("bench_tproxy", {"python": PYTHON, "runs": args.runs,
                          "seconds": time.monotonic() - started, "results": summary})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
