"""`python -m reconciler`: the same entry point as the `dsr` script."""

from reconciler.cli import main

main()
