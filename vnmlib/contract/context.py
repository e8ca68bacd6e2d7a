"""What every action run shares, in oned's process and in root's sudo helper: the
actions and their arguments, the run's :class:`Context`, stdin within limits,
the driver's handler, and one ERROR line and an exit code for any failure.
"""

import os
import sys

from vnmlib.errors import VnmError

# Arguments each action needs (oned always passes them; a human may not).
REQUIRED_ARGS = {
    "pre": (),
    "post": (),
    "clean": (),
    "update_sg": (),
    "update_nic": ("deploy_id", "vnet_id"),
    "vnet_create": ("vnet_id",),
    "vnet_delete": ("vnet_id",),
    # the elastic driver's host side, run by its front-end post/clean
    "remote_post": ("deploy_id", "host"),
    "remote_clean": ("host",),
}
ACTIONS = tuple(REQUIRED_ARGS)


class Context:
    """What one action run knows: who it is, its input, and where its configuration is.

    ``tree`` is the remotes' ``vnm/`` directory holding ``<driver>/<action>``;
    the configuration files are read from beside it. In root's sudo helper
    there is no tree: ``sent`` holds the bytes of the caller's configuration
    files (:class:`vnmlib.contract.privileged.Sent`), and root opens no file of the
    caller's.
    """

    def __init__(self, driver, action, argv, stdin, tree, log, sent=None):
        self.driver = driver
        self.action = action
        self.argv = argv
        self.stdin = stdin
        self.tree = tree
        self.log = log
        self.sent = sent
        self._vm = None
        self._conf = None

    @property
    def vm(self):
        if self._vm is None:
            from vnmlib.host.locks import identify
            from vnmlib.model.template import parse_vm

            self._vm = parse_vm(self.stdin)
            identify(self.action, self._vm.id)  # named as the holder of its locks
            from vnmlib.host import libvirt_domain

            if self.action in libvirt_domain.LIVE_TAP_ACTIONS:
                # in root's sudo helper the configuration is the caller's: its libvirt_uri
                # (a socket= directory) must not choose a path root reads, so libvirt's own
                # run directory only (the built-in qemu:///system)
                conf_of = (lambda: {}) if self.sent else (lambda: self.conf)
                self._vm.libvirt_taps = libvirt_domain.live_taps(conf_of, self._vm, self.log)
        return self._vm

    @property
    def conf(self):
        if self._conf is None:
            from vnmlib.model import config, waits
            from vnmlib.host import locks

            cache = locks.run_dir_if_writable()
            self._conf = (config.load_sent(self.sent.conf, cache) if self.sent else
                          config.load(config.conf_path(self.tree), cache))
            waits.configure(self._conf)  # every lock wait and tool run is bounded by it
        return self._conf

    def elastic_settings(self, host, required=True):
        """The elastic provider settings of ``host`` (None when not ``required`` and
        elastic.yaml does not exist: the host side needs none, as the reference)."""
        from vnmlib.elastic import settings
        from vnmlib.host.locks import run_dir_if_writable

        try:
            if self.sent:
                return settings.for_host_sent(self.sent.elastic, host, run_dir_if_writable())
            return settings.for_host(self.tree, host, run_dir_if_writable())
        except settings.Missing:
            if required:
                raise
            return None

    def int_arg(self, position, name):
        from vnmlib.model.numbers import decimal

        value = self.argv[position] if position < len(self.argv) else None
        number = None if value is None else decimal(value, digits=10)
        if number is None:
            raise VnmError(f"argument {position + 1} ({name}) must be an integer, "
                           f"got {value!r}")
        return number


def check_argv(action, argv):
    needed = REQUIRED_ARGS[action]
    if len(argv) < len(needed):
        raise VnmError(f"usage: {action} {' '.join('<' + n + '>' for n in needed)}")


def read_stdin(extra=0):
    """stdin, at most the VM size limit plus ``extra`` bytes (the sudo helper's frame)."""
    # not from .template: the dummy driver never parses and must not pay for the XML parser or re
    from vnmlib.model.limits import MAX_STDIN_BYTES

    limit = MAX_STDIN_BYTES + extra
    data = sys.stdin.buffer.read(limit + 1) if sys.stdin else b""
    if len(data) > limit:
        raise VnmError(f"stdin is larger than {limit} bytes; refused")
    return data


def handler_of(driver, action):
    from vnmlib.drivers import load_driver

    handler = load_driver(driver).ACTIONS.get(action)
    if handler is None:
        raise VnmError(f"the {driver} driver has no {action} action")
    return handler


def reporting_errors(log, work):
    """Run ``work()``; turn any failure into one ERROR line and an exit code."""
    try:
        work()
    except VnmError as exc:
        if str(exc):
            log.failed(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.failed("interrupted")
        return 130
    except Exception as exc:  # a bug: still one line for oned, details on demand
        log.failed(f"internal error: {type(exc).__name__}: {exc}")
        if os.environ.get("VNM_DEBUG"):
            import traceback

            traceback.print_exc()
        return 1
    return 0
