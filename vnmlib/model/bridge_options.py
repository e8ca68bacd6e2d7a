"""Linux bridge options: conf file + BRIDGE_CONF -> {ip-link name: kernel value}.

Two vocabularies reach us (reference §2.0): brctl names in ``:bridge_conf:``
(times in seconds) and ip-link names in ``:ip_bridge_conf:`` (times in
centiseconds, the kernel's clock_t). The reference passed brctl values through
unconverted, so ``sethello=6`` became 6 cs and the kernel refused it; we
convert (SPEC decision 2) and honour the per-network ``BRIDGE_CONF``.
"""

from vnmlib.model.config import merge_options
from vnmlib.errors import InputError

# ip-link option -> (pyroute2 IFLA_BR_* attribute, file under /sys/class/net/<br>/bridge/)
IP_OPTIONS = {
    "stp_state": ("br_stp_state", "stp_state"),
    "priority": ("br_priority", "priority"),
    "forward_delay": ("br_forward_delay", "forward_delay"),
    "hello_time": ("br_hello_time", "hello_time"),
    "max_age": ("br_max_age", "max_age"),
    "ageing_time": ("br_ageing_time", "ageing_time"),
    "vlan_filtering": ("br_vlan_filtering", "vlan_filtering"),
    "vlan_protocol": ("br_vlan_protocol", "vlan_protocol"),
    "vlan_default_pvid": ("br_vlan_default_pvid", "default_pvid"),
    "group_fwd_mask": ("br_group_fwd_mask", "group_fwd_mask"),
    "mcast_snooping": ("br_mcast_snooping", "multicast_snooping"),
    "mcast_querier": ("br_mcast_querier", "multicast_querier"),
    "nf_call_iptables": ("br_nf_call_iptables", "nf_call_iptables"),
    "nf_call_ip6tables": ("br_nf_call_ip6tables", "nf_call_ip6tables"),
    "nf_call_arptables": ("br_nf_call_arptables", "nf_call_arptables"),
}

# brctl command -> (ip-link option, factor from brctl's unit to the kernel's)
BRCTL_OPTIONS = {
    "stp": ("stp_state", 1),
    "setbridgeprio": ("priority", 1),
    "setfd": ("forward_delay", 100),
    "sethello": ("hello_time", 100),
    "setmaxage": ("max_age", 100),
    "setageing": ("ageing_time", 100),
}

_BOOLEANS = {"on": 1, "yes": 1, "true": 1, "off": 0, "no": 0, "false": 0}
# 802.1Q tag protocols by name (bridges' vlan_protocol, VLAN devices' protocol)
VLAN_PROTOCOLS = {"802.1q": 0x8100, "802.1ad": 0x88A8}


def _number(option, value, factor, what):
    if isinstance(value, bool):
        return int(value)
    if value is None:
        raise InputError(f"{what}: bridge option {option} needs a value")
    text = str(value).strip().lower()
    if option == "vlan_protocol":
        if text in VLAN_PROTOCOLS:
            return VLAN_PROTOCOLS[text]
        raise InputError(f"{what}: vlan_protocol {value!r} is not 802.1Q or 802.1ad")
    if text in _BOOLEANS:
        return _BOOLEANS[text]
    # ASCII numerals only: float() and int() also take other scripts' digits and "_"
    if not text.isascii() or "_" in text or len(text) > 32:
        raise InputError(f"{what}: bridge option {option}={value!r} is not a number")
    try:
        number = float(text) * factor if factor != 1 else int(text, 0)
    except ValueError:
        raise InputError(f"{what}: bridge option {option}={value!r} is not a number") from None
    # the kernel's values are u32; "inf" and "nan" parse as floats and fail here too
    if not 0 <= number <= 2 ** 32 - 1 or number != int(number):
        raise InputError(f"{what}: bridge option {option}={value!r} is out of range")
    return int(number)


def _translate(options, what):
    """{brctl or ip name: raw value} -> {ip name: int}, refusing unknown names."""
    result = {}
    for name, value in options.items():
        if name in BRCTL_OPTIONS:
            ip_name, factor = BRCTL_OPTIONS[name]
        elif name in IP_OPTIONS:
            ip_name, factor = name, 1
        else:
            known = ", ".join(sorted(set(IP_OPTIONS) | set(BRCTL_OPTIONS)))
            raise InputError(f"{what}: unknown bridge option {name!r} (known: {known})")
        result[ip_name] = _number(name, value, factor, what)
    return result


def bridge_options(conf, nic):
    """Options the NIC's bridge must have; the most specific source wins.

    Order: conf ``:bridge_conf:`` (brctl), conf ``:ip_bridge_conf:``, then the
    network's ``BRIDGE_CONF`` (either vocabulary).
    """
    options = _translate(merge_options(conf.get("bridge_conf"), "", "bridge_conf"),
                         "OpenNebulaNetwork.conf :bridge_conf:")
    options.update(_translate(merge_options(conf.get("ip_bridge_conf"), "", "ip_bridge_conf"),
                              "OpenNebulaNetwork.conf :ip_bridge_conf:"))
    text = nic.get("BRIDGE_CONF")
    if text:
        what = f"{nic.label}: BRIDGE_CONF"
        options.update(_translate(merge_options({}, text, what), what))
    return options


def netlink_attrs(options):
    """{ip name: value} -> pyroute2 keyword arguments for ``link('add', kind='bridge')``."""
    return {IP_OPTIONS[name][0]: value for name, value in options.items()}


def sysfs_name(option):
    return IP_OPTIONS[option][1]
