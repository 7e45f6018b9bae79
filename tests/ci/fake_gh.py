"""A stand-in for the `gh` CLI that knows `gh api` on pull-request comments, and nothing else.

It keeps the comments in the JSON file $FAKE_GH_STATE and appends each call's arguments to
$FAKE_GH_STATE.calls. `--jq` filters run through jq itself (the `jq` package of the tools'
venv, which runs this script), and print as `gh` prints them: strings raw, one per line. It
refuses to edit a comment someone else wrote, as GitHub does (403).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import jq


def parse(args: list[str]) -> tuple[str, str | None, dict[str, str], str]:
    if not args or args[0] != "api":
        sys.exit(f"fake gh: only `gh api` is faked: {args}")
    method: str | None = None
    query: str | None = None
    fields: dict[str, str] = {}
    endpoint = ""
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("--method", "-X"):
            method = next(rest)
        elif arg in ("--jq", "-q"):
            query = next(rest)
        elif arg == "--paginate":
            pass  # every comment fits on one page here
        elif arg in ("-F", "--field", "-f", "--raw-field"):
            key, value = next(rest).split("=", 1)
            if arg in ("-F", "--field") and value.startswith("@"):
                with open(value[1:], encoding="utf-8") as handle:
                    value = handle.read()
            fields[key] = value
        elif arg.startswith("-"):
            sys.exit(f"fake gh: unknown flag {arg}")
        else:
            endpoint = arg
    return method or ("POST" if fields else "GET"), query, fields, endpoint


def answer(state: dict[str, Any], method: str, fields: dict[str, str], endpoint: str) -> Any:
    listing = re.fullmatch(r"repos/([^/]+/[^/]+)/issues/(\d+)/comments", endpoint)
    single = re.fullmatch(r"repos/([^/]+/[^/]+)/issues/comments/(\d+)", endpoint)
    if listing and method == "GET":
        return [c for c in state["comments"] if c["issue"] == int(listing.group(2))]
    if listing and method == "POST":
        state["next_id"] += 1
        comment = {
            "id": state["next_id"],
            "issue": int(listing.group(2)),
            "body": fields["body"],
            "user": {"login": "github-actions[bot]"},
        }
        state["comments"].append(comment)
        return comment
    if single and method == "PATCH":
        comment = next(c for c in state["comments"] if c["id"] == int(single.group(2)))
        if comment["user"]["login"] != "github-actions[bot]":
            sys.exit("gh: Resource not accessible by integration (HTTP 403)")
        comment["body"] = fields["body"]
        return comment
    sys.exit(f"fake gh: {method} {endpoint} is not faked")


def main() -> None:
    state_file = os.environ["FAKE_GH_STATE"]
    with open(state_file + ".calls", "a", encoding="utf-8") as calls:
        calls.write(json.dumps(sys.argv[1:]) + "\n")
    if not os.environ.get("GH_TOKEN"):
        sys.exit("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN variable.")
    method, query, fields, endpoint = parse(sys.argv[1:])
    with open(state_file, encoding="utf-8") as handle:
        state = json.load(handle)
    result = answer(state, method, fields, endpoint)
    with open(state_file, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    if query is None:
        print(json.dumps(result))
        return
    for value in jq.compile(query).input_value(result).all():
        print(value if isinstance(value, str) else json.dumps(value))


if __name__ == "__main__":
    main()
