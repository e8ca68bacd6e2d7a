"""Whose port a NIC's tap name is: vnm changes and removes only ports that are provably the NIC's.

The tap's name comes from the NIC's ``TARGET``, an attribute oned lets the
VM's owner write (issue 23.4). A NIC naming another VM's tap or the bridge's
uplink must not put its VLANs, flows or filters on that port, nor remove it
on ``clean``. What tells whose a port is, strongest first:

- vnm's mark, written by ``post`` (Open vSwitch: the Port's ``external_ids``
  ``vnm-vm`` / ``vnm-nic``, :func:`mark`);
- what a VM's port cannot be: the network's uplink, the bridge's own port, a
  hardware NIC, a device of a kind (bridge, bond, vlan, vxlan…): a hypervisor
  gives a guest a tun or a veth (:func:`not_a_guest_device`);
- the hypervisor's word: libvirt writes the guest's MAC into the OVS
  Interface's ``external_ids:attached-mac``, and gives a tap it creates the
  guest's MAC with the first byte ``fe`` (so that a bridge never takes the
  guest's address as its own): :func:`other_guests_tap`;
- the name: ``one-<vm>-<nic>`` is what oned calls the NIC when TARGET says
  nothing else, and LXC's ``<deploy id>-<nic>`` is not taken from TARGET
  (:func:`default_name`).
"""

import os
import re

from vnmlib.host import sysfs
from vnmlib.errors import VnmError

MARK_VM = "vnm-vm"
MARK_NIC = "vnm-nic"
# the first MAC byte libvirt gives a tap it creates (virNetDevTapCreateInBridgePort)
LIBVIRT_TAP_BYTE = "fe"
# Open vSwitch Interface types a hypervisor gives a guest: a kernel tap or veth
# ("", system, tap) or, on the userspace datapath (openvswitch_dpdk), a vhost-user socket
GUEST_INTERFACE_TYPES = ("", "system", "tap", "dpdkvhostuser", "dpdkvhostuserclient")


def mark(nic):
    """The ``external_ids`` naming ``nic`` as a port's owner."""
    return {MARK_VM: str(nic.vm_id), MARK_NIC: str(nic.nic_id)}


def marked(external_ids):
    """(vm, nic) a port was marked for by :func:`mark`, or None (unmarked)."""
    vm_id, nic_id = external_ids.get(MARK_VM, ""), external_ids.get(MARK_NIC, "")
    if not (re.fullmatch(r"[0-9]{1,10}", vm_id) and re.fullmatch(r"[0-9]{1,5}", nic_id)):
        return None
    return int(vm_id), int(nic_id)


def owner_text(owner):
    return f"VM {owner[0]} NIC {owner[1]}"


def default_name(vm, nic, tap):
    """Whether ``tap`` is the name this NIC has without a TARGET of the user's choice."""
    return tap == f"one-{vm.id}-{nic.nic_id}" or (vm.vm_mad == "lxc" and bool(vm.deploy_id))


def same_mac(one, other):
    return one.strip().lower() == other.strip().lower()


def not_a_guest_device(name):
    """Why the kernel link ``name`` cannot be a VM's tap, or None (tun, veth, or no such link)."""
    if os.path.exists(f"{sysfs.SYS_NET}/{name}/device"):
        return "a hardware network device"
    kind = sysfs.link_kind(name)  # tun and veth have no DEVTYPE
    return f"a {kind} device" if kind else None


def other_guests_tap(name, nic):
    """Why ``name`` is provably another guest's tap by its MAC, or None.

    Only a tun device whose MAC starts with libvirt's ``fe`` tells: libvirt made
    it for the guest MAC ``xx:<the other five bytes>``. A veth's or another
    tool's tap MAC says nothing.
    """
    mac = (nic.get("MAC") or "").lower()
    if not os.path.exists(f"{sysfs.SYS_NET}/{name}/tun_flags") or len(mac) != 17:
        return None
    try:
        with open(f"{sysfs.SYS_NET}/{name}/address", encoding="ascii") as handle:
            address = handle.read().strip().lower()
    except OSError:
        return None
    if address.startswith(f"{LIBVIRT_TAP_BYTE}:") and address[2:] != mac[2:]:
        return f"its MAC {address} is libvirt's tap of another guest MAC (not {mac})"
    return None


# -- kernel taps (Linux-bridge drivers) ------------------------------------------------

def foreign_tap(vm, nic, tap, uplinks=()):
    """Why the link ``tap`` is provably not ``nic``'s tap (a phrase), or None.

    The Linux-bridge drivers have no mark to read on a tap. What proves it is
    another's: it is the NIC's bridge or one of its uplinks (PHYDEV, the VLAN
    or VXLAN device: ``uplinks``), a device no guest has, libvirt's tap of
    another guest MAC, or the name oned gives another NIC's tap. A tap none of
    these catches (a veth, a tun another tool made, a name of the user's
    choice) cannot be told from the NIC's own.
    """
    if tap == nic.bridge:
        return f"is the bridge {tap}"
    if tap == nic.phydev or tap in uplinks:
        return f"is the uplink of bridge {nic.bridge}"
    device = not_a_guest_device(tap)
    if device:
        return f"is {device}, not a VM's tap"
    other = other_guests_tap(tap, nic)
    if other:
        return other
    named = re.fullmatch(r"one-([0-9]+)-([0-9]+)", tap)
    if named and (int(named.group(1)), int(named.group(2))) != (vm.id, nic.nic_id):
        return f"is the name of {owner_text((int(named.group(1)), int(named.group(2))))}'s tap"
    return None


def target_text(vm, nic, tap):
    """How a message names the tap: by the attribute it came from."""
    return f"TARGET {tap}" if vm.vm_mad != "lxc" and nic.get("TARGET") == tap else f"tap {tap}"


def refuse_foreign_tap(vm, nic, tap, uplinks=()):
    """``post``: one error when ``tap`` is provably not the NIC's; nothing is changed yet."""
    foreign = foreign_tap(vm, nic, tap, uplinks)
    if foreign:
        raise VnmError(f"{nic.label}: {target_text(vm, nic, tap)} {foreign}: "
                       "refusing to configure it")


def own_tap(vm, nic, tap, log, uplinks=()):
    """``update_nic``: whether to change ``tap``; a WARN line when it is provably not the NIC's."""
    foreign = foreign_tap(vm, nic, tap, uplinks)
    if foreign:
        log.warning(f"{nic.label}: {target_text(vm, nic, tap)} {foreign}: left as it is")
    return foreign is None
