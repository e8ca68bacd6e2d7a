"""Open vSwitch networks: bridges, uplinks, VM ports and their flows (reference §2.6, §2.7).

The mechanism of the ovswitch and ovswitch_vxlan drivers. A network is an OVS
bridge (``BRIDGE``, columns from ``ovs_bridge_conf`` / ``OVS_BRIDGE_CONF``)
whose uplink port is PHYDEV (ovswitch) or the VXLAN device
``<PHYDEV>.<OUTER_VLAN_ID>`` (ovswitch_vxlan, :class:`OvsVxlanNeed`).

- ``pre`` (:func:`attach`): bridge, uplink; one ovs-vsctl transaction.
- ``post`` (:func:`configure_ports`): each VM port's VLAN settings and vnm's
  mark naming its NIC (one transaction) and its flows (one bundle per bridge,
  :mod:`vnmlib.ovs.flows`).
- ``clean`` (:func:`release`): the NICs' flows and ports, then the bridge when
  only its uplink is left and no other NIC uses it (SPEC decision 4).
- ``update_nic`` (:func:`update`): port settings and uplink of a changed network.

The tap's name is the NIC's ``TARGET``, which the VM's owner may write: only
a port provably the NIC's (:func:`foreign_port`) is configured, re-configured
or deleted; ``post`` refuses any other, ``clean`` and ``update_nic`` leave it
alone with a WARN line (issue 23.4).

The reference took no lock for OVS and raced (#2629, #6985, #7059); every
action here holds the :class:`~vnmlib.host.locks.LinkLocks` of the bridges and
uplinks it plans for, the same locks the Linux-bridge drivers use.
"""

import re

from vnmlib.ovs import tools as ovs, flows as ovs_flows
from vnmlib.host import port_owner, steps, sysfs
from vnmlib.linux import vlan_link
from vnmlib.model.config import is_true, merge_options, nic_conf
from vnmlib.errors import InputError, VnmError
from vnmlib.host.view import LinkView
from vnmlib.host.locks import BridgeUsers, LinkLocks, nic_user
from vnmlib.model.naming import checked_vlan_device_name, parse_vlan_ranges
from vnmlib.model.nic_need import NicNeed

QINQ_TYPES = ("802.1q", "802.1ad")
UNTAGGED = 0  # the VLAN of frames without an 802.1Q header, for OVS's normal switching
VLAN_RANGE = (1, 4094)  # 0 and 4095 are reserved by 802.1Q; OVS refuses a tag above 4095
# a Bridge column, or a key of one of its maps ("other_config:mac-table-size");
# patterns as text, compiled on first use (re caches them): most actions never need them
BRIDGE_COLUMN = r"[a-z_]+(:[A-Za-z0-9_.-]+)?"
BRIDGE_VALUE = r"[^\s\"'\\]+"


def bridge_options(conf, nic):
    """{column: value} set on a bridge vnm creates: ``ovs_bridge_conf`` < ``OVS_BRIDGE_CONF``.

    ``BRIDGE_TYPE=openvswitch_dpdk`` puts the bridge on the userspace
    datapath (``datapath_type=netdev``), as the reference.
    """
    merged = merge_options(conf.get("ovs_bridge_conf"), nic.get("OVS_BRIDGE_CONF"),
                           f"{nic.label}: OVS_BRIDGE_CONF", lower=False)
    if nic.get("BRIDGE_TYPE") == "openvswitch_dpdk":
        merged["datapath_type"] = "netdev"
    options = {}
    for column, value in merged.items():
        what = f"{nic.label}: OVS_BRIDGE_CONF/ovs_bridge_conf {column}"
        if not re.fullmatch(BRIDGE_COLUMN, column):
            raise InputError(f"{what}: not a bridge column name (e.g. stp_enable, "
                             "other_config:mac-table-size)")
        if value is None or value == "":
            raise InputError(f"{what}: needs a value")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not re.fullmatch(BRIDGE_VALUE, text):
            raise InputError(f"{what}: value {text!r} has spaces or quotes")
        options[column] = text
    return options


def _shown_options(options):
    return "".join(f" {k}={v}" for k, v in options.items())


class OvsNeed(NicNeed):
    """What one NIC needs from Open vSwitch: its bridge (with columns) and uplink port."""

    def __init__(self, nic, conf):
        super().__init__(nic, conf)
        self.options = bridge_options(self.conf, nic)

    @property
    def uplink(self):
        """The port connecting the bridge to the network ("" when it has none)."""
        return self.phydev

    def plan_device(self, view):
        """Steps making the uplink device; PHYDEV is the host's, nothing to make."""
        return []


class OvsVxlanNeed(OvsNeed):
    """ovswitch_vxlan: the uplink is the VXLAN device ``<PHYDEV>.<OUTER_VLAN_ID>`` (VNI = OUTER_VLAN_ID).

    The device is vxlan's (group, TTL, MTU, ``ip_link_conf``); VLAN_ID tags the
    VM ports inside the tunnel.
    """

    def __init__(self, nic, conf):
        super().__init__(nic, conf)
        if not self.phydev:
            raise InputError(f"{nic.label}: PHYDEV is missing (the VXLAN tunnel runs over it)")
        self._spec = None

    @property
    def spec(self):
        if self._spec is None:
            self._spec = vlan_link.vxlan_spec(self.nic, self.conf,
                                              vlan_link.phydev_addresses(self.nic),
                                              vni_attribute="OUTER_VLAN_ID")
        return self._spec

    @property
    def uplink(self):
        outer = self.nic.int_attr("OUTER_VLAN_ID", *vlan_link.VNI_RANGE)
        return checked_vlan_device_name(self.phydev, outer, f"{self.nic.label}: VXLAN device name")

    def link_names(self):
        return [self.bridge, self.phydev, self.uplink]

    def plan_device(self, view):
        return vlan_link.plan_device_link(view, self.spec)

    def owned_devices(self):
        return [self.uplink]


# -- pre ------------------------------------------------------------------------

def _wanted_options(needs):
    """[(bridge, what, column, value)] for :func:`vnmlib.ovs.tools.read_state` to check."""
    return [(need.bridge, f"{need.nic.label}: OVS_BRIDGE_CONF/ovs_bridge_conf", column, value)
            for need in needs for column, value in need.options.items()]


def _check_bridge(state, need):
    """An existing bridge is reused only with the columns this network asks for (SPEC decision 1)."""
    for column, value in need.options.items():
        have = state.differences.get((need.bridge, column))
        if have is not None:
            raise VnmError(f"{need.nic.label}: Open vSwitch bridge {need.bridge} exists with "
                           f"{column}={have}, but the configuration asks for {column}={value}")


def _check_uplink(state, need, planned_ports):
    """Whether the uplink must be added to the bridge (False: it is there already)."""
    uplink, bridge, label = need.uplink, need.bridge, need.nic.label
    current = planned_ports.get(uplink) or state.bridge_of(uplink)
    if current == bridge:
        return False
    what = "PHYDEV" if uplink == need.phydev else "VXLAN device"
    if current is not None:
        raise VnmError(f"{label}: {what} {uplink} is already a port of Open vSwitch bridge "
                       f"{current}, not of {bridge}")
    master = sysfs.master(uplink) if sysfs.exists(uplink) else None
    if master is not None and master != "ovs-system":  # ovs-system: the kernel datapath
        raise VnmError(f"{label}: {what} {uplink} is already a port of {master}")
    if uplink == need.phydev and not sysfs.exists(uplink):
        raise VnmError(f"{label}: PHYDEV {uplink} does not exist on this host")
    planned_ports[uplink] = bridge
    return True


def plan_attach(state, needs):
    """Steps for ``pre``: uplink devices, then one transaction (bridges, columns, uplink ports)."""
    view = LinkView()
    devices, commands, undo, shown, up = [], [], [], [], []
    new_bridges, planned_ports = set(), {}
    for need in needs:
        bridge = need.bridge
        if bridge not in state.bridges and bridge not in new_bridges:
            if sysfs.exists(bridge):
                kind = sysfs.link_kind(bridge) or "plain"
                raise VnmError(f"{need.nic.label}: BRIDGE {bridge} exists but is a {kind} "
                               "device, not an Open vSwitch bridge")
            new_bridges.add(bridge)
            commands.append(["--may-exist", "add-br", bridge])
            if need.options:
                commands.append(["set", "Bridge", bridge,
                                 *(f"{k}={v}" for k, v in need.options.items())])
            undo.append(["--if-exists", "del-br", bridge])
            shown.append(f"add bridge {bridge}{_shown_options(need.options)}")
            up.append(bridge)
        elif bridge in state.bridges:
            _check_bridge(state, need)
            if sysfs.exists(bridge) and not sysfs.is_up(bridge) and bridge not in up:
                up.append(bridge)
        if need.uplink:
            devices += need.plan_device(view)
            if _check_uplink(state, need, planned_ports):
                commands.append(["--may-exist", "add-port", bridge, need.uplink])
                if bridge not in new_bridges:  # del-br takes a new bridge's ports with it
                    undo.insert(0, ["--if-exists", "del-port", bridge, need.uplink])
                shown.append(f"add port {need.uplink} to {bridge}")
    planned = list(devices)
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown), undo))
    # a new bridge's own interface takes no RA, SLAAC or link-local from what VMs send
    # (as the Linux bridges vnm makes), then goes up as the reference's (`ip link set <BR> up`)
    planned += [steps.Ipv6Quiet(bridge) for bridge in sorted(new_bridges)]
    return planned + [steps.LinkUp(bridge) for bridge in up]


def attach(ctx, need_type):
    """``pre``: every NIC of the driver gets its bridge and uplink; recorded as a bridge user."""
    needs = [need_type(nic, ctx.conf) for nic in ctx.vm.driver_nics(ctx.driver)]
    if not needs:
        return
    for need in needs:
        need.uplink  # validate PHYDEV / OUTER_VLAN_ID before anything changes
    records = [(need.bridge, nic_user(need.nic.vm_id, need.nic.nic_id)) for need in needs]
    with LinkLocks([name for need in needs for name in need.link_names()]):
        state = ovs.read_state(_wanted_options(needs))
        with BridgeUsers().recorded(records):  # first: a full run directory builds nothing
            steps.apply(plan_attach(state, needs), ctx.log)


# -- VM ports -------------------------------------------------------------------

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


# -- whose port -----------------------------------------------------------------------

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


def _require_port(state, vm, need):
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


def _aliases_of(vm, driver, nic, leaving=None):
    return [a for a in vm.driver_aliases(driver)
            if a.get("PARENT_ID") == nic.get("NIC_ID") and a is not leaving]


def plan_flows(state, vm, driver, needs, conf, leaving_alias=None):
    """One bundle per bridge replacing the flows of ``needs``' ports."""
    by_bridge = {}
    for need in needs:
        nic = need.nic
        tap, port = _require_port(state, vm, need)
        arp = is_true(nic_conf(conf, nic).get("arp_cache_poisoning"))
        flows = ovs_flows.port_flows(port, nic, _aliases_of(vm, driver, nic, leaving_alias), arp)
        lines, shown = by_bridge.setdefault(nic.bridge, ([], []))
        lines += ovs_flows.replace_lines(port, nic, flows)
        shown.append(f"{tap} (port {port}, {len(flows)} flows)")
    return [ovs.FlowBundle(bridge, lines, f"flows of {', '.join(shown)} on {bridge}: "
                           f"{ovs_flows.PIPELINE}")
            for bridge, (lines, shown) in by_bridge.items()]


def plan_port_settings(state, vm, needs):
    """One transaction with every port's settings and mark, plus vlan-limit for QinQ."""
    commands, shown, planned = [], [], []
    for need in needs:
        tap, _ = _require_port(state, vm, need)
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


def _alias_parent(vm, driver, alias):
    return next((n for n in vm.driver_nics(driver) if n.get("NIC_ID") == alias.get("PARENT_ID")),
                None)


def configure_ports(ctx, need_type):
    """``post``: settings, mark and flows of the VM's ports (only the hot-plugged one's
    when attaching); a port that is not provably the NIC's: one error, nothing changed."""
    vm, driver = ctx.vm, ctx.driver
    plugged = vm.hotplugged()
    flows_only = plugged is not None and plugged.kind == "NIC_ALIAS"
    if flows_only:
        parent = _alias_parent(vm, driver, plugged)
        nics = [parent] if parent is not None else []  # the parent's port gets the alias' flows
    else:
        nics = vm.scoped_nics(driver)
    if not nics:
        return
    needs = [need_type(nic, ctx.conf) for nic in nics]
    for need in needs:
        need.uplink  # validate PHYDEV / OUTER_VLAN_ID: the port must not be the uplink
    with LinkLocks(sorted({nic.bridge for nic in nics})):
        state = ovs.read_state()
        planned = [] if flows_only else plan_port_settings(state, vm, needs)
        planned += plan_flows(state, vm, driver, needs, ctx.conf)
        steps.apply(planned, ctx.log)


# -- clean ------------------------------------------------------------------------

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


def _legacy_ports(state, bridge, nics, taps, owned):
    """Ports of flows the reference made for ``nics`` (found by note, no cookie).

    A port number now used by another interface is not ours any more: its
    flows belong to that interface's NIC; nor is a live port not provably the
    NIC's (``owned``): ``delete in_port`` would take its owner's flows too.
    """
    notes = {ovs_flows.note(nic): tap for nic, tap in zip(nics, taps)}
    live = {entry["ofport"]: name for name, entry in state.interfaces.items()}
    found = []
    for flow_cookie, port, flow_note in ovs.noted_ports(bridge):
        tap = next((t for n, t in notes.items() if flow_note.startswith(n)), None)
        if tap is None or flow_cookie >> 48 == ovs_flows.COOKIE_TAG:
            continue
        if live.get(port, tap) == tap and (port not in live or tap in owned):
            found.append(port)
    return sorted(set(found))


def plan_release(state, vm, needs, users, owned):
    """Flows and ports of ``needs``' NICs; bridges left with only their uplink go, devices too.

    Only the ports in ``owned`` (:func:`owned_taps`) are deleted; the NICs'
    flows always are, by their cookie. A bridge that goes takes its flows
    with it: only the flows of a bridge that stays are deleted (by cookie,
    and the reference's by note).
    """
    planned, commands, shown, deleted_links = [], [], [], []
    by_bridge = {}
    for need in needs:
        by_bridge.setdefault(need.bridge, []).append(need)
    for bridge, bridge_needs in by_bridge.items():
        if bridge not in state.bridges:
            continue
        nics = [need.nic for need in bridge_needs]
        taps = [vm.tap_name(nic) for nic in nics]
        ports = set(state.bridges[bridge]) - {bridge}  # a bridge's own internal port
        for tap in taps:
            if tap in ports and tap in owned:
                commands.append(["--if-exists", "del-port", bridge, tap])
                shown.append(f"delete port {tap} from {bridge}")
                ports.discard(tap)
        if _bridge_unused(bridge_needs, ports, users.users(bridge)):
            commands.append(["--if-exists", "del-br", bridge])
            shown.append(f"delete bridge {bridge}")
            deleted_links += [d for need in bridge_needs for d in need.owned_devices()
                              if d in ports]
            continue
        lines = [line for nic in nics for line in ovs_flows.delete_lines(nic)]
        lines += [f"delete in_port={p}" for p in _legacy_ports(state, bridge, nics, taps, owned)]
        planned.append(ovs.FlowBundle(bridge, lines, f"delete flows of {', '.join(taps)} "
                                                     f"on {bridge}"))
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown)))
    return planned + [steps.DeleteLink(name) for name in dict.fromkeys(deleted_links)]


def _bridge_unused(needs, ports, users_left):
    """The reference's rule: with PHYDEV, not kept, nothing but the uplink left; plus no user."""
    if users_left or any(need.keep_empty or not need.phydev for need in needs):
        return False
    return ports <= {need.uplink for need in needs}


def release(ctx, need_type):
    """``clean``: the NICs' flows and ports; bridges nobody uses any more."""
    vm, driver = ctx.vm, ctx.driver
    plugged = vm.hotplugged()
    if plugged is not None and plugged.kind == "NIC_ALIAS":
        _release_alias(ctx, plugged, need_type)
        return
    needs = [need_type(nic, ctx.conf) for nic in vm.scoped_nics(driver)]
    if not needs:
        return
    with LinkLocks([name for need in needs for name in need.link_names()]):
        users = BridgeUsers()
        for need in needs:
            users.remove(need.bridge, nic_user(need.nic.vm_id, need.nic.nic_id))
        state = ovs.read_state()
        owned = owned_taps(state, vm, needs, ctx.log)
        steps.apply(plan_release(state, vm, needs, users, owned), ctx.log)


def _release_alias(ctx, alias, need_type):
    """A detached alias: its parent's port keeps its flows minus the alias' addresses."""
    vm, driver = ctx.vm, ctx.driver
    parent = _alias_parent(vm, driver, alias)
    if parent is None:
        return
    need = need_type(parent, ctx.conf)
    with LinkLocks([parent.bridge]):
        state = ovs.read_state()
        if state.bridge_of(vm.tap_name(parent)) != parent.bridge:
            return  # the parent's port is gone too: nothing carries the alias any more
        if not owned_taps(state, vm, [need], ctx.log):
            return  # not the parent's port: its flows are its owner's
        steps.apply(plan_flows(state, vm, driver, [need], ctx.conf, leaving_alias=alias),
                    ctx.log)


# -- update_nic ---------------------------------------------------------------------

PORT_KEYS = {"VLAN_ID", "VLAN_TAGGED_ID", "CVLANS", "QINQ_TYPE", "MTU"}


def update(ctx, need_type, uplink_keys):
    """``update_nic``: ``VNET_UPDATE`` holds the old values of what changed.

    Port settings (VLAN_ID, VLAN_TAGGED_ID, CVLANS, QINQ_TYPE, MTU) are applied
    again to each NIC's port; an uplink change (``uplink_keys``: PHYDEV, and
    OUTER_VLAN_ID for ovswitch_vxlan) swaps the bridge's uplink port, deleting
    an old VXLAN device that was this bridge's.
    """
    vm = ctx.vm
    vnet_id = ctx.int_arg(1, "vnet_id")
    changed = set(vm.vnet_update)
    nics = [n for n in vm.driver_nics(ctx.driver) if n.network_id == vnet_id]
    reconfigure = bool(PORT_KEYS & changed)
    swap = bool(uplink_keys & changed)
    if not nics or not (reconfigure or swap):
        return
    needs = [need_type(nic, ctx.conf) for nic in nics]
    for need in needs:
        need.uplink  # validate the new values before anything changes
        if reconfigure:
            port_columns(need.nic)
    olds = [_old_uplink(need, vm.vnet_update) if swap else "" for need in needs]
    names = [n for need in needs for n in need.link_names()] + [o for o in olds if o]
    with LinkLocks(names):
        state = ovs.read_state()
        # a port not provably the NIC's keeps its settings (a WARN line each)
        owned = owned_taps(state, vm, needs, ctx.log) if reconfigure else set()
        planned = []
        if swap:
            planned += _plan_uplink_swap(state, needs, olds)
        if reconfigure:
            present = [need for need in needs if vm.tap_name(need.nic) in owned]
            if present:
                planned += plan_port_settings(state, vm, present)
        steps.apply(planned, ctx.log)


def _old_uplink(need, changed):
    nic = need.nic
    old_phydev = changed.get("PHYDEV", nic.phydev)
    if not isinstance(need, OvsVxlanNeed):
        return old_phydev
    old_outer = changed.get("OUTER_VLAN_ID", nic.get("OUTER_VLAN_ID"))
    if not old_phydev or not old_outer:
        return ""
    return checked_vlan_device_name(old_phydev, old_outer, f"{nic.label}: old VXLAN device")


def _plan_uplink_swap(state, needs, olds):
    planned, commands, shown, deleted = [], [], [], []
    for need, old in zip(needs, olds):
        if old and old != need.uplink and state.bridge_of(old) == need.bridge:
            commands.append(["--if-exists", "del-port", need.bridge, old])
            shown.append(f"delete port {old} from {need.bridge}")
            if old not in deleted and isinstance(need, OvsVxlanNeed):
                deleted.append(old)
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown)))
        # state now lacks those ports: plan the new uplinks as pre would
        for name in (old for old in olds if old):
            entry = state.ports.pop(name, None)
            if entry:
                state.bridges[entry["bridge"]].discard(name)
    planned += [steps.DeleteLink(name) for name in deleted]
    return planned + plan_attach(state, needs)

