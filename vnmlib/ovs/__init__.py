"""Open vSwitch: the tools (ovs-vsctl/ofctl), OVSDB reads, OpenFlow rules, and the ovswitch
drivers' needs, planners and actions (:mod:`vnmlib.ovs.actions` is where to start)."""
