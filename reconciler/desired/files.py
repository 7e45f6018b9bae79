"""Where a workspace keeps its files, and what a request id looks like: one home for both.

Every module that names a policy file or checks a request id takes it from here.
"""

from __future__ import annotations

import re

SETTINGS_FILE = "dsr.yaml"
SYSTEMS_FILE = "policies/systems.yaml"
ACCESS_FILE = "policies/access.yaml"
REQUESTS_DIR = "policies/requests"

# As in schemas/request.schema.json: upper-case letters and digits in parts joined by '-'. It
# can never name a path outside the folder it is joined to.
REQUEST_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")


def request_file(request_id: str) -> str:
    """The workspace-relative path of the request file for `request_id`."""
    return f"{REQUESTS_DIR}/{request_id}.yaml"
