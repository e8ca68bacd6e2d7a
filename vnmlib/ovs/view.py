"""What the Open vSwitch planners read: one OVSDB snapshot, the host's links, noted flows.

The actions build it under their link locks (the ``read`` of
:func:`vnmlib.host.change.change_links`, :func:`reader`), so what a planner
decides on stays true until its steps are applied. Unit tests hand the
planners a made-up host instead: an :class:`~vnmlib.ovs.tools.OvsState` and a
:class:`~vnmlib.host.view.StaticLinks`.
"""

from vnmlib.host.view import KernelLinks, LinkView
from vnmlib.ovs import tools as ovs


class OvsView(LinkView):
    """The links (:class:`LinkView`) plus ``state``, the OVSDB snapshot of this action."""

    def __init__(self, state, source=KernelLinks, noted_ports=ovs.noted_ports):
        super().__init__(source)
        self.state = state
        self._noted_ports = noted_ports

    def noted_ports(self, bridge):
        """[(cookie, in_port, note)] of ``bridge``'s noted flows, read when a planner asks
        (:func:`vnmlib.ovs.tools.noted_ports`: only ``clean`` of a bridge that stays does)."""
        return self._noted_ports(bridge)


def reader(options=()):
    """The ``read`` of an OVS action: :func:`vnmlib.ovs.tools.read_state` (checking the
    bridge columns ``options``) and the live links, once the locks are held."""
    return lambda: OvsView(ovs.read_state(options))
