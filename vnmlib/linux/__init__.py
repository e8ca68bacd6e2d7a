"""Linux bridges, 802.1Q and VXLAN devices: planners that turn a NIC into host steps."""
