"""Names the kernel and oned agree on, validated before anything is touched."""

import re

from .errors import InputError

# Linux refuses names of IFNAMSIZ (16) bytes or more, names with '/', ':' or
# whitespace, and "." / "..". We also refuse control characters and shell/glob
# metacharacters so that a name is always safe to show in a log line or hand to
# an admin's hook as an argument.
IFNAMSIZ_MAX = 15
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]+$")


def check_ifname(name, what):
    """Return ``name`` if the kernel would accept it as a link name, else raise.

    ``what`` names the source for the error line, e.g. ``"NIC 1 BRIDGE"``.
    """
    if not name:
        raise InputError(f"{what} is empty")
    if len(name.encode()) > IFNAMSIZ_MAX:
        raise InputError(
            f"{what} {name!r} is {len(name.encode())} bytes; Linux interface "
            f"names are at most {IFNAMSIZ_MAX}"
        )
    if name in (".", "..") or not _IFNAME_RE.match(name):
        raise InputError(
            f"{what} {name!r} is not a valid interface name "
            "(letters, digits and _ . @ + - only)"
        )
    return name


def vlan_device_name(phydev, vlan_id):
    """``<PHYDEV>.<VLAN_ID>``: the name the reference gives VLAN and VXLAN devices."""
    return f"{phydev}.{vlan_id}"


def checked_vlan_device_name(phydev, vlan_id, what):
    """:func:`vlan_device_name`, refused (naming ``what``) when the kernel would refuse it."""
    return check_ifname(vlan_device_name(phydev, vlan_id), what)


_RANGE_RE = re.compile(r"^\d+(\s*[,-]\s*\d+)*$")


def parse_vlan_ranges(text, what):
    """Expand ``10,20-22`` into ``[10, 20, 21, 22]`` (order kept, duplicates dropped).

    The reference accepts reversed ranges (``140-130``); so do we. Every VID
    must be usable on a bridge port: 1..4094 (0 and 4095 are reserved by 802.1Q).
    """
    text = (text or "").strip()
    if not _RANGE_RE.match(text):
        raise InputError(f"{what} {text!r} is not a VLAN list such as '10,20-22'")
    vids = []
    for part in re.split(r"\s*,\s*", text):
        bounds = [int(b) for b in re.split(r"\s*-\s*", part)]
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
