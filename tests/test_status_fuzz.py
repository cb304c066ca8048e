"""Issue 14 item 17: whatever a host sends, the status parsers and the status helper's
protocol never raise out of their own error types (hypothesis, fast tier)."""

from __future__ import annotations

import json

from fakehost import ChannelHost
from hypothesis import given, settings
from hypothesis import strategies as st

from relconsole.config import Host
from relconsole.errors import RelconsoleError
from relconsole.hosts.base import Channel
from relconsole.status import supervisorctl as sv
from relconsole.status.fastpath import FastPath, Helper, _Gone, to_rows

LINES = st.lists(
    st.one_of(
        st.text(),
        st.sampled_from([s.value for s in sv.State]).map(
            lambda s: f"prog  {s}  pid 12, uptime 0:01:02"
        ),
        st.from_regex(r"[a-z:_0-9]{1,20} +[A-Z]{3,9} +.{0,40}", fullmatch=True),
    ),
    max_size=20,
).map("\n".join)


@settings(max_examples=100, deadline=None)
@given(LINES)
def test_parse_status_never_raises(text):
    rows, errors = sv.parse_status(text)
    assert all(isinstance(r, sv.ProcessStatus) for r in rows)
    assert isinstance(errors, list)


@settings(max_examples=100, deadline=None)
@given(LINES)
def test_parse_action_output_never_raises(text):
    assert isinstance(sv.parse_action_output(text), dict)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=10,  # to_rows looks one level deep: more nesting only costs generation time
)
INFO = st.fixed_dictionaries(
    {},
    optional={
        k: JSON for k in ("name", "group", "statename", "pid", "start", "now", "description")
    },
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(INFO, JSON), max_size=8))
def test_helper_process_infos_never_raise(processes):
    for row in to_rows(processes):
        assert isinstance(row.state, sv.State)
        assert row.pid is None or isinstance(row.pid, int)


class ScriptedChannel(Channel):
    """Hands out the given chunks, then the end of the stream."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = list(chunks)

    def send(self, data: bytes) -> None:
        pass

    def recv(self, timeout: float) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_the_helper_protocol_reader_only_ends_in_its_own_ways(chunks):
    helper = Helper(ScriptedChannel(chunks))
    try:
        reply = helper.read(timeout=1.0)
    except (_Gone, TimeoutError):
        return
    assert isinstance(reply, dict)


class HelperHost(ChannelHost):
    """A connection whose status helper says hello, then answers with ``answer``."""

    host = Host(name="h1", address="127.0.0.1", user="root")

    def __init__(self, answer: list[bytes]):
        self.answer = answer

    def open_channel(self, command, *, timeout, sudo=False):
        hello = json.dumps({"hello": 1, "serverurl": "unix:///x"}).encode() + b"\n"
        return ScriptedChannel([hello, *self.answer])


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.lists(st.binary(max_size=120), max_size=4),
        st.lists(JSON, max_size=3).map(lambda xs: [json.dumps(x).encode() + b"\n" for x in xs]),
        st.lists(INFO, max_size=4).map(
            lambda ps: [json.dumps({"ok": True, "processes": ps}).encode() + b"\n"]
        ),
    )
)
def test_the_fast_path_answers_rows_or_its_own_errors(answer):
    fast = FastPath(HelperHost(answer), HelperHost.host)
    try:
        rows = fast.rows(timeout=1.0)
    except RelconsoleError:  # Unavailable, CommandTimedOut
        return
    assert all(isinstance(r, sv.ProcessStatus) for r in rows)


def test_deep_nesting_is_not_json_to_the_reader():
    helper = Helper(ScriptedChannel([b"[" * 100_000 + b"\n"]))
    try:
        helper.read(timeout=1.0)
    except _Gone:
        return
    raise AssertionError("a 100,000-deep array was taken as an answer")
