"""The host's side: a VM's tap on br-int bound to its logical port, through ovs-vsctl.

libvirt's ``<virtualport type='openvswitch'/>`` plugs the tap into br-int with
an ``iface-id`` of its own (a random interface id); ovn-controller binds a tap
to the logical port its ``iface-id`` names, so ``post`` replaces it with the
port the front-end's ``pre`` made, then waits until ovn-controller has
installed the port's flows (``ovn-installed``): when ``post`` returns, traffic
flows. The host needs no NB access and no Python OVSDB library.
"""

import json

from vnmlib.errors import VnmError
from vnmlib.host import process, steps
from vnmlib.host.steps import Step
from vnmlib.ovn import names
from vnmlib.ovs import ovsdb
from vnmlib.ovs.tools import Transaction

DEFAULT_BIND_TIMEOUT = 10  # seconds; ovn-controller binds a port in well under one


def bind_timeout(conf):
    value = conf.get("ovn_bind_timeout", DEFAULT_BIND_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise VnmError(f"ovn_bind_timeout {value!r} in OpenNebulaNetwork.conf is not a number "
                       "of seconds in (0, 3600]")
    return value


class WaitInstalled(Step):
    """Wait (bounded) until ovn-controller has installed every port: the last step of
    ``post``, so that its return means traffic flows."""

    def __init__(self, taps, timeout):
        self.taps, self.timeout = taps, timeout

    def describe(self):
        ports = listed([port for _, _, port in self.taps])
        return f"ovn: wait up to {self.timeout:g} s for ovn-controller to install {ports}"

    def apply(self, nl):
        argv = [process.which("ovs-vsctl"), f"--timeout={self.timeout:g}"]
        for _, tap, _ in self.taps:
            argv += ["--", "wait-until", "Interface", tap, "external_ids:ovn-installed=true"]
        result = process.run(argv)
        if not result.ok:
            waiting = _not_installed(self.taps, self.timeout)
            ports = listed([f"{nic.label} ({port})" for nic, _, port in waiting])
            raise VnmError(f"{ports}: ovn-controller did not install the port within "
                           f"{self.timeout:g} s (ovn_bind_timeout; is ovn-controller running "
                           f"and this host joined to OVN? vnm ovn check)")


def listed(items, most=5):
    """``items`` for one log or error line: the first ``most``, then how many more."""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _not_installed(taps, timeout):
    """The taps ovn-controller has not installed yet (all of them if the database is gone)."""
    try:
        with ovsdb.Connection(timeout) as db:
            rows = db.select({"Interface": ["name", "external_ids"]})["Interface"]
    except VnmError:
        return taps
    installed = {r["name"] for r in rows if r["external_ids"].get("ovn-installed") == "true"}
    return [tap for tap in taps if tap[1] not in installed] or taps


def bind(vm, nics, timeout, log):
    """Each NIC's tap bound to its logical port; returns once all are installed.

    If the wait fails, the taps get their previous iface-id back: the host is
    left as it was.
    """
    if not nics:
        return
    taps = [(nic, vm.tap_name(nic), names.port(vm.id, nic.nic_id)) for nic in nics]
    with ovsdb.Connection(timeout) as db:
        present = {row["name"]: row["external_ids"]
                   for row in db.select({"Interface": ["name", "external_ids"]})["Interface"]}
    commands, undo = [], []
    for nic, tap, port in taps:
        if tap not in present:
            raise VnmError(f"{nic.label}: tap {tap} is not an Open vSwitch interface (the VM's "
                           "NIC must be on br-int, <virtualport type='openvswitch'/>)")
        # a stale ovn-installed (a port bound before) must not end the wait early
        commands += [["set", "Interface", tap, f"external_ids:iface-id={port}"],
                     ["remove", "Interface", tap, "external_ids", "ovn-installed"]]
        previous = present[tap].get("iface-id")
        # (quoted: the value is libvirt's, ovs-vsctl reads its JSON string syntax)
        undo.append(["set", "Interface", tap, f"external_ids:iface-id={json.dumps(previous)}"]
                    if previous else ["remove", "Interface", tap, "external_ids", "iface-id"])
    shown = listed([f"{tap} -> logical port {port}" for _, tap, port in taps])
    steps.apply([Transaction(commands, f"bind {shown} (external_ids:iface-id)", undo,
                             origin=taps[0][0].label),
                 WaitInstalled(taps, timeout)], log)
