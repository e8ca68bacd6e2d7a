"""elastic's front-end reaching the host over OpenSSH, against a real sshd.

    front-end F (10.77.0.2) ── uplink1 ── host H (10.77.0.1, sshd; br-el, VM 10's tap)

post and clean run in F as oned runs them there; remote_post and remote_clean
run in H through ``ssh -o BatchMode=yes`` with a key generated for the test,
on the host's own python3 (sshd's PATH: Debian's /usr/bin/python3).
"""

import json
import os
import subprocess

import pytest

from support.assertions import assert_ok, assert_one_error
from support.namespaces import Guest
from support.oned_input import b64, vm_xml
from support.paths import PYTHON
from support.remotes import copy_tree
from support.sshd import Sshd

HOST, FRONT = "10.77.0.1", "10.77.0.2"
NIC = {"NIC_ID": 0, "BRIDGE": "br-el", "VN_MAD": "elastic", "IP": "10.9.0.10",
       "EXTERNAL_IP": "203.0.113.10", "GATEWAY": "10.9.0.1", "TARGET": "one-10-0",
       "MAC": "02:00:0a:09:00:0a"}
STDIN = b64(vm_xml(10, [NIC]))
HOOK = "#!/bin/sh\nprintf '%s %s\\n' \"$(readlink /proc/self/ns/net)\" \"$*\" >> {log}\n"


@pytest.fixture
def site(ns, tmp_path):
    ns.ip("addr", "add", f"{HOST}/24", "dev", "uplink1")
    front = Guest(ns, link="uplink1p", ipv4=f"{FRONT}/24")
    sshd = Sshd(ns.name, HOST, tmp_path, env={"VNM_RUN_DIR": ns.run_dir})
    tree = copy_tree(tmp_path / "remotes")
    path = os.path.join(os.path.dirname(tree), "etc", "vnm", "elastic.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({
            "providers": {"p": {"driver": "dummy"}}, "default": "p",
            "transport": {"remote_dir": tree, "ssh_user": "root",
                          "ssh_options": sshd.client_options()}}))
    os.chmod(path, 0o600)
    try:
        yield ns, front, tree, tmp_path
    finally:
        sshd.stop()
        front.delete()


def front_end(front, tree, action, *args):
    return subprocess.run(["ip", "netns", "exec", front.name, PYTHON,
                           os.path.join(tree, "elastic", action), *args],
                          input=STDIN, capture_output=True, check=False)


def netns_id(name):
    done = subprocess.run(["ip", "netns", "exec", name, "readlink", "/proc/self/ns/net"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_post_and_clean_over_ssh_with_hooks_where_the_reference_runs_them(site):
    ns, front, tree, tmp_path = site
    log = tmp_path / "hooks.log"
    for action in ("post", "clean"):
        hook = os.path.join(tree, "elastic", f"{action}.d", "record")
        with open(hook, "w", encoding="ascii") as handle:
            handle.write(HOOK.format(log=log))
        os.chmod(hook, 0o755)
    assert_ok(ns.run("elastic", "pre", stdin=STDIN, tree=tree))
    ns.add_tap("one-10-0", "br-el")

    done = assert_ok(front_end(front, tree, "post", "one-10", HOST))
    assert "INFO: remote_post: ip route add 10.9.0.10/32 dev br-el" in done.stderr.decode()
    assert "10.9.0.10 dev br-el" in ns.ip("route", "show")
    assert "-A opennebula -d 10.9.0.10/32 -j one-10-0-i" in ns.exec("iptables", "-S")

    assert_ok(front_end(front, tree, "clean", HOST))
    assert "10.9.0.10" not in ns.ip("route", "show")
    assert "one-10-0" not in ns.exec("iptables", "-S")
    # post.d ran on the front-end, clean.d on the host (reference run_hooks_remote)
    assert log.read_text().splitlines() == [f"{netns_id(front.name)} one-10 {HOST}",
                                            f"{netns_id(ns.name)} {HOST}"]


def test_unreachable_host_is_one_line_and_nothing_is_left(site):
    ns, front, tree, _ = site
    assert_ok(ns.run("elastic", "pre", stdin=STDIN, tree=tree))
    done = front_end(front, tree, "post", "one-10", "10.77.0.9")
    assert_one_error(done, "cannot run remote_post on host 10.77.0.9 over ssh")
    assert "10.9.0.10" not in ns.ip("route", "show")
