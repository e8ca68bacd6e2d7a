"""elastic: a provider's public IPs routed to VMs' private ones (reference §6, §2.8).

``pre``, ``update_sg``, ``remote_post`` and ``remote_clean`` run on the host;
``post`` (argv ``<deploy_id> <host>``) and ``clean`` (``<host>``) run on the
front-end (oned's ``VNMAD_LOCAL_ACTIONS``): they call the provider, then run
the host side over the transport. Hooks as the reference: ``post.d`` on the
front-end, ``clean.d`` on the host (by ``remote_clean``).
"""

from vnmlib.errors import VnmError
from vnmlib.drivers import action_table, bridge, privileged, security_groups, succeed


def _targets(ctx):
    from vnmlib.elastic import targets

    return targets.scoped(ctx.vm)


def _host_arg(ctx, position, usage):
    if len(ctx.argv) <= position or not ctx.argv[position]:
        raise VnmError(f"usage: {usage}")
    return ctx.argv[position]


def _provider(ctx, host, required=True):
    """(host settings, provider); (None, None) on a host without elastic.yaml when
    not ``required``: the host side then makes routes, proxy ARP and security
    groups only, as the reference's host side, which reads no settings at all."""
    from vnmlib.elastic import providers

    host_settings = ctx.elastic_settings(host, required)
    if host_settings is None:
        return None, None
    return host_settings, providers.create(host_settings)


def _call(provider, method, target):
    try:
        getattr(provider, method)(target.ip, target.external_ip, target.opts())
    except VnmError:
        raise
    except Exception as exc:
        raise VnmError(f"{target.label}: provider {provider.name!r} could not {method} "
                       f"EXTERNAL_IP {target.external_ip} (IP {target.ip}): {exc}") from None


def _unassign_all(ctx, provider, assigned):
    """Undo ``assign`` for ``assigned`` (newest first); failures are reported, not raised."""
    failures = []
    for target in reversed(assigned):
        try:
            _call(provider, "unassign", target)
            ctx.log.info(f"{target.label}: EXTERNAL_IP {target.external_ip} unassigned")
        except VnmError as exc:
            failures.append(str(exc))
    return failures


def _front_end(ctx, host_position, usage):
    """(targets, host settings, provider), or None when the action has no target."""
    host = _host_arg(ctx, host_position, usage)
    targets = _targets(ctx)
    return (targets, *_provider(ctx, host)) if targets else None


def post(ctx):
    """Front-end: assign every target, then the host side; any failure unassigns."""
    work = _front_end(ctx, 1, "post <deploy_id> <host>")
    if work is None:
        return
    targets, host_settings, provider = work
    from vnmlib.elastic import transport

    assigned = []
    try:
        for target in targets:
            _call(provider, "assign", target)
            assigned.append(target)
            ctx.log.info(f"{target.label}: EXTERNAL_IP {target.external_ip} assigned to "
                         f"{target.ip} by provider {provider.name!r}")
        transport.run(host_settings, ctx.tree, "remote_post", ctx.argv[:2], ctx.stdin, ctx.log)
    except BaseException as exc:
        failures = _unassign_all(ctx, provider, assigned)
        if failures and isinstance(exc, VnmError):
            raise VnmError(f"{exc}; rollback incomplete: {'; '.join(failures)}") from None
        raise


def clean(ctx):
    """Front-end: unassign every target, then the host side (which runs clean.d)."""
    work = _front_end(ctx, 0, "clean <host>")
    if work is None:
        return
    targets, host_settings, provider = work
    from vnmlib.elastic import transport

    failures = _unassign_all(ctx, provider, targets)
    transport.run(host_settings, ctx.tree, "remote_clean", ctx.argv[:1], ctx.stdin, ctx.log)
    if failures:
        raise VnmError("; ".join(failures))


clean.hooks = None  # clean.d runs on the host (remote_clean), as the reference's run_hooks_remote


def _host_side(ctx, host_position, usage, method):
    host = _host_arg(ctx, host_position, usage)
    targets = _targets(ctx)
    if targets:
        from vnmlib.elastic import host as host_side

        getattr(host_side, method)(ctx, targets, _provider(ctx, host, required=False)[1])
    return targets


@privileged
def remote_post(ctx):
    """Host: routed security groups, /32 routes, proxy ARP, the provider's operations."""
    _host_side(ctx, 1, "remote_post <deploy_id> <host>", "up")


remote_post.hooks = None
remote_post.elastic_settings = True  # the caller sends elastic.yaml to the sudo helper


@privileged
def remote_clean(ctx):
    """Host: the provider's operations, proxy ARP and routes removed, then the SGs."""
    if _host_side(ctx, 0, "remote_clean <host>", "down"):
        # then the bridge, as the bridge driver's clean: deleted when no guest and
        # no other NIC's record is left (the reference never removed it: "TODO:
        # MUST check if bridge is empty")
        bridge.clean(ctx)


remote_clean.hooks = "clean"
remote_clean.elastic_settings = True


@privileged
def update_sg(ctx):
    security_groups().update_sg(ctx, bridged=False)


@privileged
def pre(ctx):
    """The reference's NoVLANDriver, i.e. the bridge (and PHYDEV); then the routed
    security groups, before the tap exists (:func:`vnmlib.firewall.pre`)."""
    security_groups().pre(ctx, lambda: bridge.pre(ctx), lambda: bridge.clean(ctx),
                          bridged=False)


ACTIONS = action_table(pre, post, clean, update_sg, succeed,
                       remote_post=remote_post, remote_clean=remote_clean)
