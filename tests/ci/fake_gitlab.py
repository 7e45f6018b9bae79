"""A fake GitLab REST API on 127.0.0.1, just enough for merge-request notes:

  GET  /api/v4/user                                            the token's user
  GET  /api/v4/projects/:id/merge_requests/:iid/notes          paginated (page, per_page)
  POST /api/v4/projects/:id/merge_requests/:iid/notes          form or JSON `body`
  PUT  /api/v4/projects/:id/merge_requests/:iid/notes/:note_id only the author's own notes

Every request needs `PRIVATE-TOKEN: <token>` (401 otherwise, as GitLab answers); every
request is recorded. The template's curl calls run against it for real.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT_ID = 4242


@dataclass
class FakeGitLab:
    token: str
    notes: list[dict[str, Any]] = field(default_factory=list)  # each with "mr": (project, iid)
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 9000
    url: str = ""  # http://127.0.0.1:PORT once started

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method: str) -> None:
                url = urlsplit(self.path)
                fake.requests.append((method, self.path))
                if self.headers.get("PRIVATE-TOKEN") != fake.token:
                    return self.reply(401, {"message": "401 Unauthorized"})
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    form = json.loads(raw or "{}")
                else:
                    form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                if url.path == "/api/v4/user" and method == "GET":
                    return self.reply(200, {"id": BOT_ID, "username": "project_1217_bot"})
                m = re.fullmatch(
                    r"/api/v4/projects/(\d+)/merge_requests/(\d+)/notes(?:/(\d+))?", url.path
                )
                if not m:
                    return self.reply(404, {"message": "404 Not found"})
                mr = (int(m.group(1)), int(m.group(2)))
                mine = [n for n in fake.notes if n["mr"] == mr]
                if method == "GET" and not m.group(3):
                    q = parse_qs(url.query)
                    page, per_page = int(q.get("page", ["1"])[0]), int(q.get("per_page", ["20"])[0])
                    chunk = mine[(page - 1) * per_page : page * per_page]
                    return self.reply(
                        200, [{k: v for k, v in n.items() if k != "mr"} for n in chunk]
                    )
                if method == "POST" and not m.group(3):
                    fake.next_id += 1
                    note = {
                        "id": fake.next_id,
                        "body": form["body"],
                        "author": {"id": BOT_ID},
                        "system": False,
                        "mr": mr,
                    }
                    fake.notes.append(note)
                    return self.reply(201, {k: v for k, v in note.items() if k != "mr"})
                if method == "PUT" and m.group(3):
                    note = next((n for n in mine if n["id"] == int(m.group(3))), None)
                    if note is None:
                        return self.reply(404, {"message": "404 Not found"})
                    if note["author"]["id"] != BOT_ID:
                        return self.reply(403, {"message": "403 Forbidden"})
                    note["body"] = form["body"]
                    return self.reply(200, {k: v for k, v in note.items() if k != "mr"})
                return self.reply(405, {"message": "405 Method Not Allowed"})

            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

            def do_PUT(self) -> None:
                self.handle_any("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bot_notes(self, mr: tuple[int, int]) -> list[dict[str, Any]]:
        return [n for n in self.notes if n["mr"] == mr and n["author"]["id"] == BOT_ID]
