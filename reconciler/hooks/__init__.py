"""Checks that run as pre-commit hooks in a workspace (the dsr repository's
`.pre-commit-hooks.yaml` and the `.pre-commit-config.yaml` that `dsr init` writes). Each reads
the files it is given and nothing else: no secret, no database."""
