"""QoS on ``update_nic`` with real libvirt guests: libvirt's live limits follow the NIC.

One hypervisor namespace with a private libvirtd (tests/support/libvirt_site.py)
and two TCG guests on a Linux bridge (bridge driver): A, whose tap libvirt
names ``lvq-a0`` although its NIC's TARGET says ``one-71-0`` (the tap as
libvirt has it), and B, running an iperf3 server. The actions reach that
libvirtd through the conf's ``:libvirt_uri: qemu+unix:///system?socket=…``.

This machine's kernel has HTB and the ingress qdisc, but not sch_sfq, any tc
classifier or act_police, and the full-kernel runner cannot host libvirt
guests at a usable speed (TCG inside TCG, docs/testing.md). So libvirtd, in its
own mount namespace, runs ``tc`` through a shim (tests/support/libvirt_tc.py)
that records, and lets pass, exactly those commands when the kernel refuses
them. What libvirt shapes with HTB -- a NIC's inbound limit, the tap's egress
class, ``default 1`` without a filter -- is real: iperf3 measures it (first seconds
omitted: the bucket lets a burst through) within ±15 % of what was set, and a
removed limit by a rate well above it. The outbound limit (ingress policing)
is checked by libvirt's readback (``virsh domiftune``) and by the policer
command libvirt ran. Bad values change nothing: neither the uplink the same
update would enslave nor libvirt's limits.
"""

import os
import re
import subprocess

import pytest

from support.assertions import assert_ok, assert_one_error
from support import libvirt_tc
from support.commands import sh
from support.libvirt_site import HERE, OVS_CONF, TOOLS, Console, Site, domain_xml, interface_xml
from support.oned_input import b64, rules_xml, vm_xml

NET = 7                       # NETWORK_ID, and update_nic's vnet_id
BRIDGE = "brq7"
UPLINK = "qosup0"             # a link only a (wrongly run) PHYDEV update would enslave
LOW, HIGH = 500, 1500         # KB/s: far below what the TCG guests reach here (tens of MB/s)
# HTB counts whole frames, iperf3 TCP payload: 1514 bytes on the tap carry 1448 (MTU 1500,
# TCP timestamps)
FRAME_PER_PAYLOAD = 1514 / 1448


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = Site(tmp_path_factory.mktemp("libvirt-qos"), f"lq{os.getpid() % 100000}", [])
    try:
        host = built.host(1)
        conf = os.path.join(os.path.dirname(built.tree), "etc", "vnm", "OpenNebulaNetwork.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(OVS_CONF + f":libvirt_uri: {host.uri}\n")
        # the guests' initramfs with iperf3 (and the libraries it links) in it
        built.initrd = os.path.join(built.workdir, "guest-initrd-iperf3.gz")
        subprocess.run([os.path.join(TOOLS, "mkinitramfs.sh"), built.kver,
                        os.path.join(HERE, "libvirt_guest_init"), built.initrd, "virtio_pci",
                        "virtio_net"], check=True, capture_output=True,
                       env=dict(os.environ, EXTRA_BINARIES="/usr/bin/iperf3"))
        host.ip("link", "add", UPLINK, "type", "veth", "peer", "name", "qosup1")
        libvirt_tc.install(built.workdir, host)
    except BaseException:
        built.delete()
        raise
    yield built
    built.delete()


class Guest:
    def __init__(self, site, vm_id, index, tap):
        self.site, self.id, self.tap = site, vm_id, tap
        self.name = f"one-{vm_id}"
        self.ip = f"10.{NET}.0.{index}"
        self.nic = dict(NIC_ID=0, VN_MAD="bridge", NETWORK_ID=NET, BRIDGE=BRIDGE, IP=self.ip,
                        TARGET=f"{self.name}-0", MAC=f"02:00:0a:07:00:{index:02x}")
        self.console = None

    def stdin(self, update=None, **nic):
        extra = ""
        if update is not None:
            body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in update.items())
            extra = f"<TEMPLATE><VNET_UPDATE>{body}</VNET_UPDATE></TEMPLATE>"
        return b64(vm_xml(self.id, [{**self.nic, **nic}], extra=extra))

    def run(self, action, *args, stdin=None):
        return self.site.run(self.site.host(1), "bridge", action, *args,
                             stdin=stdin or self.stdin())

    def deploy(self):
        host = self.site.host(1)
        assert_ok(self.run("pre"))
        sock = os.path.join(self.site.workdir, f"{self.name}.sock")
        path = os.path.join(self.site.workdir, f"{self.name}.xml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(domain_xml(self.name, self.site.kernel, self.site.initrd,
                                    f"{self.ip}/24", sock,
                                    [interface_xml(BRIDGE, self.tap, self.nic["MAC"])]))
        host.virsh("define", path)
        host.virsh("start", self.name)
        assert_ok(self.run("post", self.name, host.name))
        self.console = Console(sock)

    def update_nic(self, update, **nic):
        return self.run("update_nic", self.name, str(NET), stdin=self.stdin(update, **nic))

    def limits(self):
        """libvirt's live values: {"inbound.average": 500, …}."""
        out = self.site.host(1).virsh("domiftune", self.name, self.tap, "--live").stdout
        return {key: int(value) for key, value in re.findall(r"(\S+)\s*:\s*(\d+)", out)}


@pytest.fixture(scope="module")
def guests(site):
    a, b = Guest(site, 71, 1, "lvq-a0"), Guest(site, 72, 2, "one-72-0")
    try:
        for guest in (a, b):
            guest.deploy()
        status, out = b.console.run("iperf3 -s -D")
        assert status == 0, out
        assert a.console.ping(b.ip), out
        yield a, b
    finally:
        for guest in (a, b):
            if guest.console:
                guest.console.close()
            site.host(1).virsh("destroy", guest.name, check=False)


def rate_into(a, b, limited=True):
    """KB/s (1000 bytes, as libvirt's tc rates) of frames A receives from B's iperf3 server.

    Under a limit the first 2 s are left out (the HTB bucket's burst); an
    unlimited rate only needs to be far above the limits: 2 s suffice.
    """
    timing = "-t 5 -O 2" if limited else "-t 2"
    status, out = a.console.run(f"iperf3 -c {b.ip} -R {timing} -f k", timeout=40)
    assert status == 0, out
    found = re.findall(r"([\d.]+) Kbits/sec\s.*receiver", out)
    assert found, out
    return float(found[-1]) / 8 * FRAME_PER_PAYLOAD


def near(measured, wanted):
    return abs(measured - wanted) <= 0.15 * wanted


def test_rates_follow_update_nic(site, guests, record_property):
    a, b = guests
    unlimited = rate_into(a, b, limited=False)
    record_property("unlimited_kBps", round(unlimited))
    assert unlimited > 1.5 * HIGH, unlimited  # a limit of HIGH must be measurable

    # A's NIC in oned says TARGET one-71-0; libvirt's tap is lvq-a0: found by MAC
    assert_ok(a.update_nic({"INBOUND_AVG_BW": ""}, INBOUND_AVG_BW=LOW, OUTBOUND_AVG_BW=HIGH,
                           OUTBOUND_PEAK_BW=2 * HIGH, OUTBOUND_PEAK_KB=256))
    assert a.limits() == {"inbound.average": LOW, "inbound.peak": 0, "inbound.burst": 0,
                          "inbound.floor": 0, "outbound.average": HIGH,
                          "outbound.peak": 2 * HIGH, "outbound.burst": 256}
    assert f"dev {a.tap} parent ffff: protocol all u32 match u32 0 0 police rate {HIGH}kbps " \
        f"burst 256kb" in libvirt_tc.shimmed(site.workdir)
    measured = rate_into(a, b)
    record_property("inbound_low_kBps", f"{measured:.0f} (set {LOW})")
    assert near(measured, LOW), measured

    # raise inbound, remove outbound (its attributes absent: 0); no TARGET at all: by MAC
    assert_ok(a.update_nic({"OUTBOUND_AVG_BW": HIGH}, INBOUND_AVG_BW=HIGH, TARGET=""))
    limits = a.limits()
    assert limits["inbound.average"] == HIGH and limits["outbound.average"] == 0, limits
    assert "ingress" not in sh("ip", "netns", "exec", site.host(1).name, "tc", "qdisc", "show",
                               "dev", a.tap)
    measured = rate_into(a, b)
    record_property("inbound_high_kBps", f"{measured:.0f} (set {HIGH})")
    assert near(measured, HIGH), measured

    assert_ok(a.update_nic({"INBOUND_AVG_BW": HIGH}))
    assert a.limits()["inbound.average"] == 0
    measured = rate_into(a, b, limited=False)
    record_property("inbound_removed_kBps", round(measured))
    assert measured > 1.3 * HIGH, measured


@pytest.mark.parametrize("nic,needle", [
    (dict(INBOUND_AVG_BW="12x"), "NIC 0: INBOUND_AVG_BW '12x'"),
    (dict(OUTBOUND_AVG_BW="4294967296"), "NIC 0: OUTBOUND_AVG_BW '4294967296'"),
    (dict(INBOUND_PEAK_BW="900"), "NIC 0: INBOUND_PEAK_BW is set without INBOUND_AVG_BW"),
])
def test_bad_values_change_nothing(site, guests, nic, needle):
    a, _ = guests
    assert_ok(a.update_nic({"INBOUND_AVG_BW": ""}, INBOUND_AVG_BW=LOW, INBOUND_PEAK_KB=64))
    before = a.limits()
    # the same update moves the uplink too: that privileged part must not run either
    done = a.update_nic({"PHYDEV": "", "INBOUND_AVG_BW": LOW}, PHYDEV=UPLINK, **nic)
    assert_one_error(done, needle)
    assert a.limits() == before
    assert "master" not in site.host(1).links()[UPLINK]


def test_bad_deploy_id_and_missing_nic(site, guests):
    a, _ = guests
    done = a.run("update_nic", "--domain=x", str(NET),
                 stdin=a.stdin({"INBOUND_AVG_BW": ""}, INBOUND_AVG_BW=LOW))
    assert_one_error(done, "deploy_id '--domain=x'")
    before = a.limits()
    # neither the MAC nor TARGET is in the domain: one warning, nothing set
    done = assert_ok(a.update_nic({"INBOUND_AVG_BW": ""}, INBOUND_AVG_BW=HIGH,
                                  MAC="02:00:0a:07:00:99", TARGET="one-71-9"))
    warnings = [line for line in done.stderr.decode().splitlines() if line.startswith("WARN:")]
    assert len(warnings) == 1 and "Not setting QoS. NIC 0" in warnings[0], warnings
    assert a.limits() == before


def test_post_and_clean_act_on_the_tap_libvirt_has(site, guests):
    """fw's chains match A's tap by libvirt's name (its status file), not by TARGET."""
    a, _ = guests
    host = site.host(1)
    rules = rules_xml(dict(PROTOCOL="ICMP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=130),
                      dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=130))
    stdin = b64(vm_xml(a.id, [{**a.nic, "VN_MAD": "fw", "SECURITY_GROUPS": "130"}], extra=rules))
    assert_ok(site.run(host, "fw", "pre", stdin=stdin))  # keyed on TARGET: no domain yet
    assert_ok(site.run(host, "fw", "post", a.name, host.name, stdin=stdin))
    try:
        chains = sh("ip", "netns", "exec", host.name, "iptables-save")
        assert f"--physdev-out {a.tap} " in chains and "--physdev-out one-71-0" not in chains
        assert a.console.ping(guests[1].ip)  # the ICMP rule lets B's answers in
    finally:
        assert_ok(site.run(host, "fw", "clean", host.name, stdin=stdin))
    chains = sh("ip", "netns", "exec", host.name, "iptables-save")
    assert "one-71-0-" not in chains and f"{a.tap} " not in chains, chains
