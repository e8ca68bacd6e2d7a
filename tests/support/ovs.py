"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) inside a test's namespace.

Each instance has its own database, run, log and control-socket directory
(``OVS_RUNDIR``/``OVS_DBDIR``/``OVS_LOGDIR``, which every OVS tool honours), so
it never meets the host's Open vSwitch, if any, nor another test's. On the host
kernel (no openvswitch.ko) ovs-vswitchd runs with ``--disable-system`` and
bridges need ``datapath_type=netdev`` (the userspace datapath); in the full
kernel (tools/qemu) ``kernel=True`` uses the kernel datapath. The daemons are stopped by pid.
"""

import json
import os
import subprocess
import sys
import time

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Ovs:
    def __init__(self, netns, workdir, kernel=False):
        self.netns = netns
        self.dir = os.path.join(str(workdir), "ovs")
        os.makedirs(self.dir)
        self.kernel = kernel
        self.env = {"OVS_RUNDIR": self.dir, "OVS_DBDIR": self.dir, "OVS_LOGDIR": self.dir,
                    "OVS_SYSCONFDIR": self.dir}
        self.procs = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def _netns(self, *argv):
        return ["ip", "netns", "exec", self.netns, *argv]

    def _daemon(self, name, argv, ready):
        # not --detach: the daemon stays our child, so we know its pid and can reap it
        log = open(self.path(f"{name}.out"), "wb")
        proc = subprocess.Popen(self._netns(*argv), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **self.env))
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 20
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start: {self.log(name + '.out')}")
            time.sleep(0.02)

    def start(self):
        db = self.path("conf.db")
        subprocess.run(["ovsdb-tool", "create", db, SCHEMA], check=True, capture_output=True)
        sock = self.path("db.sock")
        self._daemon("ovsdb-server", ["ovsdb-server", db, f"--remote=punix:{sock}",
                                      f"--pidfile={self.path('ovsdb-server.pid')}",
                                      f"--log-file={self.path('ovsdb-server.log')}"],
                     lambda: os.path.exists(sock))
        self.vsctl("--no-wait", "init")
        argv = ["ovs-vswitchd", f"unix:{sock}", f"--pidfile={self.path('ovs-vswitchd.pid')}",
                f"--log-file={self.path('ovs-vswitchd.log')}"]
        if not self.kernel:
            argv.append("--disable-system")  # no openvswitch.ko: userspace datapath only
        else:
            _wait_for_uptime(11)
        pidfile = self.path("ovs-vswitchd.pid")
        self._daemon("ovs-vswitchd", argv, lambda: os.path.exists(pidfile)
                     and self._ctl_ready())
        return self

    def _ctl_ready(self):
        done = subprocess.run(["ovs-appctl", "version"], capture_output=True,
                              env=dict(os.environ, **self.env), check=False)
        return done.returncode == 0

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []

    def log(self, name="ovs-vswitchd.log"):
        try:
            with open(self.path(name), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-3000:]
        except OSError:
            return ""

    # -- reading state with the OVS tools (independent of vnmlib) ----------

    def _run(self, *argv, check=True):
        done = subprocess.run(self._netns(*argv), capture_output=True, text=True,
                              env=dict(os.environ, **self.env), check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} failed: {done.stderr}")
        return done.stdout

    def vsctl(self, *args, check=True):
        return self._run("ovs-vsctl", "--timeout=10", *args, check=check)

    def ofctl(self, *args, check=True):
        return self._run("ovs-ofctl", "--timeout=10", *args, check=check)

    def opened(self, interface):
        """The OpenFlow port ovs-vswitchd gives ``interface`` once it has opened its device."""
        for _ in range(200):
            number = self.row("Interface", interface, "ofport")["ofport"]
            if isinstance(number, int) and number > 0:
                return number
            time.sleep(0.05)
        raise AssertionError(f"Open vSwitch did not open {interface}: {self.log()}")

    def libvirt_add_port(self, bridge, tap, mac=None):
        """libvirt's own call for a tap it made (virNetDevOpenvswitchAddPort): a row of that
        name, such as the one vnm's pre makes for a protected NIC, is replaced in the same
        transaction."""
        extra = ["--", "set", "Interface", tap, f'external-ids:attached-mac="{mac}"'] if mac \
            else []
        self.vsctl("--", "--if-exists", "del-port", tap, "--", "add-port", bridge, tap, *extra)

    def bridges(self):
        return set(self.vsctl("list-br").split())

    def ports(self, bridge):
        return set(self.vsctl("list-ports", bridge).split())

    def row(self, table, record, *columns):
        """{column: value} of one record, values decoded from ovs-vsctl's JSON."""
        out = json.loads(self.vsctl("--format=json", "--data=json",
                                    f"--columns={','.join(columns)}", "list", table, record))
        return {name: decode(value) for name, value in zip(out["headings"], out["data"][0])}

    def ofport(self, interface):
        return int(self.vsctl("get", "Interface", interface, "ofport"))

    def flows(self, bridge, *match):
        """``dump-flows`` lines without counters and durations, sorted."""
        lines = []
        for line in self.ofctl("--no-names", "dump-flows", bridge, *match).splitlines()[1:]:
            fields = [f for f in line.strip().replace(", ", ",").split(",")
                      if not f.split("=")[0].strip() in ("duration", "n_packets", "n_bytes",
                                                         "idle_age", "hard_age")]
            lines.append(",".join(fields))
        return sorted(lines)


def _wait_for_uptime(seconds):
    """Wait until the kernel has been up ``seconds``.

    OVS 3.1 counts the CPUs for its kernel-datapath upcall handlers at most once
    every 10 s of CLOCK_MONOTONIC, starting from 0: on a kernel up for less than
    10 s (a full-kernel guest just booted) it counts 0 CPUs, starts 0
    handlers, and no packet ever reaches the flow tables (lib/ovs-thread.c,
    count_cpu_cores).
    """
    with open("/proc/uptime", encoding="ascii") as handle:
        uptime = float(handle.read().split()[0])
    if uptime < seconds:
        time.sleep(seconds - uptime)


def decode(value):
    """OVSDB JSON (RFC 7047) -> Python: sets to lists, maps to dicts, uuids to strings."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("set", "map", "uuid"):
        kind, body = value
        if kind == "set":
            return [decode(v) for v in body]
        if kind == "map":
            return {decode(k): decode(v) for k, v in body}
        return body
    return value


class OvsHost:
    """A hypervisor for the OVS tests: a namespace, its private Open vSwitch, a remotes tree.

    On the host kernel the tree's OpenNebulaNetwork.conf puts the bridges vnm
    creates on the userspace datapath (``:ovs_bridge_conf: datapath_type:
    netdev``), as an operator of such a host would; with ``kernel=True`` (full kernel)
    bridges use the default kernel datapath.
    """

    def __init__(self, workdir, kernel=False, conf=""):
        from support.namespaces import Namespace
        from support.remotes import copy_tree

        os.makedirs(os.path.join(str(workdir), "run"), exist_ok=True)
        self.ns = Namespace(os.path.join(str(workdir), "run"))
        if not kernel:
            conf = ":ovs_bridge_conf:\n    :datapath_type: netdev\n" + conf
        self.tree = copy_tree(os.path.join(str(workdir), "remotes"), conf)
        self.ovs = Ovs(self.ns.name, workdir, kernel=kernel)
        self.guests = []
        try:
            self.ovs.start()
        except BaseException:
            self.delete()
            raise

    def delete(self):
        self.ovs.stop()
        for guest in self.guests:
            guest.delete()
        self.ns.delete()

    def run(self, driver, action, *args, stdin=b"", env=None, tree=None):
        return self.ns.run(driver, action, *args, stdin=stdin, tree=tree or self.tree,
                           env=dict(self.ovs.env, **(env or {})))

    def plug(self, bridge, tap):
        """What libvirt does for ``<virtualport type='openvswitch'/>``: tap, then port."""
        self.ns.add_tap(tap)
        self.ovs.vsctl("--may-exist", "add-port", bridge, tap)

    def guest(self, bridge, tap, mac, ipv4):
        """A VM's namespace on a new tap, plugged into ``bridge``."""
        from support.namespaces import Guest

        guest = Guest(self.ns, tap=tap, mac=mac, ipv4=ipv4)
        self.guests.append(guest)
        self.ovs.vsctl("--may-exist", "add-port", bridge, tap)
        return guest


def reset_host(host):
    """Between the tests of a module: no bridge, no tap, no guest, no user record, defaults."""
    for bridge in host.ovs.bridges():
        host.ovs.vsctl("--if-exists", "del-br", bridge)
    host.ovs.vsctl("remove", "Open_vSwitch", ".", "other_config", "vlan-limit")
    for guest in host.guests:
        guest.delete()
    host.guests = []
    keep = {"lo", "uplink0", "uplink0p", "uplink1", "uplink1p", "ovs-netdev", "ovs-system"}
    for name in set(host.ns.links()) - keep:
        host.ns.ip("link", "del", name, check=False)
    import shutil

    shutil.rmtree(os.path.join(host.ns.run_dir, "users"), ignore_errors=True)


# The guest side computes its checksums (ethtool -K <dev> tx off, by ioctl: no ethtool
# here). A veth leaves TCP/UDP checksums to "hardware"; the kernel datapath copes,
# but the userspace datapath's conntrack checks them and marks such a packet invalid.
NO_TX_CSUM = """import array, fcntl, socket, struct, sys
value = array.array("B", struct.pack("II", 0x17, 0))  # ETHTOOL_STXCSUM, off
request = struct.pack("16sP", sys.argv[1].encode(), value.buffer_info()[0])
fcntl.ioctl(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0x8946, request)  # SIOCETHTOOL
"""


def checksums_in_software(guest):
    """For traffic through conntrack on the userspace datapath (above)."""
    subprocess.run(["ip", "netns", "exec", guest.name, sys.executable, "-c", NO_TX_CSUM,
                    guest.dev], check=True)
