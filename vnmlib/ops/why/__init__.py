"""``vnm why``: which rule, set or flow decides one packet of a VM NIC.

:mod:`.packet` parses the packet the operator describes, :mod:`.netfilter`
walks the NIC's iptables chains (as the configured backend lists them, ipset
membership asked of the kernel), :mod:`.nft_walk` the bridge family's nft
chains and sets with ``:firewall_backend: nft``, :mod:`.ovs_trace` asks Open
vSwitch's own ``ofproto/trace`` for a NIC on an OVS bridge; :mod:`.nic` finds
which.
"""
