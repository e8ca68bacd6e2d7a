"""Names the kernel and oned agree on, validated before anything is touched."""

import re

from vnmlib.errors import InputError, shown

# Linux refuses names of IFNAMSIZ (16) bytes or more, names with '/', ':' or
# whitespace, and "." / "..". We also refuse control characters and shell/glob
# metacharacters so that a name is always safe to show in a log line or hand to
# an admin's hook as an argument.
IFNAMSIZ_MAX = 15
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@+-]+")

# oned's ids are integers; vnm bounds them so that every name made from them
# fits: the OVS cookie holds 32 bits of VM ID and 16 of NIC ID, and the longest
# chain, one-4294967295-65535-snat, is 25 bytes (iptables allows 28).
VM_ID_MAX = 2 ** 32 - 1
NIC_ID_MAX = 2 ** 16 - 1


def check_ifname(name, what):
    """Return ``name`` if the kernel would accept it as a link name, else raise.

    ``what`` names the source for the error line, e.g. ``"NIC 1 BRIDGE"``.
    """
    if not name:
        raise InputError(f"{what} is empty")
    if len(name.encode()) > IFNAMSIZ_MAX:
        raise InputError(
            f"{what} {shown(name)} is {len(name.encode())} bytes; Linux interface "
            f"names are at most {IFNAMSIZ_MAX}"
        )
    if name in (".", "..") or not _IFNAME_RE.fullmatch(name):
        raise InputError(
            f"{what} {shown(name)} is not a valid interface name "
            "(letters, digits and _ . @ + - only)"
        )
    return name


def vlan_device_name(phydev, vlan_id):
    """``<PHYDEV>.<VLAN_ID>``: the name the reference gives VLAN and VXLAN devices."""
    return f"{phydev}.{vlan_id}"


def checked_vlan_device_name(phydev, vlan_id, what):
    """:func:`vlan_device_name`, refused (naming ``what``) when the kernel would refuse it."""
    return check_ifname(vlan_device_name(phydev, vlan_id), what)


# ASCII digits and blanks only (re.ASCII: \d and \s would take any script's);
# a VID has at most 4 digits, so 10 leaves room for a clear range error
_RANGE_RE = re.compile(r"[0-9]{1,10}(\s*[,-]\s*[0-9]{1,10})*", re.ASCII)


def parse_vlan_ranges(text, what):
    """Expand ``10,20-22`` into ``[10, 20, 21, 22]`` (order kept, duplicates dropped).

    The reference accepts reversed ranges (``140-130``); so do we. Every VID
    must be usable on a bridge port: 1..4094 (0 and 4095 are reserved by 802.1Q).
    """
    text = (text or "").strip()
    if not _RANGE_RE.fullmatch(text):
        raise InputError(f"{what} {shown(text)} is not a VLAN list such as '10,20-22'")
    vids = []
    for part in re.split(r"\s*,\s*", text, flags=re.ASCII):
        bounds = [int(b) for b in re.split(r"\s*-\s*", part, flags=re.ASCII)]
        if len(bounds) > 2:
            raise InputError(f"{what} {text!r}: {part!r} is not a range")
        low, high = min(bounds), max(bounds)
        if low < 1 or high > 4094:
            raise InputError(f"{what} {text!r}: VLAN IDs must be in 1..4094")
        vids.extend(range(low, high + 1))
    return list(dict.fromkeys(vids))


def old_vlan_ranges(text, what):
    """The VIDs of an old ``VNET_UPDATE`` value; one that never parsed was never applied: none."""
    try:
        return parse_vlan_ranges(text, what) if text else []
    except InputError:
        return []
