"""The headless front end: the modes of ``relconsole --build/--status/...``
(:mod:`~relconsole.headless.commands`), engine events rendered as text or JSON lines
(:mod:`~relconsole.headless.render`), and the exit codes scripts rely on."""
