"""The VM and its settings as typed values: the parsed template, OpenNebulaNetwork.conf, names, limits.

Pure parsing and checking; nothing here touches the host. Imports only the base modules
(``vnmlib.errors``, ``vnmlib.log``, ``vnmlib.safe_paths``)."""
