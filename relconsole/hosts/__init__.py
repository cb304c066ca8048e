"""Reaching hosts: one :class:`~relconsole.hosts.base.Transport` base, its SSH and local
implementations, and how a host is reached: ssh_config, routes through jump hosts,
known_hosts, the login to each hop, the jump-host connections a run shares, host-key
trust, and :class:`~relconsole.hosts.connect.Dialer` to connect along a route. Nothing
here knows about builds, releases or supervisor."""
