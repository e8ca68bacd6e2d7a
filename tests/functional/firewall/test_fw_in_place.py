"""post finds pre's protection in place and rewrites nothing; anything missing is written back.

vnmlib/firewall/in_place.py: under the lock post reads the NIC's chains and
jumps (as it did for its rollback snapshot), lists its sets tersely and its
guard table by name, and compares them with the recorded digest of the last
completed commit. Each case here takes one part of the protection away (a
rule of one family, a jump, a set member, the wire guard) and checks that the
next post puts back exactly what pre wrote; an update_sg that changes the
rules is applied, and the same one again is found in place.
"""

import pytest

from support.assertions import assert_ok
from support.firewall import Firewall, ipsets
from support.namespaces import Namespace
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

TAP = "one-45-0"


def vm(port):
    nic = bridge_nic(45, 0, "ipbr", "uplink0", VN_MAD="fw", IP="10.45.0.10",
                     IP6="fd00:45::10", MAC="02:00:0a:2d:00:0a", SECURITY_GROUPS="100",
                     FILTER_IP_SPOOFING="YES", FILTER_MAC_SPOOFING="YES")
    rules = [{"PROTOCOL": "TCP", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": 100,
              "RANGE": port, "IP": "10.1.0.0", "SIZE": "256"},
             {"PROTOCOL": "ALL", "RULE_TYPE": "OUTBOUND", "SECURITY_GROUP_ID": 100}]
    return b64(vm_xml(45, [nic], extra=rules_xml(*rules)))


VM = vm("22")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("in-place")
    run_dir = workdir / "run"
    run_dir.mkdir()
    host = Namespace(str(run_dir))
    try:
        fw = Firewall("restore-nft", workdir)
        assert_ok(fw.run(host, "fw", "pre", stdin=VM))
        host.add_tap(TAP, "ipbr")
        yield fw, host
    finally:
        host.delete()


def state(fw, ns):
    return (fw.save(ns, 4), fw.save(ns, 6), ipsets(ns),
            ns.exec("nft", "list", "table", "netdev", TAP))


def post(fw, ns):
    done = fw.run(ns, "fw", "post", "one-45", "node1", stdin=VM)
    assert_ok(done)
    return done.stderr.decode()


def test_post_after_pre_finds_the_protection_in_place(site):
    fw, ns = site
    before = state(fw, ns)
    assert f"protection of {TAP} in place" in post(fw, ns)
    assert state(fw, ns) == before


TAMPER = {
    "an IPv6 rule": ("ip6tables", "-D", "one-45-0-o", "-j", "DROP"),
    "the INPUT jump": ("iptables", "-D", "INPUT", "-m", "physdev", "--physdev-in", TAP,
                       "-j", "one-45-0-o"),
    "a set member": ("ipset", "del", "one-45-0-ip-spoofing", "10.45.0.10"),
    "a member too many": ("ipset", "add", "one-45-0-ip-spoofing", "10.45.0.99"),
}


@pytest.mark.parametrize("what", sorted(TAMPER))
def test_post_writes_back_what_is_missing(site, what):
    fw, ns = site
    before = state(fw, ns)
    ns.exec(*TAMPER[what])
    assert state(fw, ns) != before
    assert f"protection of {TAP} applied" in post(fw, ns)
    assert state(fw, ns) == before
    assert f"protection of {TAP} in place" in post(fw, ns)


def test_a_missing_wire_guard_is_written_alone(site):
    fw, ns = site
    before = state(fw, ns)
    ns.exec("nft", "delete", "table", "netdev", TAP)
    assert "its wire guard written" in post(fw, ns)
    assert state(fw, ns) == before


def test_update_sg_applies_a_change_then_finds_it_in_place(site):
    fw, ns = site
    wider = vm("22,80")
    for expected in ("applied", "in place"):
        done = fw.run(ns, "fw", "update_sg", "one-45", stdin=wider)
        assert_ok(done)
        assert f"protection of {TAP} {expected}" in done.stderr.decode()
    assert any(member.endswith("tcp:80") for members in ipsets(ns).values() for member in members)
    done = fw.run(ns, "fw", "update_sg", "one-45", stdin=VM)
    assert_ok(done)
    assert f"protection of {TAP} applied" in done.stderr.decode()
