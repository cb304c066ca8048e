"""Reaching hosts: one :class:`~relconsole.hosts.base.Transport` base, its SSH and local
implementations, host-key trust, and :func:`~relconsole.hosts.connect.open_transport`
to pick one. Nothing here knows about builds, releases or supervisor."""
