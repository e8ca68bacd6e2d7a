"""Hostile attribute values, every driver: one ERROR line, nothing changed (issue 23).

Every value a user writes into a VM, NIC, alias or security-group rule gets
the payloads that once reached a restore, ipset or OpenFlow script or a chain
name: a newline (a second script line), an IPv6 scope id (``%``: Python's
ipaddress accepts any text after it and gives it back in ``str()``),
non-ASCII digits (which ``int()`` and ``\\d`` accept), a NUL and an
over-long value. On top of a VM the action accepts, each payload must fail
the action with exactly one ERROR line naming the element and the attribute
(a NUL cannot be in an XML document at all: that line names the XML), and
leave the namespace exactly as it was: links, addresses, routes, proxy ARP,
every iptables/ip6tables table, ipsets, Open vSwitch, vnm's records.
"""

import base64
import json
import os
import re

import pytest

from support.assertions import assert_ok
from support.oned_input import b64, rules_xml, vm_xml
from support.remotes import copy_tree

VM_ID = 70
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _other_digits(value):
    return value.translate(ARABIC_INDIC) if re.search("[0-9]", value) else value + "١"


PAYLOADS = {
    "newline": lambda v: f"{v}\n-I FORWARD 1 -j ACCEPT",
    "scope": lambda v: f"{v}%lo",
    "non-ASCII digits": _other_digits,
    "NUL": lambda v: f"{v}\x00",
    "over-long": lambda v: v + "9" * 5000,
}

# -- the VM every case starts from: valid, and accepted by each driver's action ---------

ADDRESSES = {"IP": "10.70.0.10", "VROUTER_IP": "10.70.0.1", "GATEWAY": "10.70.0.254",
             "EXTERNAL_IP": "198.51.100.70", "IP6": "fd70::10",
             "IP6_GLOBAL": "2001:db8:70::10", "IP6_ULA": "fd71::10", "IP6_LINK": "fe80::70:10",
             "VROUTER_IP6": "fd70::1", "VROUTER_IP6_GLOBAL": "2001:db8:70::1",
             "VROUTER_IP6_ULA": "fd71::1", "VROUTER_IP6_LINK": "fe80::70:1"}
ALIAS_ADDRESSES = {"IP": "10.70.0.11", "IP6": "fd70::11", "IP6_GLOBAL": "2001:db8:70::11",
                   "EXTERNAL_IP": "198.51.100.71", "GATEWAY": "10.70.0.254"}
RULES = (
    {"PROTOCOL": "TCP", "RULE_TYPE": "INBOUND", "RANGE": "22,80:90", "SECURITY_GROUP_ID": "100"},
    {"PROTOCOL": "ICMP", "RULE_TYPE": "INBOUND", "ICMP_TYPE": "8", "SECURITY_GROUP_ID": "100"},
    {"PROTOCOL": "ICMPV6", "RULE_TYPE": "INBOUND", "ICMPV6_TYPE": "128",
     "SECURITY_GROUP_ID": "100"},
    {"PROTOCOL": "ALL", "RULE_TYPE": "INBOUND", "IP": "10.71.0.0", "SIZE": "256",
     "SECURITY_GROUP_ID": "100"},
    {"PROTOCOL": "UDP", "RULE_TYPE": "OUTBOUND", "RANGE": "53", "IP6": "fd72::", "SIZE": "256",
     "SECURITY_GROUP_ID": "100"},
    {"PROTOCOL": "ALL", "RULE_TYPE": "OUTBOUND", "IP6_GLOBAL": "2001:db8:72::", "SIZE": "16",
     "SECURITY_GROUP_ID": "100"},
    {"PROTOCOL": "TCP", "RULE_TYPE": "OUTBOUND", "IP6_ULA": "fd73::", "SIZE": "16",
     "RANGE": "443", "SECURITY_GROUP_ID": "100"},
)


class Vm:
    """One VM of VM_ID: a NIC, its alias, the security group's rules; ``with_`` varies one value."""

    def __init__(self, driver, nic, alias=None, rules=RULES):
        self.driver = driver
        self.nic = dict({"NIC_ID": "0", "VN_MAD": driver, "TARGET": f"one-{VM_ID}-0",
                         "MAC": "02:00:0a:46:00:00"}, **nic)
        self.alias = None if alias is None else dict(
            {"_tag": "NIC_ALIAS", "NIC_ID": "1", "PARENT_ID": "0", "PARENT": "NIC0",
             "VN_MAD": driver, "MAC": "02:00:0a:46:00:01"}, **alias)
        self.rules = [dict(rule) for rule in rules]

    def xml(self, vm_id=VM_ID, nic=None, alias=None, rules=None):
        elements = [nic or self.nic] + ([alias or self.alias] if self.alias else [])
        return vm_xml(vm_id, elements, extra=rules_xml(*(rules or self.rules)))

    def stdin(self):
        return b64(self.xml())

    def with_(self, where, name, value):
        """base64 of the VM with ``name`` of ``where`` (VM, NIC, NIC_ALIAS, RULE <n>) = value."""
        if where == "VM":
            xml = self.xml().replace(f"<ID>{VM_ID}</ID>", f"<ID><![CDATA[{value}]]></ID>", 1)
        elif where.startswith("RULE"):
            rules = [dict(r) for r in self.rules]
            rules[int(where.split()[1]) - 1][name] = value
            xml = self.xml(rules=rules)
        else:
            element = dict(self.nic if where == "NIC" else self.alias, **{name: value})
            xml = self.xml(**{"nic" if where == "NIC" else "alias": element})
        return base64.b64encode(xml.encode("utf-8"))

    def cases(self, where, names):
        """(where, name, good value) of ``names``; a rule field in the first rule that has it."""
        if where == "RULE":
            return [(f"RULE {next(i for i, r in enumerate(self.rules, 1) if name in r)}", name,
                     next(r[name] for r in self.rules if name in r)) for name in names]
        base = {"VM": {"ID": str(VM_ID)}, "NIC": self.nic, "NIC_ALIAS": self.alias}[where]
        return [(where, name, base.get(name) or GOOD_DEFAULTS[name]) for name in names]


# values for attributes a case sets although the base VM leaves them out
GOOD_DEFAULTS = {"VLAN_TAGGED_ID": "20-22", "CVLANS": "30", "MTU": "1500"}

NIC_COMMON = ("NIC_ID", "MAC", "TARGET", *ADDRESSES)
ALIAS_COMMON = ("NIC_ID", "PARENT_ID", "MAC", *ALIAS_ADDRESSES)
RULE_FIELDS = ("SECURITY_GROUP_ID", "PROTOCOL", "RULE_TYPE", "RANGE", "ICMP_TYPE",
               "ICMPV6_TYPE", "IP", "IP6", "IP6_GLOBAL", "IP6_ULA", "SIZE")


def label_of(where, name):
    """What the ERROR line must name: the element and the attribute."""
    if where == "VM":
        return ["VM ID"]
    if where.startswith("RULE"):
        return [f"SECURITY_GROUP_{where}", name]
    return [where, name]


# -- reading the whole namespace (independently of vnmlib) ---------------------------

def _json(ns, *args):
    return json.loads(ns.ip("-j", *args) or "[]")


def snapshot(ns, ovs=None):
    """Everything an action could change, in comparable form."""
    links = sorted((l["ifname"], l.get("master"), l.get("linkinfo", {}).get("info_kind"),
                    "UP" in l["flags"], l["mtu"], l.get("address"))
                   for l in _json(ns, "-d", "link", "show"))
    # IPv6 link-local addresses (and their routes) come and go with carrier, by
    # themselves; vnm never sets any
    addresses = sorted((l["ifname"], a["family"], a["local"], a["prefixlen"])
                       for l in _json(ns, "addr", "show") for a in l.get("addr_info", [])
                       if not a["local"].startswith("fe80:"))
    routes = sorted(json.dumps(r, sort_keys=True) for family in ("-4", "-6")
                    for r in _json(ns, family, "route", "show", "table", "all")
                    if not r["dst"].startswith(("fe80:", "ff00:")))
    proxies = sorted(json.dumps(n, sort_keys=True) for n in _json(ns, "neigh", "show", "proxy"))
    tables = [re.sub(r"\[\d+:\d+\]", "", line) for tool in ("iptables-save", "ip6tables-save")
              for line in ns.exec(tool).splitlines() if not line.startswith("#")]
    sets = sorted(ns.exec("ipset", "save").splitlines())
    records = sorted((os.path.relpath(os.path.join(d, f), ns.run_dir))
                     for d, _, files in os.walk(ns.run_dir) for f in files
                     if "locks" not in os.path.relpath(d, ns.run_dir).split(os.sep))
    state = [links, addresses, routes, proxies, tables, sets, records]
    if ovs is not None:
        for table, columns in (("Bridge", "name,ports,other_config,external_ids"),
                               ("Port", "name,tag,trunks,vlan_mode,cvlans,other_config,"
                                        "external_ids"),
                               ("Interface", "name,type,mtu_request,external_ids")):
            rows = json.loads(ovs.vsctl("--format=json", "--data=json", f"--columns={columns}",
                                        "list", table))["data"]
            state.append(sorted(json.dumps(row) for row in rows))
        state += [ovs.flows(bridge) for bridge in sorted(ovs.bridges())]
    return state


def check_refusals(run, vm, cases, before, after):
    """Every (where, name, good value) x payload: refused with one line, nothing changed."""
    for index, (where, name, good) in enumerate(cases):
        for payload, make in PAYLOADS.items():
            if payload == "NUL" and index:
                continue  # refused with the whole document, whichever attribute holds it
            done = run(vm.with_(where, name, make(good)))
            err = done.stderr.decode(errors="replace")
            errors = [line for line in err.split("\n") if line.startswith("ERROR:")]
            what = f"{where} {name} {payload}: {err}"
            assert done.returncode != 0, what
            assert len(errors) == 1 and "Traceback" not in err, what
            needles = ["XML"] if payload == "NUL" else label_of(where, name)
            assert all(needle in errors[0] for needle in needles), what
        assert after() == before, f"{where} {name} changed the host"


# -- the drivers ------------------------------------------------------------------

FW_NIC = dict(ADDRESSES, BRIDGE="hbr70", FILTER_IP_SPOOFING="YES", FILTER_MAC_SPOOFING="YES",
              SECURITY_GROUPS="100")


def protected(ns, driver, vm, *args):
    """The tap, then ``post``: a VM the hostile cases would change if they got through."""
    ns.ip("link", "add", "hbr70", "type", "bridge")
    ns.ip("link", "set", "hbr70", "up")
    ns.add_tap(f"one-{VM_ID}-0", "hbr70")
    assert_ok(ns.run(driver, "post", *args, stdin=vm.stdin()))
    assert f"one-{VM_ID}-0-i" in ns.exec("iptables-save")


def test_bridge_pre(ns):
    vm = Vm("bridge", dict(ADDRESSES, BRIDGE="hbr70", PHYDEV="uplink0"), ALIAS_ADDRESSES)
    assert_ok(ns.run("bridge", "pre", stdin=vm.stdin()))
    cases = (vm.cases("VM", ["ID"]) + vm.cases("NIC", NIC_COMMON + ("BRIDGE", "PHYDEV"))
             + vm.cases("NIC_ALIAS", ALIAS_COMMON))
    check_refusals(lambda stdin: ns.run("bridge", "pre", stdin=stdin), vm, cases,
                   snapshot(ns), lambda: snapshot(ns))


def test_bridge_post_trunks(ns):
    vm = Vm("bridge", dict(BRIDGE="hbr70"))
    assert_ok(ns.run("bridge", "pre", stdin=vm.stdin()))
    ns.add_tap(f"one-{VM_ID}-0", "hbr70")
    assert_ok(ns.run("bridge", "post", "one-70", "h", stdin=vm.stdin()))
    check_refusals(lambda stdin: ns.run("bridge", "post", "one-70", "h", stdin=stdin), vm,
                   vm.cases("NIC", ["VLAN_TAGGED_ID"]), snapshot(ns), lambda: snapshot(ns))


@pytest.mark.parametrize("driver, action", [("fw", "post"), ("fw", "update_sg"),
                                            ("802.1Q", "post"), ("vxlan", "update_sg")])
def test_security_group_drivers(ns, driver, action):
    """fw, and 802.1Q / vxlan where no VLAN device is needed (the host lacks 8021q).

    The three share the firewall engine: fw runs both actions and every rule field,
    the others one action each with their NICs' attributes.
    """
    extra = dict(PHYDEV="uplink0", VLAN_ID="70") if driver != "fw" else {}
    vm = Vm(driver, dict(FW_NIC, **extra), ALIAS_ADDRESSES)
    protected(ns, driver, vm, "one-70", "h")
    names = NIC_COMMON + ("SECURITY_GROUPS",)
    if driver == "802.1Q" and action == "post":
        names += ("CVLANS", "VLAN_TAGGED_ID")  # the VLAN filters are read before any change
    cases = (vm.cases("VM", ["ID"]) + vm.cases("NIC", names)
             + vm.cases("NIC_ALIAS", ALIAS_COMMON)
             + vm.cases("RULE", RULE_FIELDS if driver == "fw" else ("IP6", "SIZE")))
    args = ("one-70", "h") if action == "post" else ("one-70",)
    check_refusals(lambda stdin: ns.run(driver, action, *args, stdin=stdin), vm, cases,
                   snapshot(ns), lambda: snapshot(ns))


def test_vxlan_pre(ns):
    vm = Vm("vxlan", dict(ADDRESSES, BRIDGE="hbr70", PHYDEV="uplink0", VLAN_ID="70",
                          MTU="1400"))
    assert_ok(ns.run("vxlan", "pre", stdin=vm.stdin()))
    cases = vm.cases("NIC", ("BRIDGE", "PHYDEV", "VLAN_ID", "MTU"))
    check_refusals(lambda stdin: ns.run("vxlan", "pre", stdin=stdin), vm, cases,
                   snapshot(ns), lambda: snapshot(ns))


@pytest.fixture
def ovs_host(tmp_path):
    from support.ovs import OvsHost

    host = OvsHost(tmp_path / "ovs-host")
    yield host
    host.delete()


def test_ovswitch_post(ovs_host):
    host = ovs_host
    vm = Vm("ovswitch", dict(ADDRESSES, BRIDGE="ovsh70", BRIDGE_TYPE="openvswitch",
                             VLAN_ID="70", FILTER_IP_SPOOFING="YES", FILTER_MAC_SPOOFING="YES"),
            ALIAS_ADDRESSES)
    assert_ok(host.run("ovswitch", "pre", stdin=vm.stdin()))
    host.plug("ovsh70", f"one-{VM_ID}-0")
    assert_ok(host.run("ovswitch", "post", "one-70", "h", stdin=vm.stdin()))
    cases = (vm.cases("VM", ["ID"])
             + vm.cases("NIC", NIC_COMMON + ("VLAN_ID", "VLAN_TAGGED_ID", "CVLANS", "MTU"))
             + vm.cases("NIC_ALIAS", ALIAS_COMMON))
    check_refusals(lambda stdin: host.run("ovswitch", "post", "one-70", "h", stdin=stdin), vm,
                   cases, snapshot(host.ns, host.ovs), lambda: snapshot(host.ns, host.ovs))


@pytest.fixture
def elastic_tree(tmp_path):
    tree = copy_tree(tmp_path / "remotes")
    path = os.path.join(os.path.dirname(tree), "etc", "vnm", "elastic.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("providers: {p: {driver: dummy}}\ndefault: p\n")
    os.chmod(path, 0o600)
    return tree


def elastic_vm():
    return Vm("elastic", dict(FW_NIC, BRIDGE="hbr70"), dict(ALIAS_ADDRESSES, BRIDGE="hbr70"))


@pytest.mark.parametrize("action", ["remote_post", "update_sg"])
def test_elastic_routed(ns, elastic_tree, action):
    vm = elastic_vm()
    args = ("one-70", "h") if action == "remote_post" else ("one-70",)
    assert_ok(ns.run("elastic", "pre", stdin=vm.stdin(), tree=elastic_tree))
    ns.add_tap(f"one-{VM_ID}-0", "hbr70")
    assert_ok(ns.run("elastic", "remote_post", "one-70", "h", stdin=vm.stdin(),
                     tree=elastic_tree))
    rules = RULE_FIELDS if action == "update_sg" else ("IP6", "SIZE")
    cases = (vm.cases("VM", ["ID"]) + vm.cases("NIC", NIC_COMMON + ("SECURITY_GROUPS",))
             + vm.cases("NIC_ALIAS", ALIAS_COMMON) + vm.cases("RULE", rules))
    check_refusals(lambda stdin: ns.run("elastic", action, *args, stdin=stdin,
                                        tree=elastic_tree),
                   vm, cases, snapshot(ns), lambda: snapshot(ns))


def test_the_reported_ip6_injection_is_refused(ns, elastic_tree):
    """Issue 23's exploit: a routed update_sg whose IP6 carries a scope id, a newline and
    a rule, made a valid script so that only the scope check stands in its way (without
    FILTER_IP_SPOOFING, as reported: with it, ipset failed on the address first)."""
    vm = elastic_vm()
    del vm.nic["FILTER_IP_SPOOFING"]
    assert_ok(ns.run("elastic", "pre", stdin=vm.stdin(), tree=elastic_tree))
    ns.add_tap(f"one-{VM_ID}-0", "hbr70")
    assert_ok(ns.run("elastic", "update_sg", "one-70", stdin=vm.stdin(), tree=elastic_tree))
    before = snapshot(ns)
    hostile = "fe80::1%lo\n-I FORWARD 1 -j ACCEPT\n-A opennebula -d ::2"
    done = ns.run("elastic", "update_sg", "one-70", stdin=vm.with_("NIC", "IP6", hostile),
                  tree=elastic_tree)
    errors = [line for line in done.stderr.decode().split("\n") if line.startswith("ERROR:")]
    assert done.returncode == 1
    assert len(errors) == 1 and "NIC 0: IP6" in errors[0] and "scope" in errors[0], errors
    assert "-A FORWARD -j ACCEPT" not in ns.exec("ip6tables-save")
    assert snapshot(ns) == before


def test_too_long_vm_id_names_the_attribute_not_iptables_usage(ns):
    """VM IDs beyond 32 bits made chain names iptables refused with its usage text."""
    vm = Vm("fw", FW_NIC)
    protected(ns, "fw", vm, "one-70", "h")
    before = snapshot(ns)
    for vm_id in ("4294967296", "12345678901234567890123"):
        xml = vm.xml(vm_id=vm_id, nic=dict(vm.nic, TARGET="one-70-0"))
        done = ns.run("fw", "update_sg", f"one-{vm_id}", stdin=b64(xml))
        err = done.stderr.decode()
        [error] = [line for line in err.split("\n") if line.startswith("ERROR:")]
        assert done.returncode == 1 and "VM ID" in error and "iptables" not in err, err
    assert snapshot(ns) == before
