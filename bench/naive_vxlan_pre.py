#!/usr/bin/env python3
"""Naive baseline for bench_vxlan.py: vxlan/pre in the reference's style (§2.5).

The same work as vnm/vxlan/pre for a multicast VXLAN network (decode, parse
with xml.etree, create the bridge and the vxlan device, enslave it) with one ``ip``
process per question and per change, as the Ruby drivers do. Not a driver.
"""
import base64
import ipaddress
import subprocess
import sys

from xml.etree import ElementTree as etree


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


root = etree.fromstring(base64.b64decode(sys.stdin.buffer.read()))
for nic in root.iterfind("TEMPLATE/NIC[VN_MAD='vxlan']"):
    bridge, phydev, vni = nic.findtext("BRIDGE"), nic.findtext("PHYDEV"), nic.findtext("VLAN_ID")
    device = f"{phydev}.{vni}"
    if f": {bridge}:" not in ip("-o", "link", "show", "type", "bridge"):
        ip("link", "add", "name", bridge, "type", "bridge")
        ip("link", "set", bridge, "up")
    ports = ip("-o", "link", "show", "master", bridge)
    for port in [line.split(": ")[1].split("@")[0] for line in ports.splitlines()]:
        ip("-d", "link", "show", port)  # the reference's validate_vlan_id looks at each port
    if f": {device}" not in ports:
        group = str(ipaddress.ip_address("239.0.0.0") + int(vni))
        ip("link", "add", device, "mtu", nic.findtext("MTU") or "1500", "type", "vxlan", "id", vni,
           "group", group, "ttl", "16", "dev", phydev)
        ip("link", "set", device, "up")
        ip("link", "set", device, "master", bridge)
