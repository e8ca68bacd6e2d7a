"""Changes to the host as data: planned, shown, applied, undone.

Drivers compare what a VM needs with what the kernel has and return a list of
steps (empty when the host is already right). :func:`apply` runs them in
order; if one fails, the steps already applied are undone in reverse, so a
failed ``pre`` leaves no half-built device behind (SPEC decision 10). The same
lists are what ``vnm plan`` prints, so plan and apply cannot drift.
"""

from vnmlib.errors import OutcomeUnknown, VnmError


class Step:
    origin = ""  # what asked for the step (e.g. "NIC 1"), prefixed to its errors

    def describe(self):
        raise NotImplementedError

    def apply(self, nl):
        raise NotImplementedError

    def undo(self):
        """The step that reverses this one, or None when there is nothing to reverse."""
        return None

    def __repr__(self):
        return f"<{self.describe()}>"


class CreateBridge(Step):
    def __init__(self, name, options, origin=""):
        self.name = name
        self.options = options
        self.origin = origin

    def describe(self):
        opts = "".join(f" {k} {v}" for k, v in self.options.items())
        return f"create bridge {self.name}{opts}"

    def apply(self, nl):
        from vnmlib.model.bridge_options import netlink_attrs

        nl.create_bridge(self.name, netlink_attrs(self.options))

    def undo(self):
        return DeleteLink(self.name)


class CreateLink(Step):
    """A VLAN or VXLAN device (:class:`vnmlib.linux.vlan_link.DeviceSpec`) on its PHYDEV."""

    def __init__(self, spec):
        self.spec = spec
        self.origin = spec.label

    def describe(self):
        return self.spec.describe()

    def apply(self, nl):
        nl.create_link(self.spec)

    def undo(self):
        return DeleteLink(self.spec.name)


class SetMtu(Step):
    def __init__(self, name, mtu, origin=""):
        self.name = name
        self.mtu = mtu
        self.origin = origin

    def describe(self):
        return f"set {self.name} mtu {self.mtu}"

    def apply(self, nl):
        nl.set_mtu(self.name, self.mtu)


class SetBridgeOptions(Step):
    def __init__(self, name, options, feature=None):
        self.name = name
        self.options = options
        self.feature = feature

    def describe(self):
        return f"set bridge {self.name}" + "".join(f" {k} {v}" for k, v in self.options.items())

    def apply(self, nl):
        from vnmlib.model.bridge_options import netlink_attrs

        nl.set_bridge(self.name, netlink_attrs(self.options), self.feature)


class Ipv6Quiet(Step):
    """A device vnm creates (bridge, VLAN/VXLAN uplink) gets no IPv6 life of its own.

    Without this, a bridge came up with a link-local address every VM could
    reach, and a VM's router advertisement gave the hypervisor an address in
    the VM's prefix and a default route through the VM. Written in the action's
    own namespace (``/proc/sys/net`` is the caller's), before the device goes
    up: a link-local address is made when it does. IPv6 stays enabled, so an
    address the operator configures still works.
    """

    KNOBS = (
        ("accept_ra", "0"),  # no router, prefix or route from what a VM advertises
        ("autoconf", "0"),  # no SLAAC address from an advertised prefix either
        ("addr_gen_mode", "1"),  # 1 = none: no link-local address, no DAD/MLD of its own
    )

    def __init__(self, name, origin=""):
        self.name = name
        self.origin = origin

    def describe(self):
        knobs = " ".join(f"{knob}={value}" for knob, value in self.KNOBS)
        return f"set {self.name} ipv6 {knobs}"

    def apply(self, nl):
        for knob, value in self.KNOBS:
            path = f"/proc/sys/net/ipv6/conf/{self.name}/{knob}"
            try:
                with open(path, "w", encoding="ascii") as handle:
                    handle.write(value)
            except FileNotFoundError:
                return  # a kernel without IPv6 (ipv6.disable=1): nothing can autoconfigure
            except OSError as exc:
                raise VnmError(f"setting {path} to {value}: {exc.strerror}") from None


class LinkUp(Step):
    def __init__(self, name):
        self.name = name

    def describe(self):
        return f"set {self.name} up"

    def apply(self, nl):
        nl.set_up(self.name)


class SetMaster(Step):
    def __init__(self, port, bridge):
        self.port = port
        self.bridge = bridge

    def describe(self):
        return f"enslave {self.port} to {self.bridge}"

    def apply(self, nl):
        nl.set_master(self.port, self.bridge)

    def undo(self):
        return SetNoMaster(self.port, self.bridge)


class SetNoMaster(Step):
    def __init__(self, port, bridge):
        self.port = port
        self.bridge = bridge

    def describe(self):
        return f"release {self.port} from {self.bridge}"

    def apply(self, nl):
        nl.set_nomaster(self.port)


class DeleteLink(Step):
    def __init__(self, name):
        self.name = name

    def describe(self):
        return f"delete {self.name}"

    def apply(self, nl):
        nl.delete(self.name)


class VlanAdd(Step):
    """Allow VIDs on a bridge port (tagged unless ``flags`` say pvid/untagged)."""

    def __init__(self, port, vids, flags=0):
        self.port = port
        self.vids = list(vids)
        self.flags = flags

    def describe(self):
        return f"allow VLANs {_ranges(self.vids)} on {self.port}"

    def apply(self, nl):
        for vid in self.vids:
            nl.vlan_add(self.port, vid, self.flags)

    def undo(self):
        return VlanDel(self.port, self.vids)


class VlanDel(Step):
    def __init__(self, port, vids):
        self.port = port
        self.vids = list(vids)

    def describe(self):
        return f"remove VLANs {_ranges(self.vids)} from {self.port}"

    def apply(self, nl):
        for vid in self.vids:
            nl.vlan_del(self.port, vid)


def _ranges(vids):
    """[10, 20, 21, 22] -> '10,20-22' for log lines."""
    out, ordered = [], sorted(set(vids))
    start = prev = None
    for vid in ordered + [None]:
        if prev is not None and vid == prev + 1:
            prev = vid
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = vid
    return ",".join(out)


class _LazyNetlink:
    """The netlink socket, opened by the first step that uses it.

    Open vSwitch steps run the OVS tools and never touch it, so an action made
    only of them does not pay pyroute2's import (~0.1 s).
    """

    def __init__(self):
        self._nl = None

    def __getattr__(self, name):
        if self._nl is None:
            from vnmlib.host.netlink import Netlink

            self._nl = Netlink()
        return getattr(self._nl, name)

    def close(self):
        if self._nl is not None:
            self._nl.close()


def apply(steps, log):
    """Apply ``steps``; on failure undo what was applied and re-raise.

    In plan mode (:mod:`vnmlib.host.plan`) the steps are recorded, not applied.
    """
    if not steps:
        return
    from vnmlib.host import plan

    if plan.active():  # the one place plan mode is decided: nothing is applied
        for step in steps:
            log.info(step.describe())  # a RecordingLog's lines are the plan
        return
    nl = _LazyNetlink()
    done = []
    try:
        for step in steps:
            step.apply(nl)
            done.append(step)
            log.info(step.describe())
    except VnmError as exc:
        failed = steps[len(done)]
        if isinstance(exc, OutcomeUnknown):
            done.append(failed)  # a killed tool may have committed its change: undo it too
        if failed.origin:
            exc = VnmError(f"{failed.origin}: {exc}", exc.exit_code)
        for step in reversed(done):
            undo = step.undo()
            if undo is None:
                continue
            try:
                undo.apply(nl)
                log.info(f"rolled back: {undo.describe()}")
            except VnmError as undo_exc:
                log.error(f"rollback failed: {undo_exc}")
        raise exc
    finally:
        nl.close()
