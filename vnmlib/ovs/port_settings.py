"""A VM port's VLAN and MTU settings and vnm's mark on it: wanted columns, commands, plan.

``post`` and ``update_nic`` both give a NIC's tap the whole wanted state
(:func:`port_columns`) in one ovs-vsctl transaction (:func:`plan_port_settings`).
"""

from vnmlib.errors import InputError
from vnmlib.host import port_owner
from vnmlib.linux import vlan_link
from vnmlib.model.naming import parse_vlan_ranges
from vnmlib.ovs import tools as ovs
from vnmlib.ovs.port_ownership import require_port

QINQ_TYPES = ("802.1q", "802.1ad")
UNTAGGED = 0  # the VLAN of frames without an 802.1Q header, for OVS's normal switching
VLAN_RANGE = (1, 4094)  # 0 and 4095 are reserved by 802.1Q; OVS refuses a tag above 4095
# what update_nic re-applies to the NICs' ports when VNET_UPDATE names one of them
PORT_KEYS = {"VLAN_ID", "VLAN_TAGGED_ID", "CVLANS", "QINQ_TYPE", "MTU"}


def port_columns(nic):
    """(Interface columns, Port columns, Port other_config keys to drop) a NIC's tap needs.

    The whole wanted state, so ``post`` and ``update_nic`` share it:

    - CVLANS: QinQ, ``dot1q-tunnel`` with VLAN_ID as the S-VLAN and the listed
      C-VLANs, outer tag type QINQ_TYPE (default 802.1q);
    - VLAN_ID: the port's untagged VLAN (``native-untagged``), plus the
      VLAN_TAGGED_ID trunks. Without trunks the port trunks only its own VLAN:
      the reference left ``trunks`` empty, which in OVS means *every* VLAN, so
      its VM could send tagged frames into any other network on the bridge;
    - neither: ``trunk`` mode with the VLAN_TAGGED_ID trunks; without them
      only VLAN 0, the untagged frames (``trunks=0``). The reference left
      ``trunks`` empty, every VLAN: its VM sent and received the frames of
      every VLAN network sharing the bridge. OVS puts an untagged frame that
      enters a trunk port in VLAN 0, drops a frame tagged with a VLAN the
      port does not trunk, and sends out of it only its VLANs' frames, those
      of VLAN 0 untagged (ovs-vswitchd.conf.db(5), Port "VLAN Configuration").
    """
    label = nic.label
    vlan_id = nic.int_attr("VLAN_ID", *VLAN_RANGE, required=False)
    trunks = nic.tagged_vlans()
    qinq_type = nic.get("QINQ_TYPE", "802.1q").lower()
    if qinq_type not in QINQ_TYPES:
        raise InputError(f"{label}: QINQ_TYPE {nic.get('QINQ_TYPE')!r} is not one of "
                         "802.1Q, 802.1ad")
    # no MTU: OVS's own choice (the smallest MTU of the bridge's other ports)
    mtu = nic.int_attr("MTU", *vlan_link.MTU_RANGE, required=False)
    interface = {"mtu_request": "[]" if mtu is None else str(mtu)}
    if nic.get("CVLANS"):
        if vlan_id is None:
            raise InputError(f"{label}: CVLANS needs VLAN_ID (the S-VLAN)")
        cvlans = parse_vlan_ranges(nic.get("CVLANS"), f"{label}: CVLANS")
        port = {"vlan_mode": "dot1q-tunnel", "tag": str(vlan_id), "cvlans": _vid_list(cvlans),
                "trunks": "[]", "other_config:qinq-ethtype": qinq_type}
        return interface, port, []
    if vlan_id is not None:
        port = {"vlan_mode": "native-untagged", "tag": str(vlan_id),
                "trunks": _vid_list(trunks or [vlan_id])}
    else:
        port = {"vlan_mode": "trunk", "tag": "[]", "trunks": _vid_list(trunks or [UNTAGGED])}
    port["cvlans"] = "[]"
    return interface, port, ["qinq-ethtype"]


def port_commands(nic, tap):
    """ovs-vsctl commands giving ``tap`` :func:`port_columns` and marking it as ``nic``'s.

    The mark (:func:`vnmlib.host.port_owner.mark`) goes on the Port: it is the
    record ``post`` configures and ``clean`` deletes, and OVS makes a new one
    whenever the hypervisor re-adds the tap, so a mark never outlives the tap
    it was written for. The Interface's ``external_ids`` are the
    hypervisor's (libvirt's attached-mac, iface-id, vm-id; OVN reads them).
    """
    interface, port, dropped = port_columns(nic)
    marks = [f"external_ids:{k}={v}" for k, v in port_owner.mark(nic).items()]
    commands = [["set", "Interface", tap, *(f"{k}={v}" for k, v in interface.items())],
                ["set", "Port", tap, *(f"{k}={v}" for k, v in port.items()), *marks]]
    commands += [["remove", "Port", tap, "other_config", key] for key in dropped]
    return commands


def _vid_list(vids):
    return ",".join(map(str, vids)) if vids else "[]"


def _uses_qinq(nic):
    return bool(nic.get("CVLANS"))


def plan_port_settings(state, vm, needs):
    """One transaction with every port's settings and mark, plus vlan-limit for QinQ."""
    commands, shown, planned = [], [], []
    for need in needs:
        tap, _ = require_port(state, vm, need)
        commands += port_commands(need.nic, tap)
        shown.append(tap)
    # OVS parses one VLAN header unless vlan-limit says more; QinQ needs 2 (0: no limit)
    qinq = any(_uses_qinq(need.nic) for need in needs)
    if qinq and state.other_config.get("vlan-limit", "1") == "1":
        commands.append(["set", "Open_vSwitch", ".", "other_config:vlan-limit=2"])
        shown.append("vlan-limit=2")
        planned_purge = [ovs.PurgeDatapathFlows()]
    else:
        planned_purge = []
    if commands:
        planned.append(ovs.Transaction(commands, f"VLANs and MTU of {', '.join(shown)}"))
    return planned + planned_purge
