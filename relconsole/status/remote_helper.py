# relconsole-fastpoll helper: one JSON line per request line.
#
# This file runs ON THE HOST, not in relconsole: relconsole.status.fastpath reads it
# as package data and starts it over the open connection of the host as
# ``python3 -I -S -c SOURCE TARGET ARGV0``. So: stdlib only, Python >= 3.6 syntax
# (a test parses it so), no single quotes (it travels shell-quoted, twice under sudo),
# ASCII only (Python 3.6 under a C locale cannot decode a non-ASCII -c argument).
# The protocol is described in relconsole/status/fastpath.py.
#
# It speaks HTTP and XML-RPC to supervisord itself rather than through http.client and
# xmlrpc.client: importing those (email, ssl, urllib) cost ~28 ms of CPU on every host
# at every start, more than the rest of the helper; only the few XML-RPC types
# supervisord answers with are needed.
import configparser
import json
import os
import socket
import sys
import time
from xml.parsers import expat

FIELDS = ("name", "group", "statename", "pid", "start", "now", "description")
DEFAULT_URL = "http://localhost:9001"
TIMEOUT = 10
# Between two looks at the processes while a restart waits (each look also wakes
# supervisord, which otherwise notices an exited child or an elapsed startsecs only
# when its main loop turns: once a second).
POLL = 0.05
# While programs are STARTING and their startsecs has not yet passed, the longest
# pause between looks: a program that exits at once is still seen soon (BACKOFF lasts
# a second or more, so no look misses it), with a few looks per second, not twenty.
STARTING_LOOK = 0.25
# Once startsecs has passed, the pause before looking again: the loop turn that
# answered the first look after it also moved the program to RUNNING. Also the pause
# between the first looks after a stop: a program usually exits within milliseconds
# of its signal, and supervisord reaps it at the loop turn a look makes.
SOON = 0.01
SOON_LOOKS = 3
# the supervisor states in which a process runs or is on its way (supervisor.states).
UP_STATES = ("RUNNING", "STARTING", "STOPPING", "BACKOFF")
# What a start ends in: up past startsecs, or given up (supervisorctl start waits for
# the same: its startProcess(wait) returns at the first state that is not STARTING).
STARTED_STATES = ("RUNNING", "BACKOFF", "FATAL", "EXITED", "UNKNOWN")
# supervisor.xmlrpc.Faults
FAULT_ALREADY_STARTED = 60
FAULT_NOT_RUNNING = 70
FAULT_FAILED = 30


class Fatal(Exception):
    pass


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def norm(path):
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def which(name):
    # shutil.which for a command name (importing shutil costs ~7 ms on the host).
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_config(argv0):
    # The search list of supervisorctl (supervisor/options.py), in its order.
    paths = []
    script = which(argv0) if argv0 else None
    if script:
        here = os.path.dirname(os.path.dirname(script))
        paths += [
            os.path.join(here, "etc", "supervisord.conf"),
            os.path.join(here, "supervisord.conf"),
        ]
    paths += [
        "supervisord.conf",
        "etc/supervisord.conf",
        "/etc/supervisord.conf",
        "/etc/supervisor/supervisord.conf",
    ]
    for path in paths:
        if os.path.exists(path):
            return path
    return None


def read_config(path):
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        with open(path) as f:
            parser.read_file(f)
    except OSError as e:
        raise Fatal("could not read config file %s: %s" % (path, e.strerror or e))
    except (configparser.Error, ValueError) as e:
        raise Fatal("could not parse config file %s: %s" % (path, " ".join(str(e).split())))
    if not parser.has_section("supervisorctl"):
        raise Fatal("%s does not include a [supervisorctl] section" % path)
    env = dict(("ENV_" + k, v) for k, v in os.environ.items())

    def get(key, default, expansions):
        if not parser.has_option("supervisorctl", key):
            return default
        try:
            return parser.get("supervisorctl", key) % expansions
        except Exception as e:
            raise Fatal("cannot expand %s in [supervisorctl] of %s: %s" % (key, path, e))

    url = get("serverurl", DEFAULT_URL, dict(env, here=os.path.dirname(norm(path))))
    return url, get("username", None, env), get("password", None, env)


class Fault(Exception):
    # An XML-RPC fault: supervisord refused the call (fields named as in xmlrpc.client.Fault).
    def __init__(self, code, string):
        Exception.__init__(self, "%s: %s" % (code, string))
        self.faultCode = code
        self.faultString = string


class BadResponse(Exception):
    # An HTTP or XML-RPC answer this helper cannot read (as http.client.HTTPException was).
    pass


def xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def marshal(value):
    # The parameter types of the calls this helper makes.
    if isinstance(value, bool):
        return "<boolean>%d</boolean>" % value
    if isinstance(value, int):
        return "<int>%d</int>" % value
    if isinstance(value, str):
        return "<string>%s</string>" % xml_escape(value)
    raise TypeError("cannot send %s over XML-RPC" % type(value).__name__)


def method_call(method, params):
    return (
        "<methodCall><methodName>%s</methodName><params>%s"
        "</params></methodCall>\n"
        % (
            xml_escape(method),
            "".join("<param><value>%s</value></param>" % marshal(p) for p in params),
        )
    ).encode("utf-8")


def xml_tree(data):
    # The document as nested [tag, children, text parts].
    root = ["", [], []]
    stack = [root]

    def start(tag, attrs):
        node = [tag, [], []]
        stack[-1][1].append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def text(part):
        stack[-1][2].append(part)

    parser = expat.ParserCreate()
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise BadResponse("unreadable XML-RPC answer: %s" % e)
    if not root[1]:
        raise BadResponse("empty XML-RPC answer")
    return root[1][0]


def child(node, tag):
    for kid in node[1]:
        if kid[0] == tag:
            return kid
    raise BadResponse("XML-RPC answer without <%s> in <%s>" % (tag, node[0]))


def unmarshal(value):
    # A <value> as xmlrpc.client.loads reads it, for the types supervisord sends.
    if not value[1]:
        return "".join(value[2])  # no type: a string
    tag, kids, parts = value[1][0]
    text = "".join(parts)
    if tag == "string":
        return text
    if tag in ("int", "i4", "i8"):
        return int(text)
    if tag == "boolean":
        return text.strip() == "1"
    if tag == "double":
        return float(text)
    if tag == "nil":
        return None
    if tag == "array":
        return [unmarshal(v) for v in child(value[1][0], "data")[1] if v[0] == "value"]
    if tag == "struct":
        return dict(
            ("".join(child(m, "name")[2]), unmarshal(child(m, "value")))
            for m in kids
            if m[0] == "member"
        )
    raise BadResponse("XML-RPC type %s is not expected from supervisord" % tag)


def method_response(data):
    # The one result of a methodResponse, or its fault raised.
    response = xml_tree(data)
    fault = [kid for kid in response[1] if kid[0] == "fault"]
    if fault:
        fields = unmarshal(child(fault[0], "value"))
        raise Fault(fields.get("faultCode"), fields.get("faultString"))
    return unmarshal(child(child(child(response, "params"), "param"), "value"))


class Connection:
    # One HTTP/1.1 connection to supervisord: a POST, its answer read by Content-Length
    # (what the medusa server of supervisord sends), by chunks, or up to the close.
    def __init__(self, sock):
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def line(self):
        line = self.reader.readline(65537)
        if not line.endswith(b"\n"):
            raise BadResponse("supervisord closed the connection" if not line else "line too long")
        return line.decode("latin-1").rstrip("\r\n")

    def post(self, path, body, headers):
        head = "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n" % (
            path,
            len(body),
        )
        head += "".join("%s: %s\r\n" % item for item in headers.items())
        self.sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        version, _, rest = self.line().partition(" ")
        status, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not status.isdigit():
            raise BadResponse("not an HTTP answer: %r" % version[:40])
        fields = {}
        while True:
            line = self.line()
            if not line:
                break
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        keep = fields.get("connection", "").lower()
        will_close = keep == "close" or (version == "HTTP/1.0" and keep != "keep-alive")
        if fields.get("transfer-encoding", "").lower() == "chunked":
            data = self.chunks()
        elif "content-length" in fields:
            data = self.exactly(int(fields["content-length"]))
        else:
            data, will_close = self.reader.read(), True
        return int(status), reason, data, will_close

    def exactly(self, size):
        data = self.reader.read(size)
        if len(data) != size:
            raise BadResponse("supervisord closed the connection mid-answer")
        return data

    def chunks(self):
        parts = []
        while True:
            size = int(self.line().split(";")[0], 16)
            if size == 0:
                while self.line():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.exactly(size))
            self.line()


def unix_socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class Refused(Exception):
    def __init__(self, status, reason):
        Exception.__init__(self, "%s %s" % (status, reason))
        self.status = status


class Server:
    def __init__(self, url, username=None, password=None):
        if url.startswith("unix://"):
            path = norm(url[7:])
            self.url = "unix://" + path
            self.connect = lambda: Connection(unix_socket(path))
        elif url.startswith("http://"):
            host, _, port = url[7:].split("/", 1)[0].rpartition(":")
            if not host or not port.isdigit():
                host, port = url[7:].split("/", 1)[0], "80"
            self.url = url
            self.connect = lambda: Connection(
                socket.create_connection((host.strip("[]"), int(port)), TIMEOUT)
            )
        else:
            raise Fatal("Unknown protocol for serverurl %s" % url)
        self.headers = {"Content-Type": "text/xml", "Accept": "text/xml"}
        if username is not None and password is not None:
            import base64  # only for a password: ~4 ms to import

            token = base64.b64encode(("%s:%s" % (username, password)).encode()).decode()
            self.headers["Authorization"] = "Basic " + token
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method, *params):
        # One HTTP connection kept across requests, as supervisorctl keeps its own; one
        # that supervisord dropped meanwhile is retried once on a fresh one.
        body = method_call(method, params)
        for reused in (self.conn is not None, False):
            if self.conn is None:
                self.conn = self.connect()
            try:
                status, reason, data, will_close = self.conn.post("/RPC2", body, self.headers)
            except (OSError, BadResponse):
                self.close()
                if reused:
                    continue
                raise
            if status != 200:
                self.close()
                raise Refused(status, reason)
            if will_close:
                self.close()
            return method_response(data)
        raise AssertionError("unreachable")

    def all_process_info(self):
        return self.call("supervisor.getAllProcessInfo")

    def answer(self):
        try:
            infos = self.all_process_info()
        except Fault as e:
            return {"ok": False, "lasting": False, "error": "supervisord: %s" % e.faultString}
        except PermissionError:
            return {"ok": False, "lasting": True, "error": "%s: permission denied" % self.url}
        except FileNotFoundError:
            return {"ok": False, "lasting": False, "error": "%s no such file" % self.url}
        except ConnectionRefusedError:
            return {"ok": False, "lasting": False, "error": "%s refused connection" % self.url}
        except Refused as e:
            return {"ok": False, "lasting": e.status == 401, "error": "%s: %s" % (self.url, e)}
        except (OSError, BadResponse, ValueError) as e:
            return {
                "ok": False,
                "lasting": False,
                "error": "%s: %s" % (self.url, e or type(e).__name__),
            }
        return {"ok": True, "processes": [dict((k, i.get(k)) for k in FIELDS) for i in infos]}

    def read_log(self, stream, name, offset, limit):
        # readProcess*Log(name, offset, length) reads from exactly this byte offset
        # (tailProcess*Log returns the last bytes of the window instead). supervisord
        # decodes the bytes as UTF-8 and answers 500 when they end inside a character
        # (a line still being written): read a byte or three less, the rest comes next.
        method = "supervisor.readProcess%sLog" % ("Stderr" if stream == "stderr" else "Stdout")
        for cut in range(4):
            if limit - cut <= 0:
                break
            try:
                return self.call(method, name, offset, limit - cut)
            except Refused as e:
                if cut == 3 or e.status != 500:
                    raise
        return ""

    def tail(self, stream, name, offset, limit):
        # The log size now (tailProcess*Log with length 0 answers it, reading nothing),
        # then the bytes from offset (or, from -1, the last limit bytes) up to limit.
        method = "supervisor.tailProcess%sLog" % ("Stderr" if stream == "stderr" else "Stdout")
        size = self.call(method, name, 0, 0)[1]
        rotated = offset > size
        start = max(0, size - limit) if offset < 0 or rotated else offset
        length = min(size - start, limit)
        text = self.read_log(stream, name, start, length) if length > 0 else ""
        end = start + len(text.encode("utf-8"))
        return {
            "ok": True,
            "text": text,
            "start": start,
            "offset": end,
            "size": size,
            "rotated": rotated,
        }

    def answer_tail(self, words):
        try:
            stream, offset, limit, name = words[0], int(words[1]), int(words[2]), words[3]
        except (IndexError, ValueError):
            return {"ok": False, "lasting": True, "error": "bad tail request"}
        try:
            return self.tail(stream, name, offset, limit)
        except Fault as e:
            return {"ok": False, "lasting": False, "error": "supervisord: %s" % e.faultString}
        except (OSError, BadResponse, ValueError, Refused) as e:
            return {"ok": False, "lasting": False, "error": "%s: %s" % (self.url, e)}


def namespec(info):
    name, group = info["name"], info["group"]
    return name if name == group else "%s:%s" % (group, name)


def chosen(info, specs):
    # specs as supervisorctl takes them: "group:*" or "group:name".
    for spec in specs:
        group, _, name = spec.partition(":")
        if info["group"] == group and name in ("*", info["name"]):
            return True
    return False


def soon_then_poll():
    # A pause for Restart.wait: SOON for the first SOON_LOOKS looks, then POLL.
    looks = [0]

    def pause(infos):
        looks[0] += 1
        return SOON if looks[0] <= SOON_LOOKS else POLL

    return pause


class Restart:
    # supervisorctl update, then supervisorctl restart SPECS, in one request: the same
    # calls supervisorctl makes (reloadConfig, stop/remove/addProcessGroup, stop and
    # startProcess), without starting a Python program per step. A program whose
    # group update just (re)added, and which supervisord starts by itself (autostart),
    # is not restarted a second time: it runs the new config and code already.

    def __init__(self, server, specs, seconds):
        self.server = server
        self.specs = specs
        self.deadline = time.time() + seconds
        self.lines = []
        # The step whose wait reached the deadline (supervisorctl would have timed out).
        self.timed_out = None

    def wait(self, step, names, done, pause=None):
        # The processes once each of names is in a state done() accepts, or at the
        # deadline (then step is what timed out). pause(infos) says how long to wait
        # before the next look (POLL without it).
        while True:
            infos = self.server.all_process_info()
            if all(done(i["statename"]) for i in infos if namespec(i) in names):
                return infos
            if time.time() > self.deadline:
                self.timed_out = self.timed_out or step
                return infos
            time.sleep(min(pause(infos) if pause else POLL, max(0, self.deadline - time.time())))

    def starting_pause(self, names, startsecs, started_by):
        # supervisord moves a program from STARTING to RUNNING at the first turn of its
        # loop after startsecs, and it turns only once a second unless a request wakes
        # it. Each program was spawned before started_by (startProcess spawns before it
        # answers; an autostart after an update, in a turn before the next answer), so
        # its startsecs has passed at started_by + startsecs: look then, and at once
        # again (that look turned the loop), instead of every POLL all along.
        after_startsecs = soon_then_poll()

        def pause(infos):
            waiting = [
                i for i in infos if namespec(i) in names and i["statename"] not in STARTED_STATES
            ]
            if any(i["statename"] != "STARTING" or namespec(i) not in startsecs for i in waiting):
                return POLL
            left = min(started_by + startsecs[namespec(i)] for i in waiting) - time.time()
            if left > 0:
                return min(left, STARTING_LOOK)
            return after_startsecs(infos)

        return pause

    def stop_group(self, group):
        # True when every process of the group stopped (supervisorctl says "has problems"
        # otherwise: a FAILED result, and it does not remove the group).
        results = self.server.call("supervisor.stopProcessGroup", group, False)
        infos = self.server.all_process_info()
        names = set(namespec(i) for i in infos if i["group"] == group)
        self.wait("update", names, lambda state: state not in UP_STATES, soon_then_poll())
        self.lines.append("%s: stopped" % group)
        return not any(r.get("status") == FAULT_FAILED for r in results)

    def update(self):
        # supervisorctl update; the processes supervisord now starts by itself.
        call = self.server.call
        added, changed, removed = call("supervisor.reloadConfig")[0]
        for group in removed:
            if not self.stop_group(group):
                self.lines.append("%s: has problems; not removing" % group)
                continue
            call("supervisor.removeProcessGroup", group)
            self.lines.append("%s: removed process group" % group)
        for group in changed:
            self.stop_group(group)
            call("supervisor.removeProcessGroup", group)
            call("supervisor.addProcessGroup", group)
            self.lines.append("%s: updated process group" % group)
        for group in added:
            call("supervisor.addProcessGroup", group)
            self.lines.append("%s: added process group" % group)
        fresh = set(added) | set(changed)
        if not fresh:
            return set()
        return set(namespec(c) for c in self.configs() if c["group"] in fresh and c["autostart"])

    def configs(self):
        # Each process config (supervisor >= 3.2); none where it cannot be asked: then
        # every program is restarted and nobody relies on a startsecs.
        try:
            return self.server.call("supervisor.getAllConfigInfo")
        except Fault:
            return []

    def run(self):
        started_by_update = self.update()
        if self.timed_out:
            return {"ok": False, "timeout": self.timed_out, "lines": self.lines}
        if not self.specs:
            return {"ok": True, "lines": self.lines}
        infos = self.server.all_process_info()
        targets = set(namespec(i) for i in infos if chosen(i, self.specs))
        for spec in self.specs:
            if not any(chosen(i, [spec]) for i in infos):
                self.lines.append("%s: ERROR (no such process)" % spec)
        again = sorted(targets - started_by_update)
        for name in again:
            self.try_call("supervisor.stopProcess", name)
        self.wait("restart", set(again), lambda state: state not in UP_STATES, soon_then_poll())
        for name in again:
            self.lines.append("%s: stopped" % name)
            self.try_call("supervisor.startProcess", name)
        started_by = time.time()
        startsecs = dict(
            (namespec(c), c["startsecs"]) for c in self.configs() if namespec(c) in targets
        )
        infos = self.wait(
            "restart",
            targets,
            lambda state: state in STARTED_STATES,
            self.starting_pause(targets, startsecs, started_by),
        )
        if self.timed_out:
            return {"ok": False, "timeout": self.timed_out, "lines": self.lines}
        for info in infos:
            if namespec(info) in targets:
                state = info["statename"]
                said = "started" if state == "RUNNING" else "ERROR (%s)" % state
                self.lines.append("%s: %s" % (namespec(info), said))
        # A process RUNNING after this start stayed up its startsecs: supervisord
        # watched (the caller need not wait for that again).
        return {"ok": True, "lines": self.lines, "startsecs": startsecs}

    def try_call(self, method, name):
        # A stop of a process that is not running, a start of one that runs: nothing
        # to do. Any other refusal is said and the restart goes on (as supervisorctl
        # does); the caller verifies the states either way.
        try:
            self.server.call(method, name, False)
        except Fault as e:
            if e.faultCode not in (FAULT_NOT_RUNNING, FAULT_ALREADY_STARTED):
                self.lines.append("%s: ERROR (%s)" % (name, e.faultString))


def answer_restart(server, words):
    try:
        seconds, specs = float(words[0]), words[1:]
    except (IndexError, ValueError):
        return {"ok": False, "lasting": True, "error": "bad restart request"}
    try:
        return Restart(server, specs, seconds).run()
    except Fault as e:
        # supervisord itself refused (a config it cannot read, shutting down): what
        # supervisorctl would have reported too.
        return {"ok": False, "fault": True, "error": "supervisord: %s" % e.faultString}
    except (OSError, BadResponse, ValueError, Refused) as e:
        return {"ok": False, "lasting": False, "error": "%s: %s" % (server.url, e)}


def answer_request(server, request):
    """The answer to one line of the protocol: ``status``, ``tail ARGS`` or ``restart ARGS``."""
    words = request.decode("utf-8", "replace").split(" ")
    if request == b"status":
        return server.answer()
    if words[0] == "tail":
        return server.answer_tail(words[1:])
    if words[0] == "restart":
        return answer_restart(server, words[1:])
    return {"ok": False, "lasting": True, "error": "unknown request %r" % request[:40]}


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else ""
    argv0 = sys.argv[2] if len(sys.argv) > 2 else ""
    path = None
    try:
        if target.startswith(("unix://", "http://")):
            server = Server(target)
        else:
            path = target or find_config(argv0)
            server = Server(*read_config(path)) if path else Server(DEFAULT_URL)
    except Fatal as e:
        say({"ok": False, "lasting": True, "error": str(e)})
        return 2
    say({"hello": 1, "serverurl": server.url, "config": path})
    for line in sys.stdin.buffer:
        request = line.strip()
        if not request:
            continue
        try:
            say(answer_request(server, request))
        except Exception as e:  # a bug here must not pass for an answer of supervisord
            say({"ok": False, "lasting": True, "error": "helper: %s: %s" % (type(e).__name__, e)})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(1)
