#!/usr/bin/env python3
"""update_nic's QoS change through libvirt, and two ways to learn a NIC's tap from libvirt.

    sudo /usr/bin/python3 bench/bench_libvirt_qos.py [-n RUNS]

A private libvirtd in a network namespace (tests/support/libvirt_site.py, its
``tc`` shimmed as in tests/functional/libvirt/test_libvirt_qos.py) runs one
TCG domain with a NIC on a bridge. Timed, medians of RUNS (p10-p90):

- ``python3 -c pass`` (the baseline the ratios are to);
- ``virsh domiftune`` alone making the same change (libvirt's share);
- bridge/update_nic with a VNET_UPDATE that changes no bandwidth attribute
  (the action without libvirt), and one that changes the inbound average
  (values alternate), with Debian's /usr/bin/python3;
- learning the NIC's tap: ``virsh domiflist`` (a process: what QoS does, as
  the caller) against reading libvirt's live status XML
  (``<run dir>/qemu/<domain>.xml``, root only) and taking the interface of the
  MAC from it, in-process (xml.etree already imported, as in an action).

Budget (issue 16): update_nic QoS change <= 0.15 s. Results: table on stdout,
JSON in bench/out/.
"""

import base64
import os
import statistics
import sys
import tempfile
import time

from common import PYTHON, REPO, check_budgets, header, row, save, script, series, timed

sys.path.insert(0, os.path.join(REPO, "tests"))
from support import libvirt_tc  # noqa: E402
from support.libvirt_site import OVS_CONF, Site, domain_xml, interface_xml  # noqa: E402

MAC = "02:00:0a:08:00:01"


def vm(update, **nic):
    attrs = dict(NIC_ID=0, VN_MAD="bridge", NETWORK_ID=8, BRIDGE="brb8", TARGET="one-81-0",
                 MAC=MAC, **nic)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in attrs.items())
    change = "".join(f"<{k}>{v}</{k}>" for k, v in update.items())
    return base64.b64encode(
        f"<VM><ID>81</ID><DEPLOY_ID>one-81</DEPLOY_ID><TEMPLATE><NIC>{body}</NIC></TEMPLATE>"
        f"<TEMPLATE><VNET_UPDATE>{change}</VNET_UPDATE></TEMPLATE><HISTORY_RECORDS><HISTORY>"
        "<VM_MAD>kvm</VM_MAD></HISTORY></HISTORY_RECORDS></VM>".encode())


def in_process(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def samples_of(samples):
    samples = sorted(samples)
    q = statistics.quantiles(samples, n=10)
    return {"median": statistics.median(samples), "p10": q[0], "p90": q[-1]}


def status_tap(path):
    from xml.etree import ElementTree

    with open(path, "rb") as handle:
        root = ElementTree.fromstring(handle.read())
    for interface in root.iterfind("domain/devices/interface"):
        if interface.find("mac").get("address") == MAC:
            return interface.find("target").get("dev")
    raise SystemExit("bench: the NIC is not in the status XML")


def measure(site, runs):
    host = site.host(1)
    libvirt_tc.install(site.workdir, host)
    conf = os.path.join(os.path.dirname(site.tree), "etc", "vnm", "OpenNebulaNetwork.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(OVS_CONF + f":libvirt_uri: {host.uri}\n")
    net = ["ip", "netns", "exec", host.name]
    env = dict(os.environ, VNM_RUN_DIR=host.run_dir)
    timed(net + script("bridge", "pre", site.tree), vm({}), env=env)
    path = os.path.join(site.workdir, "one-81.xml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(domain_xml("one-81", site.kernel, site.initrd, "10.8.0.1/24",
                                os.path.join(site.workdir, "one-81.sock"),
                                [interface_xml("brb8", "lvb-81", MAC)]))
    host.virsh("define", path)
    host.virsh("start", "one-81")
    update = net + script("bridge", "update_nic", site.tree) + ["one-81", "8"]
    results = {
        "python3 -c pass": series(runs, [PYTHON, "-c", "pass"]),
        "bridge/update_nic, no bandwidth change": series(runs, update, vm({"PHYDEV": ""}),
                                                         env=env),
        # a new value each run, so that libvirt really changes the class every time
        "bridge/update_nic, inbound average changed": samples_of([
            timed(update, vm({"INBOUND_AVG_BW": ""}, INBOUND_AVG_BW=1000 + run), env=env)
            for run in range(runs)]),
        # libvirt's own share: the same change with virsh alone (libvirt runs tc 4-6 times)
        "virsh domiftune alone": samples_of([
            timed(["virsh", "-q", "-c", host.uri, "domiftune", "--domain", "one-81", "--interface",
                   "lvb-81", "--live", "--inbound", f"{2000 + run},0,0", "--outbound", "0,0,0"])
            for run in range(runs)]),
        "tap: virsh domiflist (a process)": series(
            runs, ["virsh", "-q", "-c", host.uri, "domiflist", "--domain", "one-81"]),
    }
    status = os.path.join(host.dir, "run", "qemu", "one-81.xml")
    assert status_tap(status) == "lvb-81"
    results["tap: live status XML read in-process"] = samples_of(
        [in_process(lambda: status_tap(status)) for _ in range(runs)])
    return results


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        site = Site(workdir, f"lb{os.getpid() % 100000}", [])
        try:
            results = measure(site, args.runs)
        finally:
            site.delete()
    base = results["python3 -c pass"]["median"]
    header("")
    for name, result in results.items():
        row(name, result, base)
    qos = results["bridge/update_nic, inbound average changed"]["median"]
    ok = check_budgets([("update_nic QoS change <= 0.15 s", qos <= 0.15)])
    save("libvirt_qos", {"python": PYTHON, "runs": args.runs, "results": results})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
