"""The work of each build stage on its own: checkout (git workspace), check (local
processes), upload (the release tar and unpacking it on a host), supervisor (update,
restart, verify on a host). :mod:`relconsole.pipeline` puts them in order."""
