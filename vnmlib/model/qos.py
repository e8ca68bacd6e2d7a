"""A NIC's bandwidth limits (``INBOUND_*`` / ``OUTBOUND_*``) and the libvirt connection, typed.

``update_nic`` sets them live on the running domain, as the reference's
``virsh domiftune`` does (reference ``nic.rb`` ``set_qos``): average and peak
in KB/s, burst (``*_PEAK_KB``) in KB; 0 removes a limit. Inbound is traffic
into the guest, outbound traffic out of it (libvirt's view). Everything here
is parsing: a bad value is refused before anything on the host changes.
"""

import re

from vnmlib.errors import InputError, shown

DIRECTIONS = ("INBOUND", "OUTBOUND")
FIELDS = ("AVG_BW", "PEAK_BW", "PEAK_KB")  # virsh's order: average,peak,burst
ATTRIBUTES = tuple(f"{d}_{f}" for d in DIRECTIONS for f in FIELDS)

# libvirt passes each one as an unsigned int typed parameter
UINT_MAX = 2 ** 32 - 1

# a domain name vnm hands virsh: oned's one-<id>, or a UUID; never an option
_DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}", re.ASCII)

DEFAULT_URI = "qemu:///system"
# Only local URIs with no transport options: libvirt URIs also take
# ``command=``, ``netcat=``, ``ext`` and ``ssh`` transports, each of which runs a
# program, so anything else in the configuration is refused.
_PLAIN_URIS = ("qemu:///system", "qemu:///session")
_SOCKET_URI = re.compile(r"qemu\+unix:///system\?socket=(/[A-Za-z0-9_./-]{1,200})", re.ASCII)


def requested(vnet_update):
    """Whether the network update changed any bandwidth attribute (the reference's trigger)."""
    return any(name in vnet_update for name in ATTRIBUTES)


def _amount(nic, name):
    text = nic.get(name)
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or int(text) > UINT_MAX:
        raise InputError(f"{nic.label}: {name} {shown(text)} is not a number in 0..{UINT_MAX} "
                         "(KB/s, KB for *_PEAK_KB)")
    return int(text)


def limits(nic):
    """``{"inbound": (avg, peak, burst), "outbound": (…)}`` of ``nic``; absent -> 0."""
    found = {}
    for direction in DIRECTIONS:
        avg, peak, burst = (_amount(nic, f"{direction}_{field}") for field in FIELDS)
        if not avg and (peak or burst):
            name = f"{direction}_PEAK_BW" if peak else f"{direction}_PEAK_KB"
            raise InputError(f"{nic.label}: {name} is set without {direction}_AVG_BW "
                             "(libvirt needs an average for a peak or burst)")
        found[direction.lower()] = (avg, peak, burst)
    return found


def domain_name(text):
    """The deploy ID as a domain name virsh takes, else an input error."""
    if not _DOMAIN_RE.fullmatch(text or ""):
        raise InputError(f"deploy_id {shown(text)} is not a domain name "
                         "(letters, digits and _ . + -)")
    return text


def parse_uri(value):
    """``(uri, socket path or None)`` from the ``:libvirt_uri:`` value; anything else refused."""
    if value in _PLAIN_URIS:
        return value, None
    match = _SOCKET_URI.fullmatch(value) if isinstance(value, str) else None
    if match is None or "/../" in match.group(1) + "/" or "/./" in match.group(1) + "/":
        raise InputError(f":libvirt_uri: {shown(value)} in OpenNebulaNetwork.conf is not one of "
                         "qemu:///system, qemu:///session, "
                         "qemu+unix:///system?socket=<absolute path>")
    return value, match.group(1)
