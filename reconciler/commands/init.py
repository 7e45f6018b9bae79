"""`dsr init [DIR]`: scaffold a workspace: settings, a data map to fill in, the requests
folder, a git-ignored state folder, and CI workflows (plan on pull requests, scheduled apply).
It never overwrites a file."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.desired.load import load_workspace
from reconciler.errors import DsrError

DSR_YAML = """\
# dsr settings. Secrets never live here: `env:NAME` names an environment variable.
workspace: {name}
state: {{path: state/dsr.db}}        # or {{url: env:DSR_STATE_URL}} for a shared PostgreSQL store
identity:
  key: env:DSR_IDENTITY_KEY          # the secret behind every keyed hash of an identifier
  key_id: k1                         # change it when the key rotates
exports: {{outbox: state/outbox, expire_after_days: 30}}
safety: {{max_revocations: 25}}
# deadlines: {{days: 45}}            # default: one calendar month (GDPR Art. 12(3))
"""

SYSTEMS_YAML = """\
# The data map: where personal data lives and what erasure does there.
# Field reference: schemas/systems.schema.json in the dsr package, or the README.
systems:
  crm:
    role: source                 # source | platform | downstream
    url: env:CRM_URL             # a SQLAlchemy URL, read from the environment
    erase_at_source: true        # false: dsr waits for the source's owner to delete
    tables:
      customers:
        primary_key: id
        identities: {email: email}
        on_erasure: delete
"""

PLAN_WORKFLOW = """\
# Plans every pull request against production (read-only) and posts the plan.
name: dsr plan
on: pull_request
jobs:
  plan:
    runs-on: ubuntu-latest
    permissions: {contents: read, pull-requests: write}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: pip install dsr        # or the path or URL your organisation installs dsr from
      - run: dsr validate && dsr plan --format markdown --out plan.json > plan.md
        env:
          CRM_URL: "${{ secrets.CRM_URL }}"
          DSR_IDENTITY_KEY: "${{ secrets.DSR_IDENTITY_KEY }}"
      - run: gh pr comment ${{ github.event.pull_request.number }} --body-file plan.md
        env: {GH_TOKEN: "${{ github.token }}"}
"""

APPLY_WORKFLOW = """\
# Applies the desired state on a schedule: idempotent, one writer at a time (state lock).
name: dsr apply
on:
  schedule: [{cron: "17 * * * *"}]
  workflow_dispatch: {}
concurrency: dsr-apply
jobs:
  apply:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: pip install dsr
      - run: dsr apply --auto-approve
        env:
          CRM_URL: "${{ secrets.CRM_URL }}"
          DSR_IDENTITY_KEY: "${{ secrets.DSR_IDENTITY_KEY }}"
          DSR_STATE_URL: "${{ secrets.DSR_STATE_URL }}"   # with state: {url: env:DSR_STATE_URL}
"""

STATE_GITIGNORE = "# runtime state and export packages: never committed\n*\n!.gitignore\n"


@click.command("init")
@click.argument(
    "directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
def command(directory: Path) -> None:
    """Scaffold a workspace in DIRECTORY (default: here), with CI workflow templates."""
    root = directory.resolve()
    if (root / "dsr.yaml").exists():
        raise DsrError(f"{root / 'dsr.yaml'} already exists; dsr init never overwrites a workspace")
    files = {
        "dsr.yaml": DSR_YAML.format(name=root.name or "workspace"),
        "policies/systems.yaml": SYSTEMS_YAML,
        "policies/requests/.gitkeep": "",
        "state/.gitignore": STATE_GITIGNORE,
        ".github/workflows/dsr-plan.yml": PLAN_WORKFLOW,
        ".github/workflows/dsr-apply.yml": APPLY_WORKFLOW,
    }
    existing = [name for name in files if (root / name).exists()]
    if existing:
        raise DsrError(f"{root}: would overwrite {', '.join(existing)}; nothing was written")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        click.echo(
            f"created {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
        )
    load_workspace(root)  # what init writes must validate
    click.echo("Next: map your systems in policies/systems.yaml, then run dsr validate.")
