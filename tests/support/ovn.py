"""A private OVN deployment for the ``ovn`` driver's tests: a front-end and two hosts.

* The front-end namespace runs the northbound and southbound ``ovsdb-server``
  and ``ovn-northd``, and holds the underlay: a Linux bridge with two veths per
  host, one for the control plane (10.98.1.0/24, the southbound TCP
  connection) and one for Geneve (10.99.1.0/24).
* Each host namespace runs its own Open vSwitch (:class:`support.ovs.Ovs`,
  userspace datapath) and ``ovn-controller``, joined to the southbound database
  over TCP and to the other host by Geneve.

The userspace datapath tunnels through Open vSwitch's own routing: the
underlay address must sit on an OVS bridge (``br-phy``, holding the veth), not
on a kernel device, or ovs-vswitchd finds no route for the Geneve packets.
The southbound TCP connection does not go through br-phy: the kernel leaves
TCP checksums to the device (offload) and the userspace datapath forwards
them uncomputed to the veth, so the front-end would drop every segment.

Every daemon has private database, run, log and control-socket directories
(``OVN_RUNDIR`` etc., honoured by every OVN tool), runs inside its namespace,
and is stopped by pid; the namespaces are deleted at the end.
"""

import os
import subprocess
import time

from support.commands import sh
from support.namespaces import Guest, Namespace
from support.ovs import Ovs, decode
from support.paths import PYTHON, REPO

NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
SB_PROBE_MS = 60000  # SB's inactivity probe of its clients, as docs/drivers/ovn.md advises


def _wait(what, ready, proc=None, log="", seconds=20):
    deadline = time.monotonic() + seconds
    while not ready():
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready: {log() if callable(log) else log}")
        time.sleep(0.05)


class _Daemons:
    """Daemons started in one namespace, private dirs, stopped by pid (children, no --detach)."""

    def __init__(self, netns, directory, env):
        self.netns, self.dir, self.env = netns, directory, env
        self.procs = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, name, argv, ready):
        out = open(self.path(f"{name}.out"), "wb")
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], stdout=out,
                                stderr=subprocess.STDOUT, env=dict(os.environ, **self.env))
        out.close()
        self.procs.append(proc)
        _wait(name, ready, proc, lambda: self.tail(f"{name}.out") + self.tail(f"{name}.log"))
        return proc

    def tail(self, name):
        try:
            with open(self.path(name), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def run(self, *argv, check=True):
        done = subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True,
                              text=True, env=dict(os.environ, **self.env), check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} failed: {done.stderr}")
        return done.stdout

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


class FrontEnd:
    """NB + SB ovsdb-servers and ovn-northd in their namespace; the underlay bridge."""

    def __init__(self, workdir, subnet):
        self.ns = Namespace(os.path.join(workdir, "run"), uplinks=())
        self.subnet = subnet
        self.address = f"10.99.{subnet}.1"
        self.control = f"10.98.{subnet}.1"
        directory = os.path.join(workdir, "ovn")
        os.makedirs(directory)
        self.daemons = _Daemons(self.ns.name, directory,
                                {"OVN_RUNDIR": directory, "OVN_DBDIR": directory,
                                 "OVN_LOGDIR": directory, "OVN_SYSCONFDIR": directory})
        self.nb_sock = self.daemons.path("nb.sock")
        self.nb_remote = f"unix:{self.nb_sock}"
        self.sb_remote = f"tcp:{self.control}:6642"
        self.ns.ip("link", "add", "underlay", "type", "bridge")
        self.ns.ip("addr", "add", f"{self.address}/24", "dev", "underlay")
        self.ns.ip("addr", "add", f"{self.control}/24", "dev", "underlay")
        self.ns.ip("link", "set", "underlay", "up")

    def start(self):
        d = self.daemons
        # SB's listener from its Connection row (set below), as ovn-central's: a command-line
        # remote would probe every client after 5 s idle, and drop an ovn-controller busy
        # longer than that (binding hundreds of ports on a loaded machine), which then
        # recomputes everything when it reconnects
        for name, schema, remotes in (("nb", NB_SCHEMA, []),
                                      ("sb", SB_SCHEMA,
                                       ["--remote=db:OVN_Southbound,SB_Global,connections"])):
            sh("ovsdb-tool", "create", d.path(f"{name}.db"), schema)
            sock = d.path(f"{name}.sock")
            d.start(f"{name}-ovsdb-server",
                    ["ovsdb-server", d.path(f"{name}.db"), f"--remote=punix:{sock}", *remotes,
                     f"--pidfile={d.path(name + '.pid')}", f"--log-file={d.path(name + '.log')}",
                     f"--unixctl={d.path(name + '.ctl')}"],
                    lambda sock=sock: os.path.exists(sock))
        self.nbctl("init")
        self.sbctl("init")
        self.sbctl("set-connection", f"ptcp:6642:{self.control}")
        self.sbctl("set", "Connection", ".", f"inactivity_probe={SB_PROBE_MS}")
        pid = d.path("northd.pid")
        d.start("ovn-northd", ["ovn-northd", f"--ovnnb-db={self.nb_remote}",
                               f"--ovnsb-db=unix:{d.path('sb.sock')}", f"--pidfile={pid}",
                               f"--log-file={d.path('northd.log')}",
                               f"--unixctl={d.path('northd.ctl')}"],
                lambda: os.path.exists(pid))
        return self

    def nbctl(self, *args, check=True):
        return self.daemons.run("ovn-nbctl", f"--db={self.nb_remote}", "--timeout=10", *args,
                                check=check)

    def sbctl(self, *args, check=True):
        return self.daemons.run("ovn-sbctl", f"--db=unix:{self.daemons.path('sb.sock')}",
                                "--timeout=10", *args, check=check)

    def rows(self, table, *columns):
        """[{column: value}] of every row of an NB table (ovn-nbctl's JSON, decoded)."""
        import json

        out = json.loads(self.nbctl("--format=json", "--data=json",
                                    f"--columns={','.join(columns)}", "list", table))
        return [{h: decode(v) for h, v in zip(out["headings"], row)} for row in out["data"]]

    def dump(self):
        """The whole NB database as text: compared before and after a refused action."""
        return self.daemons.run("ovsdb-client", "dump", self.nb_remote, "OVN_Northbound")

    def stop(self):
        self.daemons.stop()
        self.ns.delete()


class Hypervisor:
    """A host namespace: Open vSwitch (netdev), br-phy on the underlay, ovn-controller."""

    def __init__(self, workdir, front, number, tree):
        os.makedirs(workdir)
        self.name = f"host{number}"
        self.tree = tree
        self.ns = Namespace(os.path.join(workdir, "run"), uplinks=())
        self.address = f"10.99.{front.subnet}.{number + 1}"
        self.ovs = Ovs(self.ns.name, workdir)
        self.guests = []
        self.controller = _Daemons(self.ns.name, self.ovs.dir, dict(
            self.ovs.env, OVN_RUNDIR=self.ovs.dir, OVN_DBDIR=self.ovs.dir,
            OVN_LOGDIR=self.ovs.dir, OVN_SYSCONFDIR=self.ovs.dir))
        # the underlay: veths from the front-end's bridge into this namespace
        for wire in (f"ul{number}", f"ctl{number}"):
            front.ns.ip("link", "add", wire, "type", "veth", "peer", "name", f"{wire}h")
            front.ns.ip("link", "set", f"{wire}h", "netns", self.ns.name)
            front.ns.ip("link", "set", wire, "master", "underlay", "up")
        self.wire = f"ul{number}h"
        self.ns.ip("addr", "add", f"10.98.{front.subnet}.{number + 1}/24", "dev", f"ctl{number}h")
        self.ns.ip("link", "set", f"ctl{number}h", "up")
        self.front = front

    def start(self):
        self.ovs.start()
        vsctl = self.ovs.vsctl
        vsctl("add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
              "--", "add-port", "br-phy", self.wire)
        self.ns.ip("link", "set", self.wire, "up")
        self.ns.ip("addr", "add", f"{self.address}/24", "dev", "br-phy")
        self.ns.ip("link", "set", "br-phy", "up")
        done = self.vnm("ovn", "join", f"--remote={self.front.sb_remote}",
                        f"--encap-ip={self.address}", f"--system-id={self.name}",
                        "--bridge-datapath-type=netdev")
        if done.returncode != 0:
            raise AssertionError(f"vnm ovn join failed: {done.stderr}")
        d = self.controller
        pid = d.path("ovn-controller.pid")
        d.start("ovn-controller", ["ovn-controller", f"unix:{self.ovs.path('db.sock')}",
                                   f"--pidfile={pid}",
                                   f"--log-file={d.path('ovn-controller.log')}"],
                lambda: os.path.exists(pid))
        _wait(f"{self.name}'s chassis", lambda: self.name in self.front.sbctl(
            "--bare", "--columns=name", "list", "Chassis"),
              log=lambda: d.tail("ovn-controller.log"))
        _wait(f"{self.name}'s br-int", lambda: "br-int" in self.ovs.bridges())
        return self

    def vnm(self, *args, env=None):
        """The ``vnm`` command in this host's namespace, on its Open vSwitch and OVN."""
        return subprocess.run(["ip", "netns", "exec", self.ns.name, PYTHON, "-m", "vnmlib.cli",
                               *args], capture_output=True, text=True, cwd=REPO, check=False,
                              env={**os.environ, **self.controller.env,
                                   "VNM_RUN_DIR": self.ns.run_dir, **(env or {})})

    def run(self, driver, action, *args, stdin=b"", env=None, tree=None):
        return self.ns.run(driver, action, *args, stdin=stdin, tree=tree or self.tree,
                           env=dict(self.ovs.env, **(env or {})))

    def guest(self, tap, mac, ipv4=None, ipv6=None):
        """A VM: a namespace on a veth whose host side ``tap`` is plugged into br-int as
        libvirt's ``<virtualport type='openvswitch'/>`` does (with its own random iface-id)."""
        guest = Guest(self.ns, tap=tap, mac=mac, ipv4=ipv4, ipv6=ipv6)
        self.guests.append(guest)
        self.ovs.vsctl("--may-exist", "add-port", "br-int", tap, "--", "set", "Interface", tap,
                       f"external_ids:iface-id=libvirt-{os.urandom(4).hex()}",
                       "external_ids:iface-status=active")
        return guest

    def unplug(self, guest, tap):
        self.ovs.vsctl("--if-exists", "del-port", "br-int", tap)
        self.ns.ip("link", "del", tap, check=False)
        guest.delete()
        self.guests.remove(guest)

    def stop(self):
        self.controller.stop()
        self.ovs.stop()
        for guest in self.guests:
            guest.delete()
        self.ns.delete()


class OvnBed:
    """The front-end and ``hosts`` hypervisors, started; :meth:`stop` undoes everything."""

    def __init__(self, workdir, tree, hosts=2):
        workdir = str(workdir)
        self.front = FrontEnd(os.path.join(workdir, "front"), 1)
        self.hosts = []
        try:
            self.front.start()
            for number in range(1, hosts + 1):
                host = Hypervisor(os.path.join(workdir, f"host{number}"), self.front, number, tree)
                self.hosts.append(host)
                host.start()
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for host in self.hosts:
            host.stop()
        self.front.stop()
