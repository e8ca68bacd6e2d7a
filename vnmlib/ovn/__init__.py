"""OpenNebula networks on OVN: the northbound rows of networks, NICs and security
groups (front-end), and the binding of a VM's tap to its logical port (host).

See docs/drivers/ovn.md. Layer: above ovs/ (the host side uses its tools),
beside elastic/.
"""
