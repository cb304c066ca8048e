"""A client that load-balances over the bed's hosts, as a load balancer would: what
the shipping tests and bench/rolling.py watch a rolling build with."""

from __future__ import annotations

import http.client
import random
import threading
import time


def get(host, port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    """``GET path`` from the app on ``host``'s own address: (status, body)."""
    conn = http.client.HTTPConnection(host.address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class Balancer:
    """Every ``every`` seconds a round tries the hosts in random order until one answers
    200; counts the rounds and the times of those where none did."""

    def __init__(self, hosts, port: int, every: float = 0.02):
        self.hosts = list(hosts)
        self.port = port
        self.every = every
        self.rounds = 0
        self.missed: list[float] = []
        #: The second word of every answer (the sample app's version).
        self.seen: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="balancer", daemon=True)

    def __enter__(self) -> Balancer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            for host in random.sample(self.hosts, len(self.hosts)):
                try:
                    status, body = get(host, self.port, timeout=1.0)
                except (OSError, http.client.HTTPException):  # cut off mid-answer: a miss
                    continue
                if status == 200:
                    self.seen.add(body.split()[1])
                    break
            else:
                self.missed.append(time.monotonic())
            self.rounds += 1
