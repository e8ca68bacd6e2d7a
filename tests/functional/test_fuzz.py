"""Fuzzing the actions' input with hypothesis, on the real scripts in a namespace.

Every input either succeeds or fails with exactly one ``ERROR: <action>: …``
line and exit 1 — never a traceback or an "internal error" — and a failure
leaves the namespace exactly as it was. Inputs: NIC attributes (bridge, fw,
vxlan ``pre``), security-group rules (fw ``post``), and raw stdin (broken
base64 and XML, hostile documents). ``VNM_LONG=1`` runs 10x the examples.
"""

import base64
import os
import re
import shutil

from helpers import assert_ok, b64, ipsets, rules_xml, vm_xml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = os.environ.get("VNM_LONG") == "1"
FUZZ = settings(max_examples=250 if LONG else 25, deadline=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def state(ns):
    links = sorted((name, link["master"], link["kind"]) for name, link in ns.links().items())
    tables = [re.sub(r"\[\d+:\d+\]", "", line) for tool in ("iptables-save", "ip6tables-save")
              for line in ns.exec(tool, "-t", "filter").splitlines() if not line.startswith("#")]
    return links, tables, ipsets(ns)


UPLINKS = ("lo", "uplink0", "uplink0p", "uplink1", "uplink1p")


def reset(ns):
    """Back to the bare namespace: examples must not see each other's bridges."""
    for name, link in ns.links().items():
        if name not in UPLINKS:
            ns.ip("link", "del", name, check=False)
        elif link["master"]:
            ns.ip("link", "set", name, "nomaster")
    shutil.rmtree(os.path.join(ns.run_dir, "users"), ignore_errors=True)


def check_outcome(done, action):
    err = done.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    if done.returncode == 0:
        return True
    assert done.returncode == 1, err
    errors = [line for line in err.split("\n") if line.startswith("ERROR:")]  # oned: "\n" only
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {action}: "), err
    return False


def odd_text(max_size=24):
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=max_size)


def maybe(valid):
    """A plausible value most of the time, anything at all otherwise."""
    return st.one_of(valid, valid, odd_text())


NIC_ATTRS = st.fixed_dictionaries({}, optional={
    "BRIDGE": maybe(st.sampled_from(["fzbr", "fzbr1", "br-x", "a" * 15, "a" * 16, "lo",
                                     "uplink0"])),
    "PHYDEV": maybe(st.sampled_from(["uplink0", "uplink1", "nosuch0", ""])),
    "VLAN_ID": maybe(st.integers(-5, 20000000).map(str)),
    "MTU": maybe(st.integers(-1, 70000).map(str)),
    "MAC": maybe(st.sampled_from(["02:00:0a:00:00:01", "02:00:0a:00:00", "zz:00:0a:00:00:01"])),
    "IP": maybe(st.sampled_from(["10.80.0.1", "10.80.0.300", "fd00::1"])),
    "VLAN_TAGGED_ID": maybe(st.sampled_from(["10", "10-20,30", "4095", "20-10", "a"])),
    "BRIDGE_CONF": maybe(st.sampled_from(["stp=on", "setfd=2", "bogus=1", "stp"])),
    "CONF": maybe(st.sampled_from(["keep_empty_bridge=yes", "vlan_mtu=9000", "x"])),
    "TARGET": maybe(st.sampled_from(["one-90-0", "tap0", "x" * 16])),
})


@FUZZ
@given(driver=st.sampled_from(["bridge", "fw", "vxlan"]), attrs=NIC_ATTRS)
def test_fuzzed_nic_attributes(ns, driver, attrs):
    reset(ns)
    before = state(ns)
    nic = dict({"NIC_ID": 0, "VN_MAD": driver}, **attrs)
    stdin = b64(vm_xml(90, [nic]))
    if check_outcome(ns.run(driver, "pre", stdin=stdin), "pre"):
        assert_ok(ns.run(driver, "clean", "node1", stdin=stdin))
    else:
        assert state(ns) == before


RULE = st.fixed_dictionaries({
    "PROTOCOL": maybe(st.sampled_from(["TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL"])),
    "RULE_TYPE": maybe(st.sampled_from(["INBOUND", "OUTBOUND"])),
    "SECURITY_GROUP_ID": maybe(st.integers(0, 1000).map(str)),
}, optional={
    "RANGE": maybe(st.sampled_from(["22", "22,80:90", "1:65535", "0", "90:80", "65536",
                                    ",".join(map(str, range(1, 40)))])),
    "ICMP_TYPE": maybe(st.integers(-1, 300).map(str)),
    "ICMPV6_TYPE": maybe(st.integers(-1, 300).map(str)),
    "IP": maybe(st.sampled_from(["10.81.0.0", "10.81.0.300", "fd81::", "0.0.0.0"])),
    "SIZE": maybe(st.integers(-1, 70000).map(str)),
})


@FUZZ
@given(rules=st.lists(RULE, max_size=4))
def test_fuzzed_security_group_rules(ns, rules):
    nic = {"NIC_ID": 0, "VN_MAD": "fw", "BRIDGE": "fzsg", "IP": "10.82.0.9",
           "SECURITY_GROUPS": ",".join(sorted({r["SECURITY_GROUP_ID"] for r in rules}
                                              | {"0"}))}
    stdin = b64(vm_xml(91, [nic], extra=rules_xml(*rules)))
    if "fzsg" not in ns.links():
        assert_ok(ns.run("fw", "pre", stdin=b64(vm_xml(91, [nic]))))
        ns.add_tap("one-91-0", "fzsg")
    before = state(ns)
    if check_outcome(ns.run("fw", "post", "one-91", "node1", stdin=stdin), "post"):
        # success: the NIC is protected; update_sg back to no rules at all must work too
        assert any("one-91-0-i" in line for line in state(ns)[1])
        assert_ok(ns.run("fw", "update_sg", "one-91", stdin=b64(vm_xml(91, [nic]))))
    else:
        assert state(ns) == before


VALID = vm_xml(92, [{"NIC_ID": 0, "VN_MAD": "bridge", "BRIDGE": "fzraw"}])


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300),
    odd_text(300).map(lambda t: base64.b64encode(t.encode())),
    st.integers(0, len(VALID)).map(lambda n: base64.b64encode(VALID[:n].encode())),
    st.tuples(st.integers(0, len(VALID) - 1), odd_text(8)).map(
        lambda cut: base64.b64encode((VALID[:cut[0]] + cut[1] + VALID[cut[0]:]).encode()))))
def test_fuzzed_raw_stdin(ns, data):
    reset(ns)
    before = state(ns)
    if check_outcome(ns.run("bridge", "pre", stdin=data), "pre"):
        assert_ok(ns.run("bridge", "clean", "node1", stdin=data))
    else:
        assert state(ns) == before


HOSTILE = {
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE VM [<!ENTITY a "aaaaaaaaaa">'
                      + b"".join(f'<!ENTITY {chr(98 + i)} "'.encode()
                                 + f"&{chr(97 + i)};".encode() * 10 + b'">' for i in range(8))
                      + b"]><VM><ID>1</ID><X>&i;</X></VM>",
    "external entity": b'<?xml version="1.0"?><!DOCTYPE VM [<!ENTITY x SYSTEM '
                       b'"file:///etc/shadow">]><VM><ID>1</ID><X>&x;</X></VM>',
    "100 MB document": b"<VM><ID>1</ID>" + b"<X>" + b"a" * (100 << 20) + b"</X></VM>",
    "deep nesting": b"<VM><ID>1</ID>" + b"<A>" * 100000 + b"</A>" * 100000 + b"</VM>",
}


def test_hostile_documents_are_refused_quickly(ns):
    import time

    for name, doc in HOSTILE.items():
        before = state(ns)
        start = time.monotonic()
        done = ns.run("bridge", "pre", stdin=base64.b64encode(doc))
        assert not check_outcome(done, "pre"), name
        assert time.monotonic() - start < 10, name
        assert state(ns) == before, name
