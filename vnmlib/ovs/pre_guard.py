"""Security groups on Open vSwitch from ``pre``, before the VM's port exists (issue 21).

With ``:ovs_security_groups:`` a NIC's rules are flows on its OpenFlow port
(``in_port``; the conntrack zone is the port number), and in ``pre`` there is
no port: libvirt creates the tap and adds it when the VM starts. So ``pre``:

- creates the tap's Port/Interface row itself, marked as the NIC's, with
  ``ofport_request`` = a number no interface holds or asks for, at or above
  32768 (:data:`FIRST_PORT`): ovs-vswitchd never assigns those by itself. The
  row waits without a device; when the tap appears ovs-vswitchd opens it
  under that number;
- installs the NIC's real flows (anti-spoofing and security groups) on that
  number, in the NIC's cookie, so the VM's first frame meets its rules;
- and, as a fallback, drops what comes with the NIC's MAC from any other
  port (``dl_src``, priority :data:`FALLBACK`, below every port's own
  table-0 flows): libvirt re-adds the tap (``--if-exists del-port`` and
  ``add-port`` in one transaction, a new row without the request) and the
  number survives only if ovs-vswitchd had opened the tap before; if not,
  the port gets another number, and its frames are dropped rather than passed
  until ``post``. Traffic *to* the VM is dispatched by its MAC, so its
  inbound rules apply whatever the number. Frames with the MAC that come in
  by the bridge's uplink are exempt (:data:`EXEMPT`): on a migration's
  destination ``pre`` runs while the VM still runs on the source, and its
  frames reach this host's VMs over the uplink; they take the path any uplink
  frame takes (a protected VM's inbound rules, else ``normal``).

A NIC whose tap already is an OVS port is running (a repeated ``pre``): left
to ``post``. A tap device that exists outside Open vSwitch, or a vhost-user
port (``openvswitch_dpdk``, its port is :mod:`vnmlib.ovs.vhost_user`'s), is
not added here: such a NIC gets drops by MAC both ways (:data:`CLOSED`).

``post`` replaces the NIC's flows by cookie (:func:`vnmlib.ovs.flows.replace_lines`):
pre's flows and drops leave in the bundle the port's real flows arrive in.
``clean`` deletes them by cookie and the row as the NIC's port.
``:protect_in_pre: false`` leaves ``pre`` as the reference's (nothing until post).
"""

import re

from vnmlib.errors import InputError, VnmError
from vnmlib.host import port_owner
from vnmlib.model.config import protects_in_pre
from vnmlib.ovs import flows as ovs_flows, sg_flows, tools as ovs
from vnmlib.ovs.flow_plan import nic_port_flows
from vnmlib.ovs.vhost_user import uses_vhost_user

# OpenFlow port numbers pre reserves: ovs-vswitchd assigns only numbers below
# 32768 by itself (the upper half is left to controllers), up to OFPP_MAX
FIRST_PORT, LAST_PORT = 32768, 0xFF00 - 1
FALLBACK = 95  # below a port's table-0 flows (100, 110), above the inbound dispatch (90)
EXEMPT = 96  # the uplink's frames with the MAC, above the fallback
CLOSED = 120  # above every table-0 flow vnm writes


def guarded_nics(vm, driver, conf, uplinks):
    """The NICs ``pre`` protects: the driver's (only the hot-plugged one when attaching;
    none for an alias, whose parent's port has its flows) that enforce security groups.

    As the Linux drivers' ``pre``, a TARGET that is provably not the NIC's (the bridge,
    an uplink in ``uplinks``, a device no guest has, another NIC's ``one-<vm>-<nic>``)
    fails here, before anything changes: its row and flows would be that port's.
    """
    if not any(sg_flows.enabled(conf, nic) for nic in vm.driver_nics(driver)):
        return []  # every OVS pre by default: not even :protect_in_pre: is read
    if not protects_in_pre(conf):
        return []
    nics = [nic for nic in vm.scoped_nics(driver) if sg_flows.enabled(conf, nic)]
    for nic in nics:
        _mac(nic)
        port_owner.refuse_foreign_tap(vm, nic, vm.tap_name(nic), uplinks)
    return nics


def _mac(nic):
    mac = nic.get("MAC").lower()
    if not re.fullmatch(ovs_flows.MAC, mac):
        raise InputError(f"{nic.label}: MAC {nic.get('MAC')!r} is not a MAC address "
                         "(security groups on Open vSwitch need it)")
    return mac


def _reserved(state):
    """Port numbers an interface holds or asks for (on any bridge: the simplest safe set)."""
    taken = set()
    for entry in state.interfaces.values():
        taken.update(n for n in (entry.get("ofport"), entry.get("ofport_request"))
                     if isinstance(n, int))
    return taken


def _free_port(taken, nic):
    for number in range(FIRST_PORT, LAST_PORT + 1):
        if number not in taken:
            taken.add(number)
            return number
    raise VnmError(f"{nic.label}: no free OpenFlow port number from {FIRST_PORT} up")


def _uplink_exempt(mark, mac, uplink):
    """What a frame from ``uplink`` with ``mac`` gets without the fallback: table 0's
    dispatch to a protected VM's inbound tables (repeated in table 40, priority 90),
    else the bridge's ``normal``. The port by name: it exists when the bundle runs
    (pre's transaction made it), its number may not be known when planning."""
    port = f'in_port="{uplink}"'
    return [f"add {mark},table=0,{port},dl_src={mac},priority={EXEMPT},"
            f"actions=resubmit(,{sg_flows.DISPATCH})",
            f"add {mark},table={sg_flows.DISPATCH},{port},dl_src={mac},"
            f"priority={sg_flows.DROP},actions=normal"]


def plan_guards(view, vm, driver, conf, nics, uplinks):
    """Steps for ``pre``: one transaction with the NICs' port rows, then one bundle per
    bridge with their flows (the ports' own, the MAC fallbacks with their bridge's
    uplink, ``uplinks[bridge]``, exempt)."""
    if not nics:
        return []
    state = view.state
    groups = sg_flows.vm_groups(vm)  # a bad rule: InputError while planning, nothing changed
    taken = _reserved(state)
    commands, undo, rows = [], [], []
    by_bridge = {}
    for nic in nics:
        tap = vm.tap_name(nic)
        if state.bridge_of(tap) is not None:
            continue  # running, or another bridge's port, which post refuses
        mac, mark = _mac(nic), f"cookie={ovs_flows.cookie(nic):#x}"
        lines, shown = by_bridge.setdefault(nic.bridge, ([], []))
        if view.exists(tap) or uses_vhost_user(nic):
            lines.append(f"delete {mark}/-1")
            lines += [f"add {mark},table=0,{field}={mac},priority={CLOSED},actions=drop"
                      for field in ("dl_src", "dl_dst")]
            shown.append(f"{tap} (closed: frames from and to {mac} dropped)")
            continue
        port = _free_port(taken, nic)
        marks = [f"external_ids:{k}={v}" for k, v in port_owner.mark(nic).items()]
        commands += [["--may-exist", "add-port", nic.bridge, tap],
                     ["set", "Interface", tap, f"ofport_request={port}"],
                     ["set", "Port", tap, *marks]]
        undo.append(["--if-exists", "del-port", nic.bridge, tap])
        rows.append(f"{tap} on {nic.bridge} (OpenFlow port {port} when it appears)")
        flows = nic_port_flows(port, nic, vm, driver, conf, groups)
        lines += ovs_flows.replace_lines(port, nic, flows)
        lines.append(f"add {mark},table=0,dl_src={mac},priority={FALLBACK},actions=drop")
        if uplinks.get(nic.bridge):
            lines += _uplink_exempt(mark, mac, uplinks[nic.bridge])
        shown.append(f"{tap} (port {port}, {len(flows)} flows; from {mac} on another port "
                     "but the uplink: drop)")
    planned = []
    if commands:
        planned.append(ovs.Transaction(commands, f"port rows before their taps: "
                                                 f"{', '.join(rows)}", undo))
    return planned + [ovs.FlowBundle(bridge, lines, f"flows from pre of {', '.join(shown)} on "
                                                    f"{bridge}: {sg_flows.PIPELINE}")
                      for bridge, (lines, shown) in by_bridge.items()]
