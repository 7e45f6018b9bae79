"""Contoso, the demo organisation: its systems as seeded SQLite databases, their refresh jobs,
and the people around dsr in `make demo`. Outside the `reconciler` package and its wheel:
`make demo` and the tests run it from the repository (`python -m demo`)."""
