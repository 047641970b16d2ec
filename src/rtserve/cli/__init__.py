"""The ``rtserve`` command line: one module per command group, registered by ``main``.

``main`` is the typer app and the exit-code contract; ``serve``, ``bundle_commands`` (build,
inspect, verify, reseal), ``predict``, ``bench``, ``demo``, ``decisions`` and ``alerts`` are the
commands; ``output``, ``render``, ``tables`` and ``overrides`` are what they share (console output,
bundle views, table files, ``--set`` schema overrides).
"""
