"""Whose Open vSwitch port a tap is: only a port provably the NIC's is touched (issue 23.4).

The tap's name is the NIC's ``TARGET``, which the VM's owner may write. ``post``
refuses to configure a port that is not provably the NIC's
(:func:`require_port`); ``clean`` and ``update_nic`` leave it alone with a WARN
line (:func:`owned_taps`).
"""

from vnmlib.errors import VnmError
from vnmlib.host import port_owner


def foreign_port(state, vm, need, tap):
    """Why the port ``tap`` is not provably ``need``'s NIC's (a phrase); None when it is.

    Never the uplink or the bridge's own port. A port vnm marked answers by
    its mark. An unmarked port (a VM deployed by the reference or an older
    vnm; or between the hypervisor's add-port and the first ``post``) must
    not be what no guest is (an OVS internal/patch/tunnel interface, a
    hardware NIC, a bridge, bond, vlan or vxlan device), and is the NIC's when
    libvirt's ``attached-mac`` is the NIC's MAC or, where the hypervisor
    wrote none, when it carries the NIC's own name (``one-<vm>-<nic>``) and
    its MAC does not show it as another guest's tap (:mod:`vnmlib.host.port_owner`).
    """
    nic = need.nic
    if tap == need.uplink:
        return f"is the uplink of Open vSwitch bridge {need.bridge}"
    if tap == need.bridge:
        return f"is the own port of Open vSwitch bridge {need.bridge}"
    owner = port_owner.marked((state.ports.get(tap) or {}).get("external_ids") or {})
    if owner is not None:
        if owner == (nic.vm_id, nic.nic_id):
            return None
        return f"is the Open vSwitch port of {port_owner.owner_text(owner)}"
    interface = state.interfaces.get(tap) or {}
    kind = interface.get("type") or ""
    if kind not in port_owner.GUEST_INTERFACE_TYPES:
        return f"is an Open vSwitch {kind} interface, not a VM's tap"
    device = port_owner.not_a_guest_device(tap)
    if device:
        return f"is {device}, not a VM's tap"
    attached = (interface.get("external_ids") or {}).get("attached-mac")
    if attached:
        if port_owner.same_mac(attached, nic.get("MAC") or ""):
            return None
        return (f"is the port of the guest MAC {attached} (its attached-mac), not of this NIC's "
                f"MAC {nic.get('MAC') or '(none)'}")
    other = port_owner.other_guests_tap(tap, nic)
    if other:
        return other
    if port_owner.default_name(vm, nic, tap):
        return None
    return ("has neither vnm's mark nor an attached-mac: nothing shows it is this NIC's "
            "Open vSwitch port")


def require_port(state, vm, need):
    """The NIC's tap and its OpenFlow port number; the hypervisor must have added it,
    and it must be provably this NIC's (:func:`foreign_port`)."""
    nic = need.nic
    tap = vm.tap_name(nic)
    bridge = state.bridge_of(tap)
    if bridge is None:
        raise VnmError(f"{nic.label}: tap {tap} is not a port of any Open vSwitch bridge; "
                       f"post runs after the hypervisor has added it to {nic.bridge}")
    if bridge != nic.bridge:
        raise VnmError(f"{nic.label}: tap {tap} is a port of {bridge}, not of {nic.bridge}")
    ofport = state.ofport(tap)
    if not isinstance(ofport, int) or ofport <= 0:
        error = (state.interfaces.get(tap) or {}).get("error") or "no OpenFlow port number"
        raise VnmError(f"{nic.label}: Open vSwitch cannot use tap {tap}: {error}")
    foreign = foreign_port(state, vm, need, tap)
    if foreign:
        raise VnmError(f"{nic.label}: {port_owner.target_text(vm, nic, tap)} {foreign}: "
                       "refusing to configure it")
    return tap, ofport


def owned_taps(state, vm, needs, log):
    """The taps of ``needs`` that are ports of their bridge and provably their NIC's.

    For a port that is not (:func:`foreign_port`: the uplink, another VM's
    port…) one WARN line: it stays as it is, with its flows.
    """
    owned = set()
    for need in needs:
        tap = vm.tap_name(need.nic)
        if state.bridge_of(tap) != need.bridge:
            continue
        foreign = foreign_port(state, vm, need, tap)
        if foreign:
            log.warning(f"{need.nic.label}: {port_owner.target_text(vm, need.nic, tap)} "
                        f"{foreign}: left as it is")
        else:
            owned.add(tap)
    return owned
