"""What oned sends an action: the VM XML (base64 on stdin), its NICs and security-group rules."""

import base64


def b64(xml):
    if isinstance(xml, str):
        xml = xml.encode()
    return base64.b64encode(xml)


def vm_xml(vm_id, nics, extra="", deploy_id=None, vm_mad="kvm"):
    """A reduced VM as oned builds it: one sibling <TEMPLATE> per NIC, CDATA values."""
    def element(tag, attrs):
        body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in attrs.items())
        return f"<TEMPLATE><{tag}>{body}</{tag}></TEMPLATE>"

    parts = [f"<VM><ID>{vm_id}</ID><DEPLOY_ID>{deploy_id or f'one-{vm_id}'}</DEPLOY_ID>"]
    for nic in nics:
        nic = dict(nic)
        tag = nic.pop("_tag", "NIC")
        parts.append(element(tag, nic))
    parts.append(extra)
    parts.append(f"<HISTORY_RECORDS><HISTORY><VM_MAD><![CDATA[{vm_mad}]]></VM_MAD>"
                 "</HISTORY></HISTORY_RECORDS></VM>")
    return "".join(parts)


def bridge_nic(vm_id, nic_id, bridge, phydev=None, **extra):
    nic = {"NIC_ID": nic_id, "BRIDGE": bridge, "VN_MAD": extra.pop("VN_MAD", "bridge"),
           "TARGET": f"one-{vm_id}-{nic_id}", "MAC": f"02:00:0a:00:{vm_id:02x}:{nic_id:02x}"}
    if phydev:
        nic["PHYDEV"] = phydev
    nic.update(extra)
    return nic


def rules_xml(*rules):
    """SECURITY_GROUP_RULE elements, one sibling <TEMPLATE> each, as oned sends them."""
    return "".join("<TEMPLATE><SECURITY_GROUP_RULE>"
                   + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in rule.items())
                   + "</SECURITY_GROUP_RULE></TEMPLATE>" for rule in rules)
