#!/usr/bin/env python3
"""nodeport post and clean (routed security groups and nat chains) with the nft backend
against restore.

    VNM_FULL_KERNEL=1 tools/qemu/run.sh -t 1800 --snapshot . \\
        "/usr/bin/python3 bench/bench_nft_routed.py -n 9"

Needs ``ct state`` in the bridge family (nf_conntrack_bridge): run it in Debian's
kernel under QEMU as above. In a throwaway namespace, the subject is one nodeport
NIC (100 forwarded ports, the inbound TCP 22 / ICMP echo and outbound-all groups
of the nodeport tests) whose tap exists; ``post`` is timed after a ``clean`` and
``clean`` after a ``post``. Baseline in the same run: ``python3 -c pass``; the last
column is nft / restore. Results: table on stdout, JSON in bench/out/.
"""

import os
import subprocess
import sys
import tempfile

from common import PYTHON, REPO, header, in_namespace, row, save, script, series

sys.path.insert(0, os.path.join(REPO, "tests"))
from support.oned_input import b64, rules_xml, vm_xml  # noqa: E402
from support.remotes import copy_tree  # noqa: E402

RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=100),
                  dict(PROTOCOL="ICMP", RULE_TYPE="INBOUND", ICMP_TYPE="8",
                       SECURITY_GROUP_ID=100),
                  dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=100))
NIC = {"NIC_ID": 0, "BRIDGE": "br-np", "VN_MAD": "nodeport", "IP": "10.9.1.20",
       "GATEWAY": "10.9.1.1", "TARGET": "one-20-0", "MAC": "02:00:0a:09:14:00",
       "SECURITY_GROUPS": "100", "FILTER_IP_SPOOFING": "YES",
       "EXTERNAL_PORT_RANGE": "9001:9100", "INTERNAL_PORT_RANGE": "1-100/9001"}


def sh(*argv):
    subprocess.run(argv, capture_output=True, check=True)


def tree_with(backend, where):
    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"),
              encoding="utf-8") as handle:
        conf = handle.read().replace(":firewall_backend: restore",
                                     f":firewall_backend: {backend}")
    return copy_tree(os.path.join(where, backend, "remotes"), conf)


def measure(runs):
    stdin = b64(vm_xml(20, [NIC], extra=RULES))
    work = tempfile.mkdtemp(prefix="vnm-bench-nft-routed-")
    env = dict(os.environ, VNM_RUN_DIR=os.path.join(work, "run"))
    sh("ip", "link", "set", "lo", "up")
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    for backend in ("restore", "nft"):
        tree = tree_with(backend, work)
        post, clean = script("nodeport", "post", tree), script("nodeport", "clean", tree)

        def run(argv):
            subprocess.run(argv, input=stdin, env=env, capture_output=True, check=True)

        def up():
            run(script("nodeport", "pre", tree))
            if not os.path.exists("/sys/class/net/one-20-0"):
                sh("ip", "tuntap", "add", "one-20-0", "mode", "tap")
                sh("ip", "link", "set", "one-20-0", "master", "br-np", "up")
            run([*post, "one-20"])

        def down():
            run(clean)

        results[f"nodeport post ({backend})"] = series(runs, [*post, "one-20"], stdin,
                                                       before=lambda: (up(), down()), env=env)
        results[f"nodeport clean ({backend})"] = series(runs, clean, stdin, before=up, env=env)
        down()
    return results


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=9, help="runs per case (default 9)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        return in_namespace(["-n", str(args.n)])
    results = measure(args.n)
    base = results["python -c pass"]["median"]
    header("x restore")
    row("python -c pass", results["python -c pass"], base)
    for action in ("post", "clean"):
        restore = results[f"nodeport {action} (restore)"]
        row(f"nodeport {action} (restore)", restore, base)
        row(f"nodeport {action} (nft)", results[f"nodeport {action} (nft)"], base,
            restore["median"])
    save("nft_routed", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
