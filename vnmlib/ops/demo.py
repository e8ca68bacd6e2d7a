"""A VM network lifecycle with the real bridge driver, in a throwaway namespace (``vnm demo``).

A "hypervisor" namespace gets an uplink (a veth whose other end is a "physical
network" namespace with a router address). A VM with two NICs on one bridge
goes through pre -> hypervisor plugs the taps -> post -> ping -> clean, exactly
as oned would drive vnm/bridge/* of a tree laid out by ``vnm install`` in a
temporary directory. Every namespace and file is deleted at the end.
"""

import json
import os
import subprocess
import sys
import tempfile

PYTHON = sys.executable  # the actions run on the interpreter running the demo
TAG = f"vnm-demo-{os.getpid()}"
HOST, PHYS, VM_A, VM_B = (f"{TAG}-host", f"{TAG}-net", f"{TAG}-nic0", f"{TAG}-nic1")

VM_XML = """<VM><ID>42</ID><DEPLOY_ID>one-42</DEPLOY_ID>{nics}
<HISTORY_RECORDS><HISTORY><VM_MAD><![CDATA[kvm]]></VM_MAD></HISTORY></HISTORY_RECORDS></VM>"""
NIC_XML = ("<TEMPLATE><NIC><NIC_ID>{i}</NIC_ID><BRIDGE><![CDATA[onebr0]]></BRIDGE>"
           "<PHYDEV><![CDATA[eth0]]></PHYDEV><TARGET><![CDATA[one-42-{i}]]></TARGET>"
           "<IP><![CDATA[192.0.2.{ip}]]></IP><VN_MAD><![CDATA[bridge]]></VN_MAD></NIC></TEMPLATE>")


def sh(*args, check=True, quiet=False):
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def say(text):
    print(f"\n\033[1m{text}\033[0m" if sys.stdout.isatty() else f"\n== {text}")


def action(tree, name, *args, stdin):
    say(f"oned runs: vnm/bridge/{name} {' '.join(args)}  (base64 VM on stdin)")
    done = subprocess.run(["ip", "netns", "exec", HOST, PYTHON,
                           os.path.join(tree, "bridge", name), *args],
                          input=stdin, capture_output=True, check=False,
                          env=dict(os.environ, VNM_RUN_DIR=f"/run/{TAG}"))
    for line in done.stderr.decode().splitlines():
        print(f"   {line}")
    print(f"   exit code {done.returncode}")
    if done.returncode != 0:
        raise SystemExit(f"demo: {name} failed")


def show_bridges():
    for link in json.loads(sh("ip", "-n", HOST, "-j", "link", "show")):
        if link["ifname"] != "lo":
            master = f" -> port of {link['master']}" if link.get("master") else ""
            print(f"   {link['ifname']:<10} {link['operstate']:<8}{master}")


def ping(namespace, address):
    out = sh("ip", "netns", "exec", namespace, "ping", "-c", "2", "-W", "2", address, check=False)
    result = next((line for line in out.splitlines() if "packet loss" in line), "no reply")
    print(f"   {namespace.removeprefix(TAG + '-')} -> {address}: {result.strip()}")
    return " 0% packet loss" in result


def main():
    import base64

    from vnmlib.ops.install import install

    if os.geteuid() != 0:
        raise SystemExit("demo: run as root (it creates network namespaces)")
    remotes = tempfile.mkdtemp(prefix="vnm-demo-")
    install(remotes)
    tree = os.path.join(remotes, "vnm")
    vm = base64.b64encode(VM_XML.format(nics="".join(NIC_XML.format(i=i, ip=10 + i)
                                                     for i in (0, 1))).encode())
    ok = True
    try:
        say("Setting up: hypervisor namespace with uplink eth0, a 'physical network' behind it")
        for name in (HOST, PHYS, VM_A, VM_B):
            sh("ip", "netns", "add", name)
        sh("ip", "-n", HOST, "link", "add", "eth0", "type", "veth", "peer", "name", "wire",
           "netns", PHYS)
        sh("ip", "-n", HOST, "link", "set", "eth0", "up")
        sh("ip", "-n", PHYS, "addr", "add", "192.0.2.1/24", "dev", "wire")
        sh("ip", "-n", PHYS, "link", "set", "wire", "up")
        show_bridges()
        action(tree, "pre", stdin=vm)
        show_bridges()
        say("The hypervisor creates the VM: taps one-42-0 and one-42-1 on onebr0")
        for i, guest in ((0, VM_A), (1, VM_B)):
            sh("ip", "-n", HOST, "link", "add", f"one-42-{i}", "type", "veth", "peer",
               "name", "eth0", "netns", guest)
            sh("ip", "-n", HOST, "link", "set", f"one-42-{i}", "master", "onebr0", "up")
            sh("ip", "-n", guest, "addr", "add", f"192.0.2.{10 + i}/24", "dev", "eth0")
            sh("ip", "-n", guest, "link", "set", "eth0", "up")
        action(tree, "post", "one-42", "node1", stdin=vm)
        show_bridges()
        say("Traffic: NIC 0 <-> NIC 1, and both to the network behind eth0")
        ok = ping(VM_A, "192.0.2.11") and ping(VM_B, "192.0.2.1") and ping(PHYS, "192.0.2.10")
        say("The hypervisor destroys the VM (taps gone), then oned runs clean")
        for i in (0, 1):
            sh("ip", "-n", HOST, "link", "del", f"one-42-{i}")
        action(tree, "clean", "node1", stdin=vm)
        show_bridges()
    finally:
        for name in (HOST, PHYS, VM_A, VM_B):
            sh("ip", "netns", "del", name, check=False)
        sh("rm", "-rf", f"/run/{TAG}", remotes, check=False)
        say("Namespaces deleted; nothing outside them was touched.")
    return 0 if ok else 1
