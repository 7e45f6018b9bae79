"""Export packages and where they wait for delivery: the zip (`package.py`) and the outbox it
is kept in until it expires, a folder of the workspace or the shared state store
(`boxes.py`). Used by observing (is each package still intact?), applying (build, expire)
and `dsr outbox get`."""
