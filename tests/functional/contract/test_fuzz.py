"""Fuzzing the actions' input with hypothesis, on the real scripts in a namespace.

Every input either succeeds or fails with exactly one ``ERROR: <action>: …``
line and exit 1 — never a traceback or an "internal error" — and a failure
leaves the namespace exactly as it was. Inputs: NIC attributes (bridge, fw,
vxlan ``pre``), security-group rules (fw ``post``), the addresses and rules
of a routed NIC (elastic ``update_sg``), and raw stdin (broken base64 and
XML, hostile documents). ``VNM_LONG=1`` runs 10x the examples.

Besides plausible and arbitrary text, values come in the hostile forms of
issue 23, made from a valid value: a newline with a script line after it, a
``%`` scope id, other scripts' digits, a NUL, an over-long tail. Such a value
must be refused, or — where the action does not read it — accepted with
exactly the state its clean value gives.
"""

import base64
import os
import re
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.assertions import assert_ok
from support.firewall import ipsets
from support.oned_input import b64, rules_xml, vm_xml

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


def check_outcome(done, action, names=None):
    """True when ``done`` succeeded; else it failed as it must. ``names``: the attributes
    of the example, one of which (or the document itself) a refusal must name."""
    err = done.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    if done.returncode == 0:
        return True
    assert done.returncode == 1, err
    errors = [line for line in err.split("\n") if line.startswith("ERROR:")]  # oned: "\n" only
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {action}: "), err
    if names is not None:
        assert any(re.search(rf"\b{re.escape(name)}\b", errors[0])
                   for name in (*names, "XML")), errors[0]
    return False


def odd_text(max_size=24):
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=max_size)


class Value(str):
    """A generated attribute value; ``clean`` is the valid value a hostile one was made
    from (itself for a valid value, None for arbitrary text)."""

    def __new__(cls, sent, clean):
        value = super().__new__(cls, sent)
        value.clean = clean
        return value


OTHER_DIGITS = ("٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "߀߁߂߃߄߅߆߇߈߉")


# what an injected line would say, in restore and ipset scripts
SCRIPT_LINES = st.sampled_from(["-I FORWARD 1 -j ACCEPT", "-A opennebula -d ::2",
                                "add one-1-0-ip-spoofing 10.0.0.1", "COMMIT"])
SCOPES = st.one_of(odd_text(12), st.sampled_from(["lo", "1", "uplink0"]),
                   SCRIPT_LINES.map(lambda line: f"lo\n{line}"))


def hostile_forms(clean):
    """Issue 23's classes, made from the valid ``clean``."""
    return st.one_of(
        st.one_of(odd_text(12), SCRIPT_LINES).map(lambda tail: f"{clean}\n{tail}"),
        SCOPES.map(lambda scope: f"{clean}%{scope}"),
        st.sampled_from(OTHER_DIGITS).map(
            lambda digits: clean.translate(str.maketrans("0123456789", digits)) + digits[1]),
        st.just(f"{clean}\x00"),
        st.integers(16, 5000).map(lambda n: clean + "9" * n),
    )


def maybe(valid):
    """A plausible value most of the time; anything at all, or a hostile form, otherwise."""
    valid = valid.map(str)
    return st.one_of(valid.map(lambda v: Value(v, v)), valid.map(lambda v: Value(v, v)),
                     odd_text().map(lambda v: Value(v, None)),
                     valid.flatmap(lambda v: hostile_forms(v).map(lambda h: Value(h, v))))


def one_hostile(valid):
    """A value of every field of ``valid`` ({name: strategy of valid values}), one of them
    in a hostile form: what finds a value that gets past its reader, which an example
    full of bad values (refused for the first of them) never would."""
    fields = st.fixed_dictionaries({k: v.map(lambda x: Value(str(x), str(x)))
                                    for k, v in valid.items()})

    def mutate(values, name):
        return hostile_forms(values[name].clean).map(
            lambda sent: {**values, name: Value(sent, values[name].clean)})

    return st.tuples(fields, st.sampled_from(sorted(valid))).flatmap(lambda t: mutate(*t))


def cleaned(attrs):
    """``attrs`` with every hostile value back to its clean one; None when one has none."""
    if any(getattr(v, "clean", v) is None for v in attrs.values()):
        return None
    return {k: getattr(v, "clean", v) for k, v in attrs.items()}


def is_hostile(attrs):
    return any(getattr(v, "clean", v) != v for v in attrs.values())


NIC_VALUES = {
    "BRIDGE": maybe(st.sampled_from(["fzbr", "fzbr1", "br-x", "a" * 15, "a" * 16, "lo",
                                     "uplink0"])),
    "PHYDEV": maybe(st.sampled_from(["uplink0", "uplink1", "nosuch0", ""])),
    "VLAN_ID": maybe(st.integers(-5, 20000000).map(str)),
    "MTU": maybe(st.integers(-1, 70000).map(str)),
    "MAC": maybe(st.sampled_from(["02:00:0a:00:00:01", "02:00:0a:00:00", "zz:00:0a:00:00:01"])),
    "IP": maybe(st.sampled_from(["10.80.0.1", "10.80.0.300", "fd00::1"])),
    "IP6": maybe(st.sampled_from(["fd80::1", "fe80::1", "10.80.0.1"])),
    "IP6_GLOBAL": maybe(st.just("2001:db8:80::1")),
    "VROUTER_IP": maybe(st.just("10.80.0.254")),
    "VROUTER_IP6_LINK": maybe(st.just("fe80::fe")),
    "NIC_ID": maybe(st.sampled_from(["1", "65535", "65536"])),
    "SECURITY_GROUPS": maybe(st.sampled_from(["0", "0,100", "x"])),
    "VLAN_TAGGED_ID": maybe(st.sampled_from(["10", "10-20,30", "4095", "20-10", "a"])),
    "BRIDGE_CONF": maybe(st.sampled_from(["stp=on", "setfd=2", "bogus=1", "stp"])),
    "CONF": maybe(st.sampled_from(["keep_empty_bridge=yes", "vlan_mtu=9000", "x"])),
    "TARGET": maybe(st.sampled_from(["one-90-0", "tap0", "x" * 16])),
}
NIC_VALID = {"BRIDGE": st.sampled_from(["fzbr", "fzbr1"]), "PHYDEV": st.just("uplink1"),
             "VLAN_ID": st.sampled_from(["80", "81"]), "MAC": st.just("02:00:0a:00:00:01"),
             "IP": st.just("10.80.0.1"), "IP6": st.just("fd80::1"),
             "VROUTER_IP6_LINK": st.just("fe80::fe"), "NIC_ID": st.just("1"),
             "SECURITY_GROUPS": st.just("0"), "TARGET": st.just("one-90-1"),
             "VLAN_TAGGED_ID": st.just("10-20,30"), "MTU": st.just("1400"),
             "ID": st.just("90")}
NIC_ATTRS = st.one_of(st.fixed_dictionaries({"ID": maybe(st.sampled_from(
    ["90", "4294967295", "4294967296"]))}, optional=NIC_VALUES), one_hostile(NIC_VALID))


@FUZZ
@given(driver=st.sampled_from(["bridge", "fw", "vxlan"]), attrs=NIC_ATTRS)
def test_fuzzed_nic_attributes(ns, driver, attrs):
    reset(ns)
    before = state(ns)
    values = dict({"NIC_ID": "0", "VN_MAD": driver}, **attrs)

    def pre(values):
        nic = {k: v for k, v in values.items() if k != "ID"}
        stdin = b64(vm_xml(90, [nic]).replace("<ID>90</ID>", f"<ID>{values['ID']}</ID>", 1))
        done = ns.run(driver, "pre", stdin=stdin)
        return check_outcome(done, "pre", [*NIC_VALUES, "NIC_ID", "VM ID"]), stdin

    accepted, stdin = pre(values)
    if not accepted:
        assert state(ns) == before
        return
    after = state(ns)
    assert_ok(ns.run(driver, "clean", "node1", stdin=stdin))
    reference = cleaned(values)
    if is_hostile(values) and reference is not None:
        # accepted although hostile: the action did not read it, so the clean value
        # must give exactly the same host
        reset(ns)
        assert pre(reference)[0]
        assert state(ns) == after


RULE_REQUIRED = {
    "PROTOCOL": maybe(st.sampled_from(["TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL"])),
    "RULE_TYPE": maybe(st.sampled_from(["INBOUND", "OUTBOUND"])),
    "SECURITY_GROUP_ID": maybe(st.integers(0, 1000).map(str)),
}
RULE_OPTIONAL = {
    "RANGE": maybe(st.sampled_from(["22", "22,80:90", "1:65535", "0", "90:80", "65536",
                                    ",".join(map(str, range(1, 40)))])),
    "ICMP_TYPE": maybe(st.integers(-1, 300).map(str)),
    "ICMPV6_TYPE": maybe(st.integers(-1, 300).map(str)),
    "IP": maybe(st.sampled_from(["10.81.0.0", "10.81.0.300", "fd81::", "0.0.0.0"])),
    "SIZE": maybe(st.integers(-1, 70000).map(str)),
}
RULE = st.fixed_dictionaries(RULE_REQUIRED, optional=RULE_OPTIONAL)
VALID_RULES = (
    {"PROTOCOL": "TCP", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": "100", "RANGE": "22,80:90"},
    {"PROTOCOL": "ICMP", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": "100", "ICMP_TYPE": "8"},
    {"PROTOCOL": "ICMPV6", "RULE_TYPE": "OUTBOUND", "SECURITY_GROUP_ID": "101",
     "ICMPV6_TYPE": "128"},
    {"PROTOCOL": "ALL", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": "100", "IP": "10.81.0.0",
     "SIZE": "256"},
    {"PROTOCOL": "UDP", "RULE_TYPE": "OUTBOUND", "SECURITY_GROUP_ID": "101", "IP6": "fd81::",
     "SIZE": "16", "RANGE": "53"},
    {"PROTOCOL": "TCP", "RULE_TYPE": "OUTBOUND", "SECURITY_GROUP_ID": "101",
     "IP6_GLOBAL": "2001:db8:81::", "SIZE": "4", "RANGE": "443"},
)
ONE_HOSTILE_RULE = st.sampled_from(VALID_RULES).flatmap(
    lambda rule: one_hostile({k: st.just(v) for k, v in rule.items()}))
# a list of arbitrary rules, or valid ones and one with a single hostile field
RULES = st.one_of(st.lists(RULE, max_size=4), st.tuples(
    st.lists(st.sampled_from(VALID_RULES), max_size=2), ONE_HOSTILE_RULE).map(
    lambda t: [*t[0], t[1]]))
# what a refused rule's line may name: a field, or the group (SECURITY_GROUPS, an ipset name)
RULE_NAMES = [*RULE_REQUIRED, *RULE_OPTIONAL, "IP6", "IP6_GLOBAL", "SECURITY_GROUPS"]


def rule_pairs(rules):
    """(sent rules, their clean version or None)."""
    clean = [cleaned(rule) for rule in rules]
    return rules, None if None in clean else clean


@FUZZ
@given(rules=RULES)
def test_fuzzed_security_group_rules(ns, rules):
    nic = {"NIC_ID": 0, "VN_MAD": "fw", "BRIDGE": "fzsg", "IP": "10.82.0.9",
           "SECURITY_GROUPS": ",".join(sorted({r["SECURITY_GROUP_ID"] for r in rules}
                                              | {"0"}))}
    stdin = b64(vm_xml(91, [nic], extra=rules_xml(*rules)))
    if "fzsg" not in ns.links():
        assert_ok(ns.run("fw", "pre", stdin=b64(vm_xml(91, [nic]))))
        ns.add_tap("one-91-0", "fzsg")
    before = state(ns)
    names = RULE_NAMES
    if check_outcome(ns.run("fw", "post", "one-91", "node1", stdin=stdin), "post", names):
        # success: the NIC is protected; update_sg back to no rules at all must work too
        after = state(ns)
        assert any("one-91-0-i" in line for line in after[1])
        _, clean = rule_pairs(rules)
        if any(is_hostile(rule) for rule in rules) and clean is not None:
            # accepted although hostile: exactly the protection of the clean rules
            assert_ok(ns.run("fw", "post", "one-91", "node1",
                             stdin=b64(vm_xml(91, [nic], extra=rules_xml(*clean)))))
            assert state(ns) == after
        assert_ok(ns.run("fw", "update_sg", "one-91", stdin=b64(vm_xml(91, [nic]))))
    else:
        assert state(ns) == before


ROUTED_VALUES = {
    "IP": maybe(st.sampled_from(["10.83.0.9", "10.83.0.10"])),
    "IP6": maybe(st.sampled_from(["fd83::9", "fe80::9"])),
    "IP6_GLOBAL": maybe(st.just("2001:db8:83::9")),
    "IP6_ULA": maybe(st.just("fd84::9")),
    "IP6_LINK": maybe(st.just("fe80::83:9")),
    "VROUTER_IP6": maybe(st.just("fd83::1")),
    "MAC": maybe(st.just("02:00:0a:53:00:09")),
    "FILTER_IP_SPOOFING": st.sampled_from(["YES", "NO"]),
    "FILTER_MAC_SPOOFING": st.sampled_from(["YES", "NO"]),
}
ROUTED_VALID = {"IP": st.just("10.83.0.9"), "IP6": st.just("fd83::9"),
                "IP6_GLOBAL": st.just("2001:db8:83::9"), "IP6_ULA": st.just("fd84::9"),
                "IP6_LINK": st.just("fe80::83:9"), "VROUTER_IP6": st.just("fd83::1"),
                "MAC": st.just("02:00:0a:53:00:09"),
                "FILTER_IP_SPOOFING": st.sampled_from(["YES", "NO"]),
                "FILTER_MAC_SPOOFING": st.sampled_from(["YES", "NO"])}
ROUTED_NIC = st.one_of(st.fixed_dictionaries({}, optional=ROUTED_VALUES),
                       one_hostile(ROUTED_VALID))


@FUZZ
@given(attrs=ROUTED_NIC, rules=st.one_of(st.lists(st.sampled_from(VALID_RULES), max_size=2),
                                          RULES))
def test_fuzzed_routed_addresses(ns, attrs, rules):
    """elastic's update_sg writes the NIC's addresses into routed jumps and sets (issue 23)."""
    def update_sg(attrs, rules):
        groups = ",".join(sorted({r["SECURITY_GROUP_ID"] for r in rules} | {"0"}))
        nic = dict({"NIC_ID": "0", "VN_MAD": "elastic", "BRIDGE": "fzel",
                    "TARGET": "one-93-0", "SECURITY_GROUPS": groups}, **attrs)
        return ns.run("elastic", "update_sg", "one-93",
                      stdin=b64(vm_xml(93, [nic], extra=rules_xml(*rules))))

    before = state(ns)
    names = [*ROUTED_VALUES, *RULE_NAMES]
    if not check_outcome(update_sg(attrs, rules), "update_sg", names):
        assert state(ns) == before
        return
    after = state(ns)
    clean, (_, clean_rules) = cleaned(attrs), rule_pairs(rules)
    hostile = is_hostile(attrs) or any(is_hostile(rule) for rule in rules)
    if hostile and clean is not None and clean_rules is not None:
        assert_ok(update_sg(clean, clean_rules))
        assert state(ns) == after


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
