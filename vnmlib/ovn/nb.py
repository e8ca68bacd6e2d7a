"""The OVN northbound database through the ``ovs`` package's IDL (front-end only).

Why the IDL of Open vSwitch's own Python package (Debian: python3-openvswitch,
PyPI: ``ovs``, the ``vnm[ovn]`` extra) and not ovsdbapp or ``ovn-nbctl``:

* it is the reference client of OVSDB (RFC 7047), shipped with Open vSwitch in
  the same version as the daemons, with no further dependency (ovsdbapp adds
  pbr, fixtures, netaddr and a background thread per connection);
* a :class:`Transaction` is one OVSDB ``transact``: the whole change of an
  action (ports, groups, ACLs) commits at once or not at all, and the IDL
  adds ``verify`` prerequisites so that a concurrent writer makes it fail
  rather than be overwritten;
* ``ovn-nbctl``'s output is text for people, not an interface.

Only front-end actions import this module: hosts never write NB and need no
``ovs`` package (their side uses ovs-vsctl, :mod:`vnmlib.ovn.host`).
"""

import time

from vnmlib.errors import VnmError

DATABASE = "OVN_Northbound"
TABLES = ("Logical_Switch", "Logical_Switch_Port", "Port_Group", "ACL", "DHCP_Options",
          "Logical_Router", "Logical_Router_Port", "Gateway_Chassis",
          "Logical_Router_Static_Route", "NAT")
DEFAULT_REMOTE = "unix:/var/run/ovn/ovnnb_db.sock"  # Debian's ovn-central


def _ovs():
    try:
        import ovs.db.idl
        import ovs.jsonrpc
        import ovs.poller
        import ovs.stream
    except ImportError:
        raise VnmError("the ovn driver's front-end actions need the Python package 'ovs' "
                       "(Debian: python3-openvswitch; pip: vnm[ovn])") from None
    return ovs


def remote_of(conf):
    """``:ovn_nb_connection:`` of OpenNebulaNetwork.conf (an OVSDB remote), checked."""
    remote = str(conf.get("ovn_nb_connection") or DEFAULT_REMOTE)
    if not remote.startswith(("unix:", "tcp:", "ssl:")) or any(c.isspace() for c in remote):
        raise VnmError(f"ovn_nb_connection {remote!r} in OpenNebulaNetwork.conf is not an "
                       "OVSDB remote (unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT)")
    return remote


def timeout_of(conf):
    value = conf.get("ovn_nb_timeout", 10)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise VnmError(f"ovn_nb_timeout {value!r} in OpenNebulaNetwork.conf is not a positive "
                       "number of seconds")
    return float(value)


class Northbound:
    """A connected IDL holding the tables vnm uses; :meth:`transact` commits changes."""

    def __init__(self, remote, timeout, tables=None):
        self.remote = remote
        self.deadline = time.monotonic() + timeout
        ovs = _ovs()
        helper = ovs.db.idl.SchemaHelper(schema_json=self._schema(ovs))
        # the IDL copies what it monitors: an action that needs two tables does not
        # read a large cloud's thousands of ports
        for table, columns in (tables or dict.fromkeys(TABLES)).items():
            if columns is None:
                helper.register_table(table)
            else:
                helper.register_columns(table, columns)
        self.idl = ovs.db.idl.Idl(remote, helper, leader_only=False)
        self._wait(lambda: self.idl.has_ever_connected(), "read")

    def _left_ms(self):
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def _schema(self, ovs):
        """The server's schema: the one this NB speaks, whatever version is installed here.

        A first plain connection also makes an unreachable NB fail at once with
        the system's reason, where the IDL would retry until the deadline.
        """
        error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(self.remote),
                                                     self._left_ms())
        if error:
            raise VnmError(f"cannot reach the OVN northbound database at {self.remote}: "
                           f"{_strerror(error)}")
        rpc = ovs.jsonrpc.Connection(stream)
        try:
            error, reply = rpc.transact_block(
                ovs.jsonrpc.Message.create_request("get_schema", [DATABASE]))
        finally:
            rpc.close()
        if error or reply.error:
            raise VnmError(f"OVN northbound database at {self.remote}: no {DATABASE} schema "
                           f"({_strerror(error) if error else reply.error})")
        return reply.result

    def _wait(self, done, what):
        import ovs.poller

        while True:
            self.idl.run()
            if done():
                return
            if time.monotonic() >= self.deadline:
                raise VnmError(f"OVN northbound database at {self.remote}: no answer within "
                               f"the timeout (ovn_nb_timeout) to {what}")
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            poller.timer_wait(min(self._left_ms(), 500))
            poller.block()

    def table(self, name):
        return self.idl.tables[name].rows.values()

    def transact(self, what, build):
        """Commit the changes ``build(txn)`` makes, as one OVSDB transaction (bounded).

        ``build`` reads the IDL's rows and writes through ``txn``; when another
        client changed what it read (``verify``), it runs again on the new
        contents. A failure names ``what`` and leaves NB unchanged.
        """
        import ovs.db.idl

        T = ovs.db.idl.Transaction
        while True:
            txn = T(self.idl)
            try:
                build(txn)
            except BaseException:
                txn.abort()
                raise
            status = self._commit(txn, what)
            if status in (T.SUCCESS, T.UNCHANGED):
                return
            if status != T.TRY_AGAIN:
                detail = txn.get_error() if status == T.ERROR else T.status_to_string(status)
                raise VnmError(f"{what}: the OVN northbound database refused the transaction "
                               f"({detail}); nothing was changed")
            seqno = self.idl.change_seqno
            self._wait(lambda: self.idl.change_seqno != seqno, what)

    def _commit(self, txn, what):
        import ovs.db.idl
        import ovs.poller

        while True:
            status = txn.commit()
            if status != ovs.db.idl.Transaction.INCOMPLETE:
                return status
            if time.monotonic() >= self.deadline:
                txn.abort()
                raise VnmError(f"{what}: the OVN northbound database at {self.remote} did not "
                               "answer within the timeout (ovn_nb_timeout)")
            self.idl.run()
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            txn.wait(poller)
            poller.timer_wait(min(self._left_ms(), 500))
            poller.block()

    def close(self):
        self.idl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _strerror(code):
    import os

    return os.strerror(code) if isinstance(code, int) and code > 0 else str(code)


def connect(conf, tables=None):
    """The NB of ``conf``, monitoring ``tables`` ({table: columns, None for all}; all of
    :data:`TABLES` by default)."""
    return Northbound(remote_of(conf), timeout_of(conf), tables)
