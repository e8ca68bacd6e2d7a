"""Open vSwitch: the tools (ovs-vsctl/ofctl), OVSDB reads, OpenFlow rules and the switch planner."""
