"""`storyloop export --team T [--session S] [--out file]`: a workspace's sessions as JSON.

For an admin's data request or an archive before sessions expire. Reads Redis only (never
Slack), so it runs beside a live deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from storage.connection import connect
from storage.export import export_team


async def _read(redis_url: str, team_id: str, session_id: str | None) -> dict[str, Any] | None:
    redis = connect(redis_url, max_connections=4)
    try:
        return await export_team(redis, team_id, session_id)
    finally:
        await redis.aclose()


def write_export(redis_url: str, team_id: str, session_id: str | None, out: str | None) -> int:
    """Write the export to ``out`` (atomically: a file is whole or absent) or to stdout."""
    try:
        doc = asyncio.run(_read(redis_url, team_id, session_id))
    except Exception as exc:  # a CLI: one line for the operator, not a traceback
        print(f"Export failed: could not read Redis ({type(exc).__name__}).", file=sys.stderr)
        return 1
    if doc is None:
        print(f"No session {session_id} in workspace {team_id}.", file=sys.stderr)
        return 1
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if not out or out == "-":
        sys.stdout.write(text)
        return 0
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    count = len(doc["sessions"])
    print(f"Wrote {count} session{'s' if count != 1 else ''} to {path}.", file=sys.stderr)
    return 0
