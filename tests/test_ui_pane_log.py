"""The build panes' Log: a batch of lines is measured where it is written, never by a
thread worker per write (50 host panes at 30 batches a second held keys back)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from relconsole.ui.host_logs import HostLogs, make_log


class OneLog(App[None]):
    def compose(self) -> ComposeResult:
        yield make_log(id="pane")


async def test_writing_lines_starts_no_worker_and_widens_the_log():
    app = OneLog()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one("#pane")
        for n in range(30):
            log.write_lines([f"line {n}", "x" * (50 + n)])
        started = len(app.workers)
        await pilot.pause()
        assert started == 0
        assert log.virtual_size.width == 79  # the widest line, measured at once
        assert len(log.lines) == 60


class ThreeHosts(App[None]):
    def compose(self) -> ComposeResult:
        yield HostLogs("setup", ["h1", "h2", "h3"], id="pane")

    def on_mount(self) -> None:
        self.query_one(HostLogs).mount_parts()


async def test_a_host_log_off_screen_holds_its_lines_until_it_is_shown():
    app = ThreeHosts()
    async with app.run_test(size=(80, 20)) as pilot:  # too narrow: tabbed, h1 shown
        pane = app.query_one(HostLogs)
        pane.show_on_screen(True)
        for host, log in pane.logs.items():
            log.write_lines([f"{host} says {n}" for n in range(3)])
        await pilot.pause()
        written = {host: len(log.lines) for host, log in pane.logs.items()}
        assert written == {"h1": 3, "h2": 0, "h3": 0}
        assert pane.logs["h2"].text == ["h2 says 0", "h2 says 1", "h2 says 2"]

        pane.show_host("h2")
        pane.show_on_screen(False)  # another stage's pane shown: h2 holds again
        pane.logs["h2"].write_lines(["h2 later"])
        await pilot.pause()
        assert list(pane.logs["h2"].lines) == ["h2 says 0", "h2 says 1", "h2 says 2"]
        assert pane.logs["h2"].text[-1] == "h2 later"
        pane.show_on_screen(True)
        assert list(pane.logs["h2"].lines)[-1] == "h2 later"


class PaneAndLog(App[None]):
    CSS = "Screen { background: $panel; } Log { height: 6; color: red; background: blue 30%; }"

    def compose(self) -> ComposeResult:
        from textual.widgets import Log

        yield make_log(id="pane")
        yield Log(id="stock")


async def test_a_pane_renders_as_textuals_log_asking_its_style_once_per_pass(monkeypatch):
    from textual.dom import DOMNode
    from textual.geometry import Region

    app = PaneAndLog()
    async with app.run_test(size=(30, 12)) as pilot:
        pane, stock = app.query_one("#pane"), app.query_one("#stock")
        for log in (pane, stock):
            log.write_lines([f"line {n} [b]not markup[/b]" for n in range(4)])
        app.set_focus(None)  # a focused Log is tinted
        await pilot.pause()
        walks: list[str] = []
        walk = DOMNode.rich_style.fget

        def counted(node):
            walks.append(node.id)
            return walk(node)

        monkeypatch.setattr(DOMNode, "rich_style", property(counted))

        def strips(log):
            log._render_line_cache.clear()  # render every line anew
            log._styles_cache.clear()
            lines = log.render_lines(Region(0, 0, log.size.width, 6))
            return [[(s.text, s.style.color, s.style.bgcolor) for s in line] for line in lines]

        assert strips(pane) == strips(stock)
        assert walks.count("pane") == 1 and walks.count("stock") >= 6
