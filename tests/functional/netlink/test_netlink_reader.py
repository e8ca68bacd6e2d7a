"""vnmlib.host.netlink.reader (stdlib rtnetlink) and Netlink.create_link against iproute2's view.

Runs in the test namespace with the interpreter the actions use (VNM_TEST_PYTHON),
so pyroute2 0.7 and 0.9 both create the devices the specs describe.
"""

import json

from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import PYTHON, REPO

PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from vnmlib.model import config
from vnmlib.host.netlink import Netlink, reader
from vnmlib.model.template import parse_vm
from vnmlib.linux.vlan_link import vxlan_spec
nic = parse_vm(sys.stdin.buffer.read()).nics[0]
spec = vxlan_spec(nic, dict(config.DEFAULTS), lambda: [])
nl = Netlink()
nl.create_link(spec)
nl.close()
out = {}
for name in ("uplink0.300", "uplink0", "brr", "nosuch"):
    link = reader.link(name)
    out[name] = None if link is None else {
        "index": link.index, "kind": link.kind, "mtu": link.mtu, "up": link.up,
        "lower": link.lower, "master": link.master, "data": link.data,
        "differences": spec.differences(link, reader.link("uplink0").index)}
out["addresses"] = reader.addresses(reader.link("uplink0").index)
print(json.dumps(out))
'''


def test_reader_agrees_with_ip_and_created_device_matches_its_spec(ns):
    ns.ip("link", "add", "brr", "type", "bridge")
    ns.ip("link", "set", "uplink0", "master", "brr")
    ns.ip("addr", "add", "192.0.2.9/24", "dev", "uplink0")
    ns.ip("addr", "add", "2001:db8::9/64", "dev", "uplink0", "nodad")
    nic = bridge_nic(1, 0, "onebr.300", "uplink0", VN_MAD="vxlan", VLAN_ID=300, MTU=1400,
                     IP_LINK_CONF="dstport=4789,nolearning,tos=5,udp6zerocsumtx")
    out = json.loads(ns.exec(PYTHON, "-c", PROBE, REPO, input=b64(vm_xml(1, [nic]))))
    ip = {link["ifname"]: link for link in json.loads(ns.ip("-d", "-j", "link", "show"))}
    made = out["uplink0.300"]
    assert made["differences"] == []  # what was created is what the spec asks for
    info = ip["uplink0.300"]["linkinfo"]["info_data"]
    assert made["kind"] == ip["uplink0.300"]["linkinfo"]["info_kind"] == "vxlan"
    assert made["mtu"] == ip["uplink0.300"]["mtu"] == 1400
    assert made["data"]["id"] == info["id"] == 300
    assert made["data"]["group"] == info["group"] == "239.0.1.44"
    assert made["data"]["port"] == info["port"] == 4789
    assert made["data"]["ttl"] == info["ttl"] == 16
    assert made["data"]["learning"] == int(info["learning"]) == 0
    assert made["data"]["tos"] == int(info["tos"], 16) == 5
    assert made["data"]["udp_zero_csum6_tx"] == int(info["udp_zero_csum6_tx"]) == 1
    assert made["data"]["link"] == ip["uplink0"]["ifindex"]
    assert out["uplink0"]["kind"] == ip["uplink0"]["linkinfo"]["info_kind"] == "veth"
    assert out["uplink0"]["master"] == ip["brr"]["ifindex"]
    assert out["brr"]["kind"] == "bridge" and out["brr"]["up"] is False
    assert out["nosuch"] is None
    addresses = {a["local"] for a in json.loads(ns.ip("-j", "addr", "show", "dev", "uplink0"))[0]
                 ["addr_info"]}
    assert {a[1] for a in out["addresses"]} == addresses  # incl. the fe80:: the kernel added
