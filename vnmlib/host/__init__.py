"""The host as vnm sees and changes it: sysfs and netlink reads, steps that change links, tool runs
with timeouts, locks and plan mode. Knows no driver; imports only ``model`` and the base."""
