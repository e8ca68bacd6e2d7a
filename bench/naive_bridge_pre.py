#!/usr/bin/env python3
"""Naive baseline for bench_bridge.py: bridge/pre in the reference's style.

The same work as vnm/bridge/pre (decode, parse with xml.etree, create the bridge,
enslave PHYDEV) but with one ``ip`` process per question and per change, as
the Ruby drivers do (``ip link show type bridge``, ``ip link show master``,
``ip link add``, ``ip link set``). Not a driver: only a yardstick.
"""
import base64
import subprocess
import sys

from xml.etree import ElementTree as etree

root = etree.fromstring(base64.b64decode(sys.stdin.buffer.read()))
for nic in root.iterfind("TEMPLATE/NIC[VN_MAD='bridge']"):
    bridge, phydev = nic.findtext("BRIDGE"), nic.findtext("PHYDEV")
    shown = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"],
                           capture_output=True, text=True, check=True).stdout
    if f": {bridge}:" not in shown:
        subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    ports = subprocess.run(["ip", "-o", "link", "show", "master", bridge],
                           capture_output=True, text=True, check=True).stdout
    if phydev and f": {phydev}" not in ports:
        subprocess.run(["ip", "link", "set", phydev, "master", bridge], check=True)
