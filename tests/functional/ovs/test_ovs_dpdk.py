"""ovswitch with BRIDGE_TYPE=openvswitch_dpdk: vhost-user ports on Debian's DPDK Open vSwitch.

One private Open vSwitch per module, run with the DPDK build of ovs-vswitchd
(openvswitch-switch-dpdk's binary, named explicitly: /usr/sbin/ovs-vswitchd
stays the plain one the other tests run) in a namespace. DPDK runs without
hugepages (``--no-huge``: anonymous memory, no sysctl of the host touched) and
without PCI devices. A QEMU guest (TCG) on a vhost-user socket, its memory
shared with Open vSwitch through a memfd, reaches a namespace on the same bridge.
State is read back with ovs-vsctl / ovs-ofctl, never with vnmlib.
"""

import os
import shutil
import stat
import subprocess

import pytest

from support.assertions import assert_ok, assert_one_error
from support.libvirt_site import Console, build_initramfs, guest_kernel, kernel_version
from support.oned_input import b64, vm_xml
from support.ovs import SCHEMA, Ovs, OvsHost, reset_host
from support.paths import REPO

DPDK_VSWITCHD = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
DPDK_RUN = "/var/run/dpdk"  # where DPDK keeps a process's runtime directory (root)
OWNER = 4242  # the socket directory's parent's owner (oneadmin's /var/run/one on a node)
GUEST_MIB = 96


class DpdkOvs(Ovs):
    """tests/support/ovs.py's private Open vSwitch, with DPDK initialised before
    ovs-vswitchd starts (``dpdk-init``)."""

    def __init__(self, netns, workdir):
        super().__init__(netns, workdir)
        self.prefix = f"vnmt-dpdk-{os.getpid()}"

    def start(self):
        db = self.path("conf.db")
        subprocess.run(["ovsdb-tool", "create", db, SCHEMA], check=True, capture_output=True)
        sock = self.path("db.sock")
        self._daemon("ovsdb-server", ["ovsdb-server", db, f"--remote=punix:{sock}",
                                      f"--pidfile={self.path('ovsdb-server.pid')}",
                                      f"--log-file={self.path('ovsdb-server.log')}"],
                     lambda: os.path.exists(sock))
        # --no-huge: anonymous memory instead of hugepages (none reserved here);
        # --legacy-mem: OVS adds --in-memory otherwise, which DPDK refuses without hugepages;
        # --file-prefix: this test's own runtime directory under /var/run/dpdk, removed in stop;
        # per-port-memory: a vhost-user port's mbuf pool sized for its queues (tens of MB),
        # not the shared pool's 256k mbufs (~600 MB); -m: the pools of this module's ports
        # pmd-maxsleep: an idle PMD thread sleeps instead of spinning a shared core
        extra = (f"--no-huge --legacy-mem -m 1024 --no-pci --no-shconf --no-telemetry "
                 f"--file-prefix={self.prefix}")
        self.vsctl("--no-wait", "init", "--", "set", "Open_vSwitch", ".",
                   "other_config:dpdk-init=true", f"other_config:dpdk-extra=\"{extra}\"",
                   "other_config:per-port-memory=true", "other_config:pmd-maxsleep=10000")
        pidfile = self.path("ovs-vswitchd.pid")
        # named ovs-vswitchd, as Debian's alternative names it: OVS names its control socket
        # after the program (ovs-vswitchd.<pid>.ctl), where ovs-appctl looks for it
        program = self.path("ovs-vswitchd")
        os.symlink(DPDK_VSWITCHD, program)
        self._daemon("ovs-vswitchd", [program, f"unix:{sock}", f"--pidfile={pidfile}",
                                      f"--log-file={self.path('ovs-vswitchd.log')}",
                                      "--disable-system"],
                     lambda: os.path.exists(pidfile) and self._ctl_ready())
        assert self.vsctl("get", "Open_vSwitch", ".", "dpdk_initialized").strip() == "true", \
            self.log()
        return self

    def stop(self):
        super().stop()
        shutil.rmtree(os.path.join(DPDK_RUN, self.prefix), ignore_errors=True)
        try:
            os.rmdir(DPDK_RUN)  # only when no other DPDK process has its directory there
        except OSError:
            pass


class DpdkHost(OvsHost):
    """tests/support/ovs.py's hypervisor with the DPDK Open vSwitch and a private socket
    directory (``VNM_VHOST_DIR``) in a directory owned by :data:`OWNER`."""

    def __init__(self, workdir):
        from support.namespaces import Namespace
        from support.remotes import copy_tree

        os.makedirs(os.path.join(str(workdir), "run"))
        self.ns = Namespace(os.path.join(str(workdir), "run"))
        self.tree = copy_tree(os.path.join(str(workdir), "remotes"))
        parent = os.path.join(str(workdir), "one")
        os.makedirs(parent)
        os.chown(parent, OWNER, OWNER)
        self.sockets = os.path.join(parent, "vhost-socks")
        self.ovs = DpdkOvs(self.ns.name, workdir)
        self.guests = []
        try:
            self.ovs.start()
        except BaseException:
            self.delete()
            raise

    def run(self, driver, action, *args, stdin=b"", sockets=None):
        return super().run(driver, action, *args, stdin=stdin,
                           env={"VNM_VHOST_DIR": sockets or self.sockets})


@pytest.fixture(scope="module")
def module_host(tmp_path_factory):
    host = DpdkHost(tmp_path_factory.mktemp("ovs-dpdk"))
    yield host
    host.delete()


@pytest.fixture
def host(module_host):
    yield module_host
    reset_host(module_host)


def dpdk_nic(vm_id, nic_id, bridge, **extra):
    nic = {"NIC_ID": nic_id, "BRIDGE": bridge, "VN_MAD": "ovswitch",
           "BRIDGE_TYPE": "openvswitch_dpdk", "TARGET": f"one-{vm_id}-{nic_id}",
           "MAC": f"02:00:0a:00:{vm_id:02x}:{nic_id:02x}", "NETWORK_ID": 5}
    nic.update(extra)
    return nic


def vm(vm_id, *nics):
    return b64(vm_xml(vm_id, nics))


def assert_vhost_port(host, bridge, tap, vm_id, nic_id):
    assert tap in host.ovs.ports(bridge)
    interface = host.ovs.row("Interface", tap, "type", "options", "ofport")
    assert interface["type"] == "dpdkvhostuserclient"
    assert interface["options"] == {"vhost-server-path": os.path.join(host.sockets, tap)}
    assert interface["ofport"] > 0  # DPDK took it (an error leaves -1)
    marks = host.ovs.row("Port", tap, "external_ids")["external_ids"]
    assert marks == {"vnm-vm": str(vm_id), "vnm-nic": str(nic_id)}


def test_pre_post_clean(host):
    """pre: netdev bridge, socket directory as the reference makes it, vhost-user port;
    post: VLAN, MTU, flows on it; clean: the port goes (the bridge, without PHYDEV, stays)."""
    stdin = vm(40, dpdk_nic(40, 0, "ovsdk0", VLAN_ID=7, MTU=1400, FILTER_MAC_SPOOFING="YES"))
    assert_ok(host.run("ovswitch", "pre", stdin=stdin))
    assert host.ovs.row("Bridge", "ovsdk0", "datapath_type")["datapath_type"] == "netdev"
    info = os.lstat(host.sockets)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o755
    assert (info.st_uid, info.st_gid) == (OWNER, OWNER)  # QEMU, as oneadmin, makes sockets there
    assert_vhost_port(host, "ovsdk0", "one-40-0", 40, 0)

    assert_ok(host.run("ovswitch", "post", "one-40", "node1", stdin=stdin))
    port = host.ovs.row("Port", "one-40-0", "tag", "vlan_mode", "trunks")
    assert port == {"tag": 7, "vlan_mode": "native-untagged", "trunks": 7}
    assert host.ovs.row("Interface", "one-40-0", "mtu_request")["mtu_request"] == 1400
    ofport = host.ovs.ofport("one-40-0")
    flows = host.ovs.flows("ovsdk0", f"in_port={ofport}")
    assert any("dl_src=02:00:0a:00:28:00" in flow for flow in flows), flows

    assert_ok(host.run("ovswitch", "clean", stdin=stdin))
    assert host.ovs.ports("ovsdk0") == set()
    assert host.ovs.flows("ovsdk0", f"in_port={ofport}") == []


def test_post_adds_a_missing_port(host):
    """The reference adds the port in post too: a port pre did not leave is added there."""
    stdin = vm(41, dpdk_nic(41, 0, "ovsdk1", VLAN_ID=8))
    assert_ok(host.run("ovswitch", "pre", stdin=stdin))
    host.ovs.vsctl("del-port", "ovsdk1", "one-41-0")
    assert_ok(host.run("ovswitch", "post", "one-41", "node1", stdin=stdin))
    assert_vhost_port(host, "ovsdk1", "one-41-0", 41, 0)
    assert host.ovs.row("Port", "one-41-0", "tag")["tag"] == 8


def test_attach_and_detach(host):
    """NIC attach (pre + post with ATTACH=YES) adds the new NIC's port; detach (clean with
    ATTACH=YES) deletes only it."""
    first = dpdk_nic(42, 0, "ovsdk2", VLAN_ID=9)
    assert_ok(host.run("ovswitch", "pre", stdin=vm(42, first)))
    assert_ok(host.run("ovswitch", "post", "one-42", "node1", stdin=vm(42, first)))
    attached = vm(42, first, dpdk_nic(42, 1, "ovsdk2", VLAN_ID=9, ATTACH="YES"))
    assert_ok(host.run("ovswitch", "pre", stdin=attached))
    assert_ok(host.run("ovswitch", "post", "one-42", "node1", stdin=attached))
    assert host.ovs.ports("ovsdk2") == {"one-42-0", "one-42-1"}
    assert_vhost_port(host, "ovsdk2", "one-42-1", 42, 1)
    assert host.ovs.row("Port", "one-42-1", "tag")["tag"] == 9

    assert_ok(host.run("ovswitch", "clean", stdin=attached))
    assert host.ovs.ports("ovsdk2") == {"one-42-0"}
    assert_vhost_port(host, "ovsdk2", "one-42-0", 42, 0)


def test_a_port_that_is_not_the_nics_is_refused(host):
    """A port named TARGET that is not a vhost-user port on that socket: one error, no change."""
    stdin = vm(43, dpdk_nic(43, 0, "ovsdk3"))
    host.ovs.vsctl("add-br", "ovsdk3", "--", "set", "Bridge", "ovsdk3", "datapath_type=netdev")
    host.ovs.vsctl("add-port", "ovsdk3", "one-43-0", "--", "set", "Interface", "one-43-0",
                   "type=internal")
    before = host.ovs.vsctl("show")
    done = host.run("ovswitch", "pre", stdin=stdin)
    assert_one_error(done, "NIC 0", "TARGET one-43-0", "internal interface",
                     "dpdkvhostuserclient")
    assert host.ovs.vsctl("show") == before


def test_no_socket_directory_undoes_pre(host, tmp_path):
    """The sockets' directory cannot be made (no parent): one error, the bridge made by the
    same pre is gone again."""
    stdin = vm(46, dpdk_nic(46, 0, "ovsdk6"))
    missing = str(tmp_path / "absent" / "vhost-socks")
    done = host.run("ovswitch", "pre", stdin=stdin, sockets=missing)
    assert_one_error(done, missing, "parent")
    assert "ovsdk6" not in host.ovs.bridges()
    assert not os.path.exists(os.path.dirname(missing))


# -- a guest on the vhost-user socket --------------------------------------------

@pytest.fixture(scope="module")
def guest_boot(tmp_path_factory):
    """Debian's kernel and the libvirt tests' busybox initramfs (virtio-net, gip= address)."""
    kver = kernel_version()
    initrd = tmp_path_factory.mktemp("dpdk-guest") / "initrd.img"
    build_initramfs(initrd, kver)
    return guest_kernel(kver, os.path.join(REPO, ".cache", "qemu")), str(initrd)


def start_qemu(host, guest_boot, socket, mac, address, console):
    """QEMU as libvirt runs an ``<interface type='vhostuser'>`` domain: the vhost-user
    socket's server; guest memory in a shared memfd, which Open vSwitch maps."""
    kernel, initrd = guest_boot
    argv = ["qemu-system-x86_64", "-machine", "pc,accel=tcg,memory-backend=mem",
            "-cpu", "qemu64", "-m", f"{GUEST_MIB}M", "-smp", "1",
            "-object", f"memory-backend-memfd,id=mem,size={GUEST_MIB}M,share=on",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", f"console=ttyS0 quiet panic=-1 gip={address}",
            "-chardev", f"socket,id=vhost0,path={socket},server=on,wait=off",
            "-netdev", "vhost-user,id=net0,chardev=vhost0",
            # vectors=0 (INTx, no MSI-X): Debian's QEMU 7.2 under TCG crashes in
            # msix_set_vector_notifiers when vhost-user starts a device with MSI-X
            "-device", f"virtio-net-pci,netdev=net0,mac={mac},vectors=0",
            "-serial", f"unix:{console},server=on,wait=off"]
    return subprocess.Popen(["ip", "netns", "exec", host.ns.name, *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def tap_vm(vm_id, vlan_id):
    return vm(vm_id, {"NIC_ID": 0, "BRIDGE": "ovsdk4", "VN_MAD": "ovswitch",
                      "BRIDGE_TYPE": "openvswitch", "TARGET": f"one-{vm_id}-0",
                      "MAC": f"02:00:0a:00:{vm_id:02x}:00", "NETWORK_ID": 5, "VLAN_ID": vlan_id})


def test_guest_on_vhost_user_reaches_a_neighbour(host, guest_boot, tmp_path):
    """A QEMU guest on the vhost-user port vnm made pings a namespace on the same VLAN of
    the bridge (its tap configured by vnm too), not one on another VLAN; after clean, none."""
    dpdk = vm(44, dpdk_nic(44, 0, "ovsdk4", VLAN_ID=12))
    assert_ok(host.run("ovswitch", "pre", stdin=dpdk))
    neighbour = host.guest("ovsdk4", "one-45-0", "02:00:0a:00:2d:00", "10.44.0.2/24")
    assert_ok(host.run("ovswitch", "post", "one-45", "node1", stdin=tap_vm(45, 12)))
    stranger = host.guest("ovsdk4", "one-46-0", "02:00:0a:00:2e:00", "10.44.0.3/24")
    assert_ok(host.run("ovswitch", "post", "one-46", "node1", stdin=tap_vm(46, 13)))
    console = str(tmp_path / "console.sock")
    qemu = start_qemu(host, guest_boot, os.path.join(host.sockets, "one-44-0"),
                      "02:00:0a:00:2c:00", "10.44.0.1/24", console)
    try:
        try:
            shell = Console(console)
        except OSError:
            status = qemu.poll()
            qemu.kill()
            raise AssertionError(f"QEMU ({status}): {qemu.communicate()[1].decode()[-2000:]} "
                                 f"{host.ovs.log()}") from None
        assert_ok(host.run("ovswitch", "post", "one-44", "node1", stdin=dpdk))
        assert any(shell.ping("10.44.0.2") for _ in range(5)), host.ovs.log()
        assert neighbour.ping("10.44.0.1")
        assert not shell.ping("10.44.0.3") and not stranger.ping("10.44.0.1")
        assert_ok(host.run("ovswitch", "clean", stdin=dpdk))
        assert "one-44-0" not in host.ovs.ports("ovsdk4")
        assert not neighbour.ping("10.44.0.1")
        shell.close()
    finally:
        qemu.terminate()
        try:
            qemu.wait(timeout=10)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
