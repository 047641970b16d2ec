"""Offline evaluation: two bundles scored on the same rows, compared, reported (``rtserve compare``).

``data`` reads the rows (a table file, or live traffic from the decision log), ``pairing`` scores
them with both bundles and sets aside the rows either one refuses, ``metrics`` and ``bootstrap``
compute the numbers and their confidence intervals, ``segments`` groups rows, ``compare`` puts it
together and decides the flags, ``gates`` turns a ``--fail-on`` expression into an exit code and
``report`` writes the HTML page and ``summary.json``.

This package sits above ``deploy`` (whose table readers it reuses) and ``engine``; nothing but the
CLI imports it. scikit-learn's metrics and matplotlib are imported inside the functions that use
them, so importing this package stays cheap.
"""
