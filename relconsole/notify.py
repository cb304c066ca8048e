"""Notifications: one POST per ``[notify.NAME]`` table that wants what just happened.

A run's events pass an :class:`Announcer` (a sink, after the secrets are masked): it
gathers what a notification tells (service, result, sha, branch, hosts, who, times,
the failure) and, when a run starts or ends (or a lock is removed), hands the
:class:`Postman` one delivery per target whose ``on`` and ``services`` match.

Delivery never holds or fails a run: the postman posts from threads of its own, with a
short timeout per attempt and at most :data:`ATTEMPTS` attempts with backoff; how each
delivery went is recorded in the run's history row (``deliveries``) and a failed one
is shown as a warning by the front end (``on_delivered``). A headless process waits
for pending deliveries at most :data:`EXIT_WAIT` seconds before it exits.

The URL is a secret (it often is the credential, as a Slack webhook's path is): it is
read from its reference only in the delivery thread and never appears in output,
logs, the history or an error message; errors are described from their type.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Optional
from urllib.parse import urlsplit

from relconsole.config import Config, NotifyTarget
from relconsole.events import (
    BuildFinished,
    BuildStarted,
    CommitResolved,
    Event,
    Occasion,
    Sink,
    Switched,
)
from relconsole.history import recording
from relconsole.lock import who
from relconsole.secrets import Masker, SecretError, resolve
from relconsole.text import printable

#: Seconds one attempt may take (connect and answer).
ATTEMPT_TIMEOUT = 2.0
#: Attempts per notification at most.
ATTEMPTS = 3
#: Seconds between attempts (after the first, after the second).
BACKOFF = (0.5, 1.0)
#: The longest a headless process waits for pending deliveries before it exits.
EXIT_WAIT = 10.0


@dataclass
class RunFacts:
    """What a notification tells about a run (the body's fields)."""

    service: str
    action: str
    result: Occasion
    user: str
    trigger: str
    branch: Optional[str] = None
    hosts: tuple[str, ...] = ()
    sha: Optional[str] = None
    subject: Optional[str] = None
    release: Optional[str] = None
    command: Optional[str] = None
    started: Optional[float] = None
    finished: Optional[float] = None
    duration: Optional[float] = None
    error: Optional[str] = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["result"] = self.result.value
        data["hosts"] = list(self.hosts)
        data["started"] = _iso(self.started)
        data["finished"] = _iso(self.finished)
        data["duration"] = None if self.duration is None else round(self.duration, 3)
        return data


def _iso(ts: Optional[float]) -> Optional[str]:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


_WORDS = {
    Occasion.STARTED: "started",
    Occasion.SUCCESS: "succeeded",
    Occasion.FAILED: "FAILED",
    Occasion.ROLLED_BACK: "FAILED and was rolled back",
    Occasion.CANCELLED: "was cancelled",
    Occasion.UNLOCKED: "",
}
_ICONS = {
    Occasion.STARTED: ":arrow_forward:",
    Occasion.SUCCESS: ":white_check_mark:",
    Occasion.FAILED: ":x:",
    Occasion.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    Occasion.CANCELLED: ":black_square_for_stop:",
    Occasion.UNLOCKED: ":unlock:",
}


def _slack_escape(text: str) -> str:
    """Slack's three control characters in message text (remote words are data)."""
    return printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(facts: RunFacts) -> str:
    """One line for a chat channel."""
    e = _slack_escape
    service = f"*{e(facts.service)}*"
    if facts.result is Occasion.UNLOCKED:
        line = f"{service}: deploy lock removed on {e(', '.join(facts.hosts))}"
    else:
        if facts.command is not None:
            what = f"run `{e(facts.command)}`"
        elif facts.action == "rollback":
            what = f"rollback to {e(facts.release or 'the previous release')}"
        else:
            what = f"{facts.action} of {e(facts.branch or '')}"
        sha = f" ({facts.sha[:7]})" if facts.sha else ""
        took = f" in {facts.duration:.1f}s" if facts.duration is not None else ""
        line = f"{service} {what}{sha} {_WORDS[facts.result]}{took} on {e(', '.join(facts.hosts))}"
        if facts.error:
            line += f": {e(facts.error)}"
    return f"{_ICONS[facts.result]} {line} — {e(facts.user)}"


def body(target: NotifyTarget, facts: RunFacts) -> bytes:
    """The POST body for ``target``'s format: the facts as JSON, or a Slack-compatible
    incoming-webhook message (``text``, with the facts beside it for other readers)."""
    data = facts.to_json()
    if target.format == "slack":
        data = {"text": slack_text(facts), "relconsole": data}
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Delivery:
    """How one notification went."""

    target: str
    occasion: Occasion
    service: str
    ok: bool
    attempts: int
    error: Optional[str] = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["occasion"] = self.occasion.value
        data["seconds"] = round(self.seconds, 3)
        return data

    def describe(self) -> str:
        """One line for a warning: which notification, and why it did not arrive."""
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return (
            f"notification '{self.target}' ({self.occasion.value} of {self.service}) not "
            f"delivered after {tries}: {self.error}"
        )


class _Refused(Exception):
    """An attempt failed; ``retry`` says whether another one may succeed."""

    def __init__(self, why: str, retry: bool = True):
        super().__init__(why)
        self.why = why
        self.retry = retry


def _why(exc: BaseException, timeout: float) -> _Refused:
    """What went wrong, from the exception's type: never its text, which may hold the
    URL (nor the server's own words for a refusal: they could quote it back)."""
    import http.client
    import ssl
    import urllib.error
    from http import HTTPStatus

    if isinstance(exc, urllib.error.HTTPError):
        try:
            reason = HTTPStatus(exc.code).phrase
        except ValueError:
            reason = ""
        # A server error or "too many requests" may pass; other refusals will not.
        retry = exc.code >= 500 or exc.code in (408, 429)
        return _Refused(f"HTTP {exc.code} {reason}".strip(), retry)
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, BaseException):
            return _why(exc.reason, timeout)
        return _Refused("the request failed")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return _Refused(f"no answer within {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return _Refused("connection refused")
    if isinstance(exc, ConnectionResetError):
        return _Refused("connection reset")
    if isinstance(exc, socket.gaierror):
        return _Refused("the host name does not resolve")
    if isinstance(exc, ssl.SSLError):
        return _Refused(f"TLS error ({getattr(exc, 'reason', None) or type(exc).__name__})")
    if isinstance(exc, OSError):
        return _Refused(exc.strerror or type(exc).__name__)
    if isinstance(exc, http.client.HTTPException):
        return _Refused(f"bad HTTP answer ({type(exc).__name__})")
    return _Refused(type(exc).__name__, retry=False)


def post(url: str, data: bytes, timeout: float) -> None:
    """One attempt: POST ``data`` to ``url``; returns on a 2xx answer, else raises
    :class:`_Refused`."""
    # Imported here: urllib.request brings ssl and http.client into every start-up.
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise _Refused("the URL is not an http:// or https:// URL", retry=False)
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "relconsole"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(65536)
    except ValueError:  # urllib's words for a malformed URL quote it
        raise _Refused("the URL is not a valid URL", retry=False) from None
    except Exception as exc:
        raise _why(exc, timeout) from None


@dataclass
class Postman:
    """Delivers notifications from threads of its own; ``send`` never blocks.

    ``on_delivered(delivery)`` is called from the delivery's thread when it has
    succeeded or given up: front ends show failures as warnings.
    """

    on_delivered: Callable[[Delivery], None] = lambda _d: None
    timeout: float = ATTEMPT_TIMEOUT
    attempts: int = ATTEMPTS
    backoff: Sequence[float] = BACKOFF
    #: One attempt (tests swap it); raises :class:`_Refused`.
    poster: Callable[[str, bytes, float], None] = post
    _pending: set[threading.Thread] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _idle: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._idle = threading.Condition(self._lock)

    def send(
        self,
        target: NotifyTarget,
        occasion: Occasion,
        service: str,
        data: bytes,
        record: Callable[[Delivery], None] = lambda _d: None,
    ) -> None:
        """Deliver ``data`` to ``target`` beside the caller; ``record`` and then
        ``on_delivered`` hear how it went."""
        thread = threading.Thread(
            target=self._deliver,
            args=(target, occasion, service, data, record),
            name=f"notify-{target.name}",
            daemon=True,  # a process that stops waiting (EXIT_WAIT) must still exit
        )
        with self._lock:
            self._pending.add(thread)
        thread.start()

    def _deliver(
        self,
        target: NotifyTarget,
        occasion: Occasion,
        service: str,
        data: bytes,
        record: Callable[[Delivery], None],
    ) -> None:
        started = time.monotonic()
        attempts, error, url = 0, None, ""
        try:
            url = self._url(target)
            for attempts in range(1, self.attempts + 1):
                try:
                    self.poster(url, data, self.timeout)
                    error = None
                    break
                except _Refused as exc:
                    error = exc.why
                    if not exc.retry or attempts == self.attempts:
                        break
                time.sleep(self.backoff[min(attempts, len(self.backoff)) - 1])
        except _Refused as exc:
            error = exc.why
        except Exception as exc:  # a bug here must not pass silently, nor leak the URL
            error = f"internal error: {type(exc).__name__}"
        if error and url:  # belt and braces: no error may quote the URL
            path = urlsplit(url).path
            error = Masker([url, *([path] if len(path) >= 4 else [])]).mask(error)
        delivery = Delivery(
            target.name,
            occasion,
            service,
            ok=error is None,
            attempts=attempts,
            error=error,
            seconds=time.monotonic() - started,
        )
        try:
            for hear in (record, self.on_delivered):
                try:
                    hear(delivery)
                except Exception:  # a listener's trouble is not the delivery's
                    pass
        finally:
            with self._lock:
                self._pending.discard(threading.current_thread())
                self._idle.notify_all()

    @staticmethod
    def _url(target: NotifyTarget) -> str:
        if not target.url.startswith(("env:", "file:")):
            return target.url
        try:
            return resolve(target.url)
        except SecretError as exc:  # names the variable or file, never a value
            raise _Refused(str(exc), retry=False) from None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait(self, timeout: float = EXIT_WAIT) -> int:
        """Wait until every delivery has ended, at most ``timeout`` seconds; returns
        how many are still under way."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            return len(self._pending)


# --------------------------------------------------------------------------- announcing


def targets_for(config: Config, service: str, occasion: Occasion) -> list[NotifyTarget]:
    return [t for t in config.notify.values() if t.wants(service, occasion)]


class Announcer:
    """A sink that passes every event on, then announces a run's start and end.

    ``record(delivery_dict)`` notes each delivery in the run's history row.
    """

    def __init__(
        self,
        config: Config,
        sink: Sink,
        postman: Postman,
        *,
        user: str,
        trigger: str,
        record: Callable[[dict], None] = lambda _d: None,
    ):
        self.config = config
        self.sink = sink
        self.postman = postman
        self.user = user
        self.trigger = trigger
        self.record = record
        self.facts: Optional[RunFacts] = None

    def __call__(self, event: Event) -> None:
        self.sink(event)
        if isinstance(event, BuildStarted):
            self.facts = RunFacts(
                service=event.service,
                action=event.action,
                result=Occasion.STARTED,
                user=self.user,
                trigger=self.trigger,
                branch=event.branch,
                hosts=event.hosts,
                command=event.command,
                started=event.ts,
            )
            self.announce(self.facts)
        elif self.facts is None:
            return
        elif isinstance(event, CommitResolved):
            self.facts.sha, self.facts.subject = event.sha, event.subject
        elif isinstance(event, Switched):
            self.facts.release = event.release
        elif isinstance(event, BuildFinished):
            self.announce(
                replace(
                    self.facts,
                    result=Occasion.ending(event.result),
                    sha=event.sha or self.facts.sha,
                    release=event.release or self.facts.release,
                    finished=event.ts,
                    duration=event.seconds,
                    error=event.error,
                )
            )

    def announce(self, facts: RunFacts) -> None:
        announce(self.config, self.postman, facts, self.record)


def announce(
    config: Config, postman: Postman, facts: RunFacts, record: Callable[[dict], None]
) -> None:
    """One delivery per target that wants ``facts.result`` of ``facts.service``."""
    for target in targets_for(config, facts.service, facts.result):
        postman.send(
            target,
            facts.result,
            facts.service,
            body(target, facts),
            lambda delivery: record(delivery.to_dict()),
        )


def announcing(
    config: Config,
    sink: Sink,
    postman: Optional[Postman],
    *,
    user: str,
    trigger: str,
    record: Callable[[dict], None] = lambda _d: None,
) -> Sink:
    """``sink``, announcing through ``postman`` (None, or no ``[notify]`` tables: as is)."""
    if postman is None or not config.notify:
        return sink
    return Announcer(config, sink, postman, user=user, trigger=trigger, record=record)


def reporting(
    config: Config, sink: Sink, trigger: str, masker: Masker, postman: Optional[Postman]
) -> Sink:
    """The sink a run reports through: secrets masked first, then announced (when a
    postman is given), then the front end's ``sink`` and the history."""
    recorded = recording(config.settings.state_dir, sink, trigger)
    announced = announcing(
        config, recorded, postman, user=who(), trigger=trigger, record=recorded.delivered
    )
    return masker.wrap(announced)
