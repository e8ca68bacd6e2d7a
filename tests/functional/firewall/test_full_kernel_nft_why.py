"""vnm why, vnm verify and doctor's "vnm chains" line with ``:firewall_backend: nft``, in
Debian's kernel (``ct state`` in the bridge family; tools/qemu/run.sh).

test_vnm_why's topology (golden fixture A's VM 7 NIC 1 in group 100, a peer on
onebr1) built with the nft backend: each verdict ``vnm why`` gives by walking
``table bridge vnm`` is checked against what the same packet really does. Then
``vnm verify`` on that protected NIC, and on it deliberately broken (a rule
accepting its traffic ahead of vnm's chains; its IP anti-spoofing rule gone).
"""

import json
import os
import subprocess

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.paths import PYTHON, REPO

import test_vnm_why as why
from test_vnm_why import PEER_DNS, PEER_IP, PEER_NET, VM_IP, VM_MAC

pytestmark = pytest.mark.full_kernel


class NftWhySite(why.Site):
    """why.Site (built with the "nft" engine) and vnm verify."""

    def vnm(self, *args):
        env = dict(os.environ, VNM_RUN_DIR=self.host.run_dir, PYTHONPATH=REPO, **self.fw.env)
        return subprocess.run(["ip", "netns", "exec", self.host.name, PYTHON, *args],
                              capture_output=True, text=True, env=env, check=False)

    def verify(self, *args):
        done = self.vnm("-m", "vnmlib.cli", "verify", "--tree", self.fw.tree, "--vm", "7",
                        "--nic", "1", "--json", *args)
        return done, {c["check"]: c for c in json.loads(done.stdout or "[]")}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = NftWhySite("nft", tmp_path_factory.mktemp("nft-why"))
    yield built
    built.delete()


TCP_IN = [  # source, port, verdict, what decides it
    (PEER_IP, 85, "ACCEPT", "tcp dport { 22, 80-90 } return"),     # port range
    (PEER_IP, 9000, "DROP", "one-7-1-i rule"),                       # nothing allows it
    (PEER_NET, 9000, "ACCEPT", 'comment "one-7-1-100-i-tcp-n-inet"'),  # network rule
]
ICMP_IN = [  # source, type/code, verdict, what decides it
    (PEER_IP, "8", "ACCEPT", "icmp type echo-request return"),      # ICMP type rule
    (PEER_IP, "13", "DROP", "one-7-1-i rule"),                       # no rule for timestamps
    ("172.16.0.12", "3/1", "ACCEPT", "172.16.0.12 . 3 . 1 in the rule's set"),
    ("172.16.1.12", "3/1", "DROP", "one-7-1-i rule"),
]
UDP_OUT = [  # source, destination, source MAC, verdict, what decides it
    (VM_IP, PEER_DNS, VM_MAC, "ACCEPT", 'comment "one-7-1-100-o-nr-inet"'),  # net + port
    (VM_IP, PEER_IP, VM_MAC, "DROP", "one-7-1-o rule"),         # past 10.0.0.0+300
    ("10.0.1.99", PEER_DNS, VM_MAC, "DROP", "10.0.1.99 not in the rule's set"),
    ("10.0.1.6", PEER_DNS, VM_MAC, "ACCEPT", 'comment "one-7-1-100-o-nr-inet"'),  # alias
    (VM_IP, PEER_DNS, "02:00:00:00:00:99", "DROP", "wire guard"),
]


def packets():
    """{(packet, MAC or None): None} of every case, to evaluate at once."""
    found = [(f"tcp {s}:40000 -> {VM_IP}:{p} in", None) for s, p, _, _ in TCP_IN]
    found += [(f"icmp:{t} {s} -> {VM_IP} in", None) for s, t, _, _ in ICMP_IN]
    found += [(f"udp {s}:40000 -> {d}:53 out", m) for s, d, m, _, _ in UDP_OUT]
    return found + [(f"esp {VM_IP} -> {PEER_IP} out", None), (f"esp {PEER_IP} -> {VM_IP} in", None)]


@pytest.fixture(scope="module")
def verdicts(site):
    """{(packet, MAC): verdict} as vnm why's own code gives them (one process: every
    Python start costs seconds under TCG; the command line itself is tested below)."""
    code = ("import json, sys\n"
            "from vnmlib.model import config\n"
            "from vnmlib.ops.why import nic, packet\n"
            "conf = config.load(config.conf_path(sys.argv[1]))\n"
            "cases = json.loads(sys.argv[2])\n"
            "print(json.dumps([nic.explain(conf, 7, 1, packet.parse(p), None, m).as_dict()\n"
            "                  for p, m in cases]))\n")
    done = site.vnm("-c", code, site.fw.tree, json.dumps(packets()))
    assert done.returncode == 0, done.stderr
    return dict(zip(packets(), json.loads(done.stdout)))


def decided_by(found, where):
    return where in found["reason"] or any(where in step for step in found["path"])


def seen(guest, dev, kind, value, send):
    """Frames of ``kind``/``value`` ``guest`` sees on ``dev`` while ``send()`` runs: a
    window of 4 s, as a Python start under TCG on a busy machine may take two."""
    proc = guest.start("sniff", dev, "4", kind, value)
    try:
        send()
        return int(proc.stdout.readline())
    finally:
        stop(proc)


@pytest.mark.parametrize("source, port, verdict, where", TCP_IN)
def test_tcp_to_the_vm(site, verdicts, source, port, verdict, where):
    found = verdicts[(f"tcp {source}:40000 -> {VM_IP}:{port} in", None)]
    assert found["verdict"] == verdict and decided_by(found, where), found
    peer = site.guests["peer"]
    # the real connection from that source address
    done = subprocess.run(["ip", "netns", "exec", peer.name, "python3", "-c",
                           "import socket,sys; s=socket.socket(); s.settimeout(1); "
                           f"s.bind(('{source}', 0)); sys.exit(s.connect_ex(('{VM_IP}', {port})))"],
                          capture_output=True, check=False)
    assert (done.returncode == 0) == (verdict == "ACCEPT")


@pytest.mark.parametrize("source, icmp, verdict, where", ICMP_IN)
def test_icmp_to_the_vm(site, verdicts, source, icmp, verdict, where):
    found = verdicts[(f"icmp:{icmp} {source} -> {VM_IP} in", None)]
    assert found["verdict"] == verdict and decided_by(found, where), found
    if source == PEER_IP:  # the peer's own address: the real message
        peer, vm = site.guests["peer"], site.guests["vm"]
        count = seen(vm, "one-7-1p", "icmp", icmp, lambda: peer.probe("icmp4", VM_IP, icmp))
        assert count == (1 if verdict == "ACCEPT" else 0)


@pytest.mark.parametrize("source, destination, mac, verdict, where", UDP_OUT)
def test_udp_from_the_vm(site, verdicts, source, destination, mac, verdict, where):
    found = verdicts[(f"udp {source}:40000 -> {destination}:53 out", mac)]
    assert found["verdict"] == verdict and decided_by(found, where), found
    peer, vm = site.guests["peer"], site.guests["vm"]
    count = seen(peer, "peer0p", "udp", 53, lambda: vm.probe(
        "udp-frame", "one-7-1p", mac, source, destination, 53))
    assert count == (1 if verdict == "ACCEPT" else 0)


def test_the_command_line_one_verdict_line_then_the_path(site):
    done = site.why(f"tcp {PEER_IP}:40000 -> {VM_IP}:22 in", json_out=False)  # as quoted
    assert done.returncode == 0, done.stderr
    first, *path = done.stdout.splitlines()
    assert first.startswith(f"ACCEPT: tcp {PEER_IP}:40000 -> {VM_IP}:22 in (vnm opennebula rule")
    assert path and all(line.startswith("  ") for line in path)


def test_protocol_rule_and_the_hooks_path(verdicts):
    found = verdicts[(f"esp {VM_IP} -> {PEER_IP} out", None)]
    assert found["verdict"] == "ACCEPT", found
    assert found["path"][0].startswith(f"source MAC taken as the NIC's own, {VM_MAC}")
    assert found["path"][1].startswith("vnm forward rule 1")  # the walk starts at the hook
    assert any("meta l4proto esp return" in step for step in found["path"])
    assert verdicts[(f"esp {PEER_IP} -> {VM_IP} in", None)]["verdict"] == "DROP"


def test_a_rule_it_cannot_read_is_undetermined(site):
    """Another program's bridge table on the same hook is walked too; a match vnm does
    not evaluate gives UNDETERMINED naming it, never a guess."""
    site.host.exec("nft", "-f", "-", input=b"table bridge other {\n chain c {\n  type filter "
                                            b"hook forward priority -300; policy accept;\n"
                                            b"  meta mark 7 drop\n }\n}\n")
    try:
        done = site.why(f"tcp {PEER_IP}:40000 -> {VM_IP}:22 in")
    finally:
        site.host.exec("nft", "delete", "table", "bridge", "other")
    assert done.returncode == 1, done.stdout + done.stderr
    found = json.loads(done.stdout)
    assert found["verdict"] == "UNDETERMINED"
    assert found["reason"].startswith("other c rule 1") and "meta mark" in found["reason"]


def handle_of(site, chain, words):
    for line in site.host.exec("nft", "-a", "list", "chain", "bridge", "vnm", chain).splitlines():
        if words in line:
            return line.rsplit("# handle ", 1)[1].strip()
    raise AssertionError(f"no rule with {words!r} in {chain}")


def test_verify_passes_a_protected_nic(site):
    done, found = site.verify()
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("reaches its chains", "IPv4 source spoofing", "MAC spoofing",
                 "IPv4 denied TCP port", "IPv4 allowed TCP port"):
        assert found[name]["result"] == "enforced", found[name]
    assert "one-7-1-ip-spoofing" in found["IPv4 source spoofing"]["detail"]
    assert "10.0.1.5:22, allowed by one-7-1-i; the whole path says ACCEPT" in \
        found["IPv4 allowed TCP port"]["detail"]


def test_verify_finds_a_bypass_and_a_missing_spoofing_rule(site):
    host = site.host
    host.exec("nft", "insert", "rule", "bridge", "vnm", "forward", "oifname", '"one-7-1"',
              "accept")
    spoofing = handle_of(site, "one-7-1-o", 'comment "one-7-1-ip-spoofing"')
    host.exec("nft", "delete", "rule", "bridge", "vnm", "one-7-1-o", "handle", spoofing)
    try:
        done, found = site.verify()
    finally:
        host.exec("nft", "delete", "rule", "bridge", "vnm", "forward", "handle",
                  handle_of(site, "forward", 'oifname "one-7-1" accept'))
        assert_ok(site.fw.run(host, "fw", "update_sg", "one-7", stdin=why.b64(why.XML)))
    assert done.returncode == 1, done.stdout + done.stderr
    assert found["IPv4 source spoofing"]["result"] == "HOLE", found
    # the live probe proves the bypass: the denied port's SYN reached the tap
    assert found["IPv4 denied TCP port"]["result"] == "HOLE", found["IPv4 denied TCP port"]
    assert handle_of(site, "one-7-1-o", 'comment "one-7-1-ip-spoofing"')  # update_sg put it back


def doctor_chains(site):
    done = site.vnm("-c", "import json, sys; from vnmlib.cli.doctor import global_chains; "
                          "print(json.dumps(global_chains(sys.argv[1])))", site.fw.tree)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_doctor_reads_vnm_chains_through_the_nft_backend(site):
    assert doctor_chains(site) == [["vnm chains", "ok", "opennebula chains, FORWARD jumps: in "
                                                       "place or not made yet"]]
    handle = handle_of(site, "forward", "jump opennebula")
    site.host.exec("nft", "delete", "rule", "bridge", "vnm", "forward", "handle", handle)
    try:
        found = doctor_chains(site)
    finally:
        site.host.exec("nft", "add", "rule", "bridge", "vnm", "forward", "jump", "opennebula")
    assert ["vnm chains (IPv4)", "FAIL", "FORWARD does not jump to opennebula"] in found


def test_doctor_names_the_nft_binding_and_probes_the_kernel(site):
    done = site.vnm("-m", "vnmlib.cli", "doctor", "--json", "--tree", site.fw.tree)
    rows = {row["check"]: (row["status"], row["detail"]) for row in json.loads(done.stdout)}
    assert rows["nft backend"] == ("ok", "python3-nftables (libnftables)"), done.stderr
    assert rows["nft backend kernel"][0] == "ok", rows["nft backend kernel"]
