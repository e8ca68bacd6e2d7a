"""``etc/vnm/elastic.yaml``: which provider serves a host, and how the front-end reaches it.

The file lives beside OpenNebulaNetwork.conf, so ``onehost sync`` carries it to
the hosts and both sides of an action resolve the same provider. It may hold
provider credentials: it must not be readable by other users (oneadmin's
group may read it). Layout (``etc/vnm/elastic.yaml.example`` documents it)::

    providers:                  # name -> driver and its settings
      lab: {driver: nat, interface: eth1}
    hosts:                      # host name or glob -> provider name, or a mapping
      node1: lab                #   with "provider" plus settings that override
      "aws-*": {provider: ec2, instance_id: i-0abc}
    clusters:                   # named groups of hosts (names or globs)
      edge: {hosts: [node7, node8], provider: lab}
    default: lab                # hosts matching nothing above (optional)
    transport:                  # front-end -> host (settings may override per host)
      remote_dir: /var/tmp/one/vnm
      ssh_options: [-o, ConnectTimeout=10]

Hosts are matched in that order: exact host name, host globs, clusters, default.
"""

import fnmatch
import os

from vnmlib.model.config import parse_sent, read_yaml
from vnmlib.errors import InputError

FILE = "elastic.yaml"
DEFAULT_REMOTE_DIR = "/var/tmp/one/vnm"  # where onehost sync puts the tree (reference §6)


def path(tree):
    return os.path.normpath(os.path.join(tree, "..", "etc", "vnm", FILE))


class HostSettings:
    """The provider (name, driver, settings) and the transport for one host."""

    __slots__ = ("host", "provider", "driver", "values", "transport")

    def __init__(self, host, provider, values, transport):
        self.host = host
        self.provider = provider
        self.values = values
        self.driver = str(values.get("driver") or "")
        self.transport = transport

    def get(self, key, default=None):
        value = self.values.get(key)
        return default if value in (None, "") else value


def _mapping(value, where, source):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{source}: {where} must be a mapping, got {type(value).__name__}")
    return value


def _entry(value, where, source):
    """A host/cluster/default entry: "name" or {provider: name, …overrides}."""
    if isinstance(value, str):
        return {"provider": value}
    entry = _mapping(value, where, source)
    if not isinstance(entry.get("provider"), str):
        raise InputError(f"{source}: {where} names no provider")
    return entry


def _match(data, host, source):
    hosts = _mapping(data.get("hosts"), "hosts", source)
    if host in hosts:
        return _entry(hosts[host], f"hosts: {host}", source)
    for pattern, value in hosts.items():
        if fnmatch.fnmatchcase(host, str(pattern)):
            return _entry(value, f"hosts: {pattern}", source)
    for name, value in _mapping(data.get("clusters"), "clusters", source).items():
        cluster = _entry(value, f"clusters: {name}", source)
        members = cluster.get("hosts") or []
        if not isinstance(members, list):
            raise InputError(f"{source}: clusters: {name}: hosts must be a list")
        if any(fnmatch.fnmatchcase(host, str(m)) for m in members):
            return cluster
    if data.get("default") is not None:
        return _entry(data["default"], "default", source)
    return None


def _check_private(source):
    from vnmlib.safe_paths import open_fd

    fd = open_fd(source, os.O_PATH)
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if mode & 0o007:
        raise InputError(f"{source} may hold provider credentials but other users can access it "
                         f"(mode {mode & 0o777:04o}); chmod 0600 (or 0640 for oneadmin's group)")


def read_private(tree):
    """The bytes of the tree's elastic.yaml, checked private; None when there is none.

    What a non-root caller sends to the sudo helper, which never opens the
    caller's files itself.
    """
    from vnmlib.safe_paths import read_bytes

    source = path(tree)
    try:
        _check_private(source)
        return read_bytes(source)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from None


def for_host(tree, host, cache_dir=None):
    """The :class:`HostSettings` of ``host``; one clear error when there are none."""
    source = path(tree)
    data = read_yaml(source, cache_dir, "elastic.marshal")
    if data is None:
        raise missing(source)
    _check_private(source)
    return resolve(data, source, host)


def for_host_sent(text, host, cache_dir=None):
    """As :func:`for_host`, from the bytes the sudo helper's caller sent."""
    source = f"{FILE} (sent by the caller)"
    data = parse_sent(text, source, cache_dir, "elastic-sent.marshal")
    if data is None:
        raise missing(FILE)
    return resolve(data, source, host)


class Missing(InputError):
    """There is no elastic.yaml (the host side works without one)."""


def missing(source):
    return Missing(f"no elastic provider is configured: {source} does not exist "
                   f"(see {FILE}.example)")


def resolve(data, source, host):
    """The :class:`HostSettings` of ``host`` in the parsed file ``data``."""
    entry = _match(data, host, source)
    if entry is None:
        raise InputError(f"{source}: no provider for host {host!r} (no hosts, clusters or "
                         "default entry matches)")
    name = entry["provider"]
    providers = _mapping(data.get("providers"), "providers", source)
    if name not in providers:
        raise InputError(f"{source}: host {host!r} uses provider {name!r}, which 'providers' "
                         f"does not define (defined: {', '.join(map(str, providers)) or 'none'})")
    values = dict(_mapping(providers[name], f"providers: {name}", source))
    values.update({k: v for k, v in entry.items() if k not in ("provider", "hosts")})
    if not isinstance(values.get("driver"), str) or not values["driver"]:
        raise InputError(f"{source}: provider {name!r} has no driver")
    transport = dict(_mapping(data.get("transport"), "transport", source))
    for key in ("remote_dir", "ssh_options", "ssh_user", "local"):
        if key in values:
            transport[key] = values.pop(key)
    return HostSettings(host, name, values, transport)
