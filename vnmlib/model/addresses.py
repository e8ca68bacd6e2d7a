"""IP addresses from the VM: the one reader every driver and the firewall use.

Python's ``ipaddress`` accepts an IPv6 scope id after ``%`` made of any
characters, newlines included, and gives it back in ``str()``: a NIC's
``IP6`` of ``fe80::1%lo`` + newline + ``-I FORWARD 1 -j ACCEPT`` reached an
ip6tables-restore script verbatim. So the text is checked against the
characters an address is written with *before* parsing (ASCII only: no
scope, no whitespace, no other digits), and what the drivers write into a
restore, ipset or OpenFlow script is the parsed object's ``str()``, which
is then canonical digits, dots and colons.
"""

import re

from vnmlib.errors import InputError, shown

# the longest address text: ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
TEXT_MAX = 45
_CHARACTERS = {4: re.compile(r"[0-9.]+"), 6: re.compile(r"[0-9A-Fa-f:.]+")}


def parse_address(text, version, what):
    """``text`` as an IPv``version`` address (ipaddress object), else one error naming ``what``."""
    if len(text) > TEXT_MAX or not _CHARACTERS[version].fullmatch(text):
        why = " (IPv6 scope ids, '%…', are not accepted)" if "%" in text else ""
        raise InputError(f"{what} {shown(text)} is not an IPv{version} address{why}")
    import ipaddress

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InputError(f"{what} {shown(text)} is not an IP address") from None
    if address.version != version:
        raise InputError(f"{what} {shown(text)} is not an IPv{version} address")
    return address
