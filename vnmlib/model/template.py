"""stdin bytes -> typed VM / NIC / NIC_ALIAS / PCI / security-group rules.

oned sends base64 of a compact XML document (reference §1.2). The reduced VM of
pre/post/clean/update_sg spreads its content over *many sibling* ``<TEMPLATE>``
and ``<HISTORY_RECORDS>`` elements, so every lookup here iterates over all of
them (``iterfind('TEMPLATE/NIC')``), never ``find('TEMPLATE')``.
"""

import binascii
import re

from vnmlib.model.addresses import parse_address
from vnmlib.errors import InputError, shown
from vnmlib.model.limits import MAX_STDIN_BYTES
from vnmlib.model.numbers import decimal
from vnmlib.model.naming import NIC_ID_MAX, VM_ID_MAX, check_ifname, parse_vlan_ranges

_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")

# Every address attribute vnm reads, with its family: each is checked on
# every NIC and alias of the running driver, whichever of them the driver
# uses, so a hostile value is refused the same way everywhere (SPEC §7).
ADDRESS_ATTRIBUTES = (("IP", 4), ("VROUTER_IP", 4), ("EXTERNAL_IP", 4), ("GATEWAY", 4),
                      ("IP6", 6), ("IP6_GLOBAL", 6), ("IP6_ULA", 6), ("IP6_LINK", 6),
                      ("VROUTER_IP6", 6), ("VROUTER_IP6_GLOBAL", 6), ("VROUTER_IP6_ULA", 6),
                      ("VROUTER_IP6_LINK", 6))


def decode_base64(data):
    """Decode like Ruby's ``Base64.decode64``: ignore line breaks, junk and padding."""
    if len(data) > MAX_STDIN_BYTES:
        raise InputError(f"stdin is {len(data)} bytes, more than the {MAX_STDIN_BYTES} allowed")
    clean = _B64_JUNK.sub(b"", data)
    if not clean:
        raise InputError("stdin is empty: expected the base64 VM description from oned")
    if len(clean) % 4 == 1:
        raise InputError("stdin is not valid base64 (truncated)")
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))


MAX_XML_DEPTH = 256  # libxml2's limit without XML_PARSE_HUGE: oned nests 4 deep


def parse_xml(raw, action_root):
    """Parse with the standard library's expat; refuse any DOCTYPE outright.

    oned never sends a DOCTYPE, so one can only come from a hostile or broken
    source: refusing it closes entity expansion and external entities at once
    (an entity without one is undefined, a parse error). The byte check gives
    the plain message; the builder's refusal also covers a document whose
    encoding (UTF-16) hides those bytes. ``xml.etree`` rather than lxml: the
    same tree API for 2 ms of imports instead of 14, in every action.
    """
    from xml.etree import ElementTree

    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise InputError("the XML document carries a DOCTYPE or ENTITY declaration; refused")

    class Builder(ElementTree.TreeBuilder):  # comments and PIs are left out by default
        depth = 0

        def doctype(self, name, pubid, system):
            raise InputError("the XML document carries a DOCTYPE or ENTITY declaration; "
                             "refused")

        def start(self, tag, attrs):
            self.depth += 1
            if self.depth > MAX_XML_DEPTH:
                raise InputError(f"the XML document nests deeper than {MAX_XML_DEPTH} "
                                 "elements; refused")
            return super().start(tag, attrs)

        def end(self, tag):
            self.depth -= 1
            return super().end(tag)

    parser = ElementTree.XMLParser(target=Builder())
    try:
        parser.feed(raw)
        root = parser.close()
    except ElementTree.ParseError as exc:
        raise InputError(f"stdin is not a valid XML document: {exc}") from None
    if root.tag != action_root:
        raise InputError(f"expected a <{action_root}> document, got <{root.tag}>")
    return root


def _text(element):
    return (element.text or "").strip() if element is not None else ""


def _leaf_attributes(element):
    """Child elements -> {NAME: text}. Nested elements are skipped; the first wins."""
    attrs = {}
    for child in element:
        if isinstance(child.tag, str) and len(child) == 0 and child.tag not in attrs:
            attrs[child.tag] = _text(child)
    return attrs


def _yes(value):
    return value.strip().upper() == "YES"


class _Element:
    """An element's leaf children as {NAME: text}; empty values read as absent."""

    __slots__ = ("attrs",)

    def __init__(self, attrs):
        self.attrs = attrs

    def get(self, name, default=""):
        value = self.attrs.get(name, "")
        return value if value != "" else default


class Nic(_Element):
    """One ``NIC``, ``NIC_ALIAS`` or ``PCI`` element of the VM (``kind`` says which)."""

    __slots__ = ("kind", "vm_id")

    def __init__(self, kind, attrs, vm_id):
        super().__init__(attrs)
        self.kind = kind
        self.vm_id = vm_id

    @property
    def label(self):
        """How error lines name this NIC: ``NIC 1``, ``NIC_ALIAS 3``, ``PCI 4``."""
        nic_id = self.get("NIC_ID", "?")
        if nic_id != "?" and decimal(nic_id, signed=True) is None:
            nic_id = shown(nic_id)  # the user's text: quoted, escaped, cut
        return f"{self.kind} {nic_id}"

    def int_attr(self, name, low=None, high=None, required=True):
        value = self.get(name)
        if value == "":
            if required:
                raise InputError(f"{self.label}: {name} is missing")
            return None
        number = decimal(value, signed=True)
        if number is None:
            raise InputError(f"{self.label}: {name} {shown(value)} is not an integer")
        if (low is not None and number < low) or (high is not None and number > high):
            raise InputError(f"{self.label}: {name} {number} is out of range {low}..{high}")
        return number

    def ip_address(self, name, version):
        """Attribute ``name`` as an IPv``version`` address (ipaddress object); None when unset."""
        text = self.get(name)
        return parse_address(text, version, f"{self.label}: {name}") if text else None

    def mac_attr(self, why=""):
        """``MAC`` in lower case, validated ("" when unset); ``why`` ends the error line."""
        mac = self.get("MAC")
        if mac and not _MAC.fullmatch(mac):
            raise InputError(f"{self.label}: MAC {shown(mac)} is not a MAC address{why}")
        return mac.lower()

    def check_attributes(self):
        """Type what any driver reads of this element, so that a bad value fails every action.

        Addresses, MAC and TARGET feed restore, ipset and OpenFlow scripts;
        NIC_ID the chain, set and flow names.
        """
        self.int_attr("NIC_ID", 0, NIC_ID_MAX)
        for name, version in ADDRESS_ATTRIBUTES:
            self.ip_address(name, version)
        self.mac_attr()
        if self.get("TARGET"):
            self.ifname_attr("TARGET")
        return self

    def ifname_attr(self, name, required=True):
        value = self.get(name)
        if value == "" and not required:
            return ""
        return check_ifname(value, f"{self.label}: {name}")

    @property
    def nic_id(self):
        return self.int_attr("NIC_ID", 0, NIC_ID_MAX)

    @property
    def vn_mad(self):
        return self.get("VN_MAD")

    @property
    def bridge(self):
        return self.ifname_attr("BRIDGE")

    @property
    def phydev(self):
        """The uplink, or "" when the network has none."""
        return self.ifname_attr("PHYDEV", required=False)

    @property
    def vlan_id(self):
        """802.1Q VID or VXLAN VNI; None when unset."""
        return self.int_attr("VLAN_ID", 0, 16777215, required=False)

    @property
    def attached(self):
        return _yes(self.get("ATTACH", "NO"))

    @property
    def parent_id(self):
        return self.int_attr("PARENT_ID", 0, NIC_ID_MAX)

    @property
    def network_id(self):
        return self.int_attr("NETWORK_ID", 0, required=False)

    def tagged_vlans(self):
        """VLAN_TAGGED_ID expanded to a list of VIDs ([] when unset)."""
        text = self.get("VLAN_TAGGED_ID")
        return parse_vlan_ranges(text, f"{self.label}: VLAN_TAGGED_ID") if text else []


class SecurityGroupRule(_Element):
    """One ``SECURITY_GROUP_RULE`` of the VM; the firewall engine types its fields."""

    __slots__ = ()

    @property
    def security_group_id(self):
        return self.get("SECURITY_GROUP_ID")


class VM:
    """The VM as one action sees it; built by :func:`parse_vm`."""

    __slots__ = ("id", "deploy_id", "nics", "aliases", "pcis", "rules", "vm_mad",
                 "vnet_update", "libvirt_taps")

    def __init__(self, root):
        vm_id = _text(root.find("ID"))
        if not re.fullmatch(r"[0-9]{1,10}", vm_id) or int(vm_id) > VM_ID_MAX:
            raise InputError(f"VM ID {shown(vm_id)} is missing or not an integer in "
                             f"0..{VM_ID_MAX}")
        self.id = int(vm_id)
        self.deploy_id = _text(root.find("DEPLOY_ID"))
        self.nics = [Nic("NIC", _leaf_attributes(e), self.id) for e in root.iterfind("TEMPLATE/NIC")]
        self.aliases = [Nic("NIC_ALIAS", _leaf_attributes(e), self.id)
                        for e in root.iterfind("TEMPLATE/NIC_ALIAS")]
        self.pcis = [Nic("PCI", _leaf_attributes(e), self.id) for e in root.iterfind("TEMPLATE/PCI")]
        self.rules = [SecurityGroupRule(_leaf_attributes(e))
                      for e in root.iterfind("TEMPLATE/SECURITY_GROUP_RULE")]
        # HISTORY_RECORDS may be absent (the reference crashes then); "" means unknown.
        self.vm_mad = _text(root.find("HISTORY_RECORDS/HISTORY/VM_MAD"))
        update = root.find("TEMPLATE/VNET_UPDATE")
        self.vnet_update = _leaf_attributes(update) if update is not None else {}
        # {MAC: tap} of the running domain as libvirt has it (vnmlib.host.libvirt_domain,
        # set by the action's context); empty: taps come from TARGET
        self.libvirt_taps = {}

    def tap_name(self, nic):
        """The host side of a guest NIC.

        KVM: the tap libvirt has for the NIC's MAC when the domain runs here
        (the reference's ``get_tap`` reads it from ``virsh dumpxml``), else
        ``TARGET`` (oned sets ``one-<vm>-<nic>``); LXC names the veth
        ``<deploy_id>-<nic_id>`` (reference §2.0).
        """
        if self.vm_mad == "lxc" and self.deploy_id:
            return check_ifname(f"{self.deploy_id}-{nic.nic_id}", f"{nic.label}: tap")
        live = self.libvirt_taps.get(nic.mac_attr()) if self.libvirt_taps else None
        if live:
            return live
        target = nic.get("TARGET")
        if target:
            return check_ifname(target, f"{nic.label}: TARGET")
        return check_ifname(f"one-{self.id}-{nic.nic_id}", f"{nic.label}: tap")

    def driver_nics(self, driver):
        """NICs with ``VN_MAD=driver`` (SPEC §2); the driver's PCI devices are in ``pcis``.

        These NICs and their aliases have their attributes checked here, so
        that whatever part of them an action reads, a hostile value fails it.
        """
        nics = [n.check_attributes() for n in self.nics if n.vn_mad == driver]
        mine = {n.nic_id for n in nics}
        for alias in self.aliases:
            # parent_id refuses an unreadable PARENT_ID: such an alias could be one of ours
            if alias.parent_id in mine:
                alias.check_attributes()
        return nics

    def driver_aliases(self, driver):
        """Aliases whose *parent* NIC belongs to ``driver`` (SPEC decision 3)."""
        mine = {n.get("NIC_ID") for n in self.driver_nics(driver)}
        return [a for a in self.aliases if a.get("PARENT_ID") in mine]

    def aliases_of(self, nic, leaving=None, driver=None):
        """The aliases whose PARENT_ID is ``nic``'s NIC_ID, except ``leaving`` (being detached).

        With ``driver``, only among :meth:`driver_aliases` (whose attributes that
        call checks). IDs compare as oned wrote them, as :meth:`driver_aliases` does.
        """
        candidates = self.aliases if driver is None else self.driver_aliases(driver)
        return [a for a in candidates
                if a.get("PARENT_ID") == nic.get("NIC_ID") and a is not leaving]

    def alias_parent(self, alias, driver):
        """The NIC of ``driver`` that ``alias`` belongs to (its PARENT_ID), or None."""
        return next((n for n in self.driver_nics(driver)
                     if n.get("NIC_ID") == alias.get("PARENT_ID")), None)

    def hotplugged(self):
        """The NIC, NIC_ALIAS or PCI carrying ``ATTACH=YES``, or None (reference §5.4)."""
        for element in self.nics + self.aliases + self.pcis:
            if element.attached:
                return element
        return None

    def scoped_nics(self, driver):
        """The driver's NICs an attach/detach ``post``/``clean`` acts on.

        During a hot-plug only the attached element counts: if it is another
        driver's NIC, or an alias or PCI device (no bridge-level work), the
        answer is empty.
        """
        plugged = self.hotplugged()
        if plugged is None:
            return self.driver_nics(driver)
        if plugged.kind == "NIC" and plugged.vn_mad == driver:
            return [plugged.check_attributes()]
        return []


def parse_vm(stdin_bytes):
    return VM(parse_xml(decode_base64(stdin_bytes), "VM"))


def parse_vnet(stdin_bytes):
    """The ``<VNET>`` of vnet_create / vnet_delete, as {NAME: text} plus ``ID``."""
    root = parse_xml(decode_base64(stdin_bytes), "VNET")
    template = root.find("TEMPLATE")
    attrs = _leaf_attributes(template) if template is not None else {}
    attrs.update(_leaf_attributes(root))  # ID, NAME… of the VNET itself win
    return attrs
