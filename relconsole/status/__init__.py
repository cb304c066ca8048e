"""supervisor's process status: the ``supervisorctl`` parser and command builders, the
fast path (a helper kept running on each host, ``remote_helper.py``, shipped as package
data), the per-connection reader that picks a path, the poller over many hosts, and the
Textual-free tracker the process view feeds."""
