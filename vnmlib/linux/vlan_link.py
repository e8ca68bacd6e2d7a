"""What the ``<PHYDEV>.<VLAN_ID>`` device of an 802.1Q or vxlan network must be.

A :class:`DeviceSpec` is built from the NIC and the configuration alone
(reference §2.4, §2.5), validated before anything is touched, and then either
created (its pyroute2 arguments) or compared with the device the kernel
already has (:mod:`vnmlib.host.netlink.reader`): an existing device is reused only
when it is the one we would have made (SPEC decisions 1 and 7).

Lookup order for every setting: NIC attribute > the network's ``CONF`` >
``OpenNebulaNetwork.conf`` > built-in default. ``ip_link_conf`` /
``IP_LINK_CONF`` keys use ``ip link`` vocabulary and are mapped to netlink
attributes here; an unknown key is an error, not silently dropped.
"""

import _socket

from vnmlib.errors import InputError, VnmError
from vnmlib.host import steps
from vnmlib.host.netlink import reader
from vnmlib.model.bridge_options import VLAN_PROTOCOLS
from vnmlib.model.config import merge_options, nic_conf
from vnmlib.model.naming import checked_vlan_device_name
from vnmlib.model.numbers import decimal

# 802.1Q: VIDs 0 and 4095 are reserved by the standard. VXLAN: 24-bit VNI.
VLAN_ID_RANGE = (1, 4094)
VNI_RANGE = (1, 16777215)
MTU_RANGE = (68, 65535)  # 68: the IPv4 minimum (RFC 791); 65535: IFLA_MTU's practical cap

# VLAN_FLAG_* of <linux/if_vlan.h>, as ip-link names them
VLAN_FLAG_BITS = {"reorder_hdr": 0x1, "gvrp": 0x2, "loose_binding": 0x4, "mvrp": 0x8,
                  "bridge_binding": 0x10}

# vxlan ip-link flags -> (IFLA_VXLAN_* name, value)
VXLAN_FLAGS = {
    "learning": ("learning", 1), "nolearning": ("learning", 0),
    "proxy": ("proxy", 1), "noproxy": ("proxy", 0),
    "rsc": ("rsc", 1), "norsc": ("rsc", 0),
    "l2miss": ("l2miss", 1), "nol2miss": ("l2miss", 0),
    "l3miss": ("l3miss", 1), "nol3miss": ("l3miss", 0),
    "udpcsum": ("udp_csum", 1), "noudpcsum": ("udp_csum", 0),
    "udp6zerocsumtx": ("udp_zero_csum6_tx", 1), "noudp6zerocsumtx": ("udp_zero_csum6_tx", 0),
    "udp6zerocsumrx": ("udp_zero_csum6_rx", 1), "noudp6zerocsumrx": ("udp_zero_csum6_rx", 0),
}
# vxlan ip-link options with a number -> (IFLA_VXLAN_* name, low, high)
VXLAN_NUMBERS = {
    "dstport": ("port", 0, 65535),
    "ttl": ("ttl", 0, 255),       # 0: the kernel picks (ip's "ttl auto")
    "tos": ("tos", 0, 255),       # 1: inherit from the inner packet (ip's "tos inherit")
    "ageing": ("ageing", 0, 2 ** 32 - 1),
    "maxaddress": ("limit", 0, 2 ** 32 - 1),
}
VXLAN_MODES = ("multicast", "evpn")
_TRUE = (True, "on", "yes", "true", "1")
_FALSE = (False, "off", "no", "false", "0")


class DeviceSpec:
    """One VLAN or VXLAN device as a network needs it."""

    def __init__(self, kind, name, phydev, mtu, data, on_phydev, label, shown):
        self.kind = kind            # "vlan" or "vxlan"
        self.name = name
        self.phydev = phydev
        self.mtu = mtu
        self.data = data            # IFLA_INFO_DATA members we set, reader names
        self.on_phydev = on_phydev  # the lower device is PHYDEV (vlan link / vxlan dev)
        self.label = label          # "NIC 2", prefixed to errors
        self.shown = shown          # ip-link style words for logs and plans

    @property
    def vlan_id(self):
        return self.data["id"]

    def describe(self):
        return f"create {self.kind} {self.name} mtu {self.mtu} {self.shown}"

    def netlink_args(self, phydev_index):
        """Keyword arguments of pyroute2's ``link("add", …)`` for this device."""
        args = {"ifname": self.name, "kind": self.kind, "mtu": self.mtu}
        for key, value in self.data.items():
            if self.kind == "vlan" and key == "flags":
                value = {"flags": value[0], "mask": value[1]}
            args[f"{self.kind}_{key}"] = value
        if self.on_phydev:
            args["link" if self.kind == "vlan" else "vxlan_link"] = phydev_index
        return args

    def differences(self, link, phydev_index):
        """Why the existing ``link`` is not this device ([] when it is)."""
        if link.kind != self.kind:
            return [f"it is a {link.kind or 'plain'} device, not a {self.kind} device"]
        found = []
        for key, wanted in self.data.items():
            have = link.data.get(key)
            if key == "flags":
                flags, mask = wanted
                if have is None or have & mask != flags:
                    found.append(f"vlan flags {have:#x} (want {flags:#x} of mask {mask:#x})")
            elif have != wanted:
                found.append(f"{key} {have} (want {wanted})")
        if self.on_phydev:
            lower = link.lower if self.kind == "vlan" else link.data.get("link")
            if lower != phydev_index:
                found.append(f"it sits on another device (ifindex {lower}), not on {self.phydev}")
        return found


def _int_setting(value, what, low, high):
    number = decimal(str(value).strip(), signed=True)
    if number is None:
        raise InputError(f"{what} {value!r} is not an integer")
    if not low <= number <= high:
        raise InputError(f"{what} {number} is out of range {low}..{high}")
    return number


def _mtu(nic, conf, conf_key):
    """NIC ``MTU``, else ``conf_key`` of CONF / the conf file (reference §2.4, §2.5)."""
    if nic.get("MTU") != "":
        return nic.int_attr("MTU", *MTU_RANGE)
    return _int_setting(conf.get(conf_key), f"{nic.label}: {conf_key}", *MTU_RANGE)


def _setting(nic, conf, attribute, conf_key):
    """NIC attribute > CONF > conf file (defaults included): the reference's conf_attribute."""
    value = nic.get(attribute)
    return value if value != "" else conf.get(conf_key)


def _link_options(nic, conf):
    return merge_options(conf.get("ip_link_conf"), nic.get("IP_LINK_CONF"),
                         f"{nic.label}: IP_LINK_CONF")


def _device_name(nic, vlan_id):
    return checked_vlan_device_name(nic.phydev, vlan_id, f"{nic.label}: VLAN device name")


def _unknown(nic, key, known):
    return InputError(f"{nic.label}: IP_LINK_CONF/ip_link_conf option {key!r} is not supported "
                      f"here (known: {', '.join(sorted(known))})")


def vlan_spec(nic, conf):
    """The 802.1Q device ``<PHYDEV>.<VLAN_ID>``: ``ip link add link PHYDEV … type vlan id N``."""
    conf = nic_conf(conf, nic)
    vlan_id = nic.int_attr("VLAN_ID", *VLAN_ID_RANGE)
    mtu = _mtu(nic, conf, "vlan_mtu")  # per-network CONF honoured (SPEC decision 2)
    data = {"id": vlan_id}
    shown = [f"id {vlan_id}"]
    flags = mask = 0
    for key, value in _link_options(nic, conf).items():
        what = f"{nic.label}: IP_LINK_CONF {key}"
        if key == "protocol":
            proto = VLAN_PROTOCOLS.get(str(value).lower())
            if proto is None:
                raise InputError(f"{what} {value!r} is not one of 802.1Q, 802.1ad")
            data["protocol"] = proto
        elif key in VLAN_FLAG_BITS:
            low = value.lower() if isinstance(value, str) else value
            if low in _TRUE:
                flags |= VLAN_FLAG_BITS[key]
            elif low not in _FALSE:
                raise InputError(f"{what} {value!r} must be on or off")
            mask |= VLAN_FLAG_BITS[key]
        else:
            raise _unknown(nic, key, list(VLAN_FLAG_BITS) + ["protocol"])
        shown.append(f"{key} {_show(value)}")
    if mask:
        data["flags"] = (flags, mask)
    return DeviceSpec("vlan", _device_name(nic, vlan_id), nic.phydev, mtu, data, True,
                      nic.label, " ".join(shown))


def vxlan_spec(nic, conf, phydev_addresses, vni_attribute="VLAN_ID"):
    """The VXLAN device ``<PHYDEV>.<VNI>``, multicast or EVPN.

    The VNI is ``VLAN_ID`` (vxlan) or ``OUTER_VLAN_ID`` (ovswitch_vxlan, whose
    VLAN_ID tags the VM ports inside the tunnel). ``phydev_addresses()`` lists
    PHYDEV's addresses; it is called only for an EVPN network whose TEP is an
    address (``VXLAN_TEP`` other than ``dev``).
    """
    conf = nic_conf(conf, nic)
    vni = nic.int_attr(vni_attribute, *VNI_RANGE)
    mtu = _mtu(nic, conf, "vxlan_mtu")
    data = {"id": vni}
    shown = [f"id {vni}"]
    on_phydev = True
    mode = str(_setting(nic, conf, "VXLAN_MODE", "vxlan_mode") or "multicast").lower()
    if mode not in VXLAN_MODES:
        raise InputError(f"{nic.label}: VXLAN_MODE {mode!r} is not one of {', '.join(VXLAN_MODES)}")
    if mode == "multicast":
        base = str(_setting(nic, conf, "VXLAN_MC", "vxlan_mc") or "239.0.0.0")
        family, group = _multicast_group(base, vni, nic.label)
        data["group" if family == _socket.AF_INET else "group6"] = group
        shown.append(f"group {group} dev {nic.phydev}")
    else:
        tep = str(_setting(nic, conf, "VXLAN_TEP", "vxlan_tep") or "dev")
        if tep == "dev":
            shown.append(f"dev {nic.phydev}")
        else:
            on_phydev = False
            family, local = _tep_address(nic, phydev_addresses())
            data["local" if family == _socket.AF_INET else "local6"] = local
            shown.append(f"local {local}")
    ttl = conf.get("vxlan_ttl")
    if ttl not in (None, ""):
        data["ttl"] = _int_setting(ttl, f"{nic.label}: vxlan_ttl", 0, 255)
        shown.append(f"ttl {data['ttl']}")
    for key, value in _link_options(nic, conf).items():
        what = f"{nic.label}: IP_LINK_CONF {key}"
        if key in VXLAN_FLAGS:
            if value is not None and (value.lower() if isinstance(value, str) else value) not in _TRUE:
                raise InputError(f"{what} is a flag: give it without a value")
            name, flag = VXLAN_FLAGS[key]
            data[name] = flag
            shown.append(key)
        elif key in VXLAN_NUMBERS:
            name, low, high = VXLAN_NUMBERS[key]
            if key == "tos" and str(value).lower() == "inherit":
                value = 1
            data[name] = _int_setting(value, what, low, high)
            shown.append(f"{key} {data[name]}")
        else:
            raise _unknown(nic, key, list(VXLAN_FLAGS) + list(VXLAN_NUMBERS))
    return DeviceSpec("vxlan", _device_name(nic, vni), nic.phydev, mtu, data, on_phydev,
                      nic.label, " ".join(shown))


def _show(value):
    if value is True:
        return "on"
    if value is False:
        return "off"
    return "" if value is None else str(value)


def _multicast_group(base, vni, label):
    """``vxlan_mc`` + VNI as an address: 239.0.0.0 + 500 = 239.0.1.244 (reference §2.5)."""
    for family, size in ((_socket.AF_INET, 4), (_socket.AF_INET6, 16)):
        try:
            raw = _socket.inet_pton(family, base.strip())
        except OSError:
            continue
        number = int.from_bytes(raw, "big") + vni
        if number >= 1 << (8 * size):
            break
        packed = number.to_bytes(size, "big")
        multicast = 224 <= packed[0] <= 239 if family == _socket.AF_INET else packed[0] == 0xFF
        if not multicast:
            break
        return family, _socket.inet_ntop(family, packed)
    raise InputError(f"{label}: VXLAN_MC/vxlan_mc {base!r} + VNI {vni} is not a multicast address")


def _tep_address(nic, addresses):
    """The first address of PHYDEV usable as a tunnel end point (reference: ``local <ip>``)."""
    # IPv4 first, as `ip addr show` lists it; host-scope (loopback) and link-local never qualify
    usable = [(family, addr) for family, addr, scope in addresses
              if scope == 0 and not addr.startswith("fe80:")]
    usable.sort(key=lambda item: item[0] != _socket.AF_INET)
    if not usable:
        raise InputError(f"{nic.label}: VXLAN_TEP asks for the address of PHYDEV {nic.phydev}, "
                         "which has no global address")
    return usable[0]


# -- on the host -----------------------------------------------------------------

def phydev_addresses(nic):
    """PHYDEV's addresses (for an EVPN TEP given as an address), read when asked."""
    def read():
        link = reader.link(nic.phydev)
        return reader.addresses(link.index) if link else []

    return read


def plan_device_link(view, spec):
    """Steps to make the device ``spec`` exist and be up (or to check the existing one is it)."""
    label = spec.label
    phy = view.link(spec.phydev)
    if phy is None:
        raise VnmError(f"{label}: PHYDEV {spec.phydev} does not exist on this host")
    if spec.kind == "vlan" and phy.mtu is not None and spec.mtu > phy.mtu:
        # the kernel refuses a VLAN device larger than its lower device (ERANGE)
        raise VnmError(f"{label}: MTU {spec.mtu} of {spec.name} is larger than the MTU "
                       f"{phy.mtu} of PHYDEV {spec.phydev}")
    planned = []
    if spec.name not in view.planned_devices:  # else: another NIC of this action makes it
        existing = view.link(spec.name)
        if existing is None:
            view.planned_devices.add(spec.name)
            planned += [steps.CreateLink(spec), steps.Ipv6Quiet(spec.name, label),
                        steps.LinkUp(spec.name)]
        else:
            wrong = spec.differences(existing, phy.index)
            if wrong:
                raise VnmError(f"{label}: {spec.name} exists but is not the {spec.kind} device "
                               f"this network needs ({'; '.join(wrong)}); refusing to reuse it")
            if not existing.up:
                planned.append(steps.LinkUp(spec.name))
    return planned
