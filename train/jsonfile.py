"""Small JSON files (sidecars, caches) read with a size cap and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 1 << 20


def read_json_file(path: Path, *, what: str, error: type[Exception], hint: str = "") -> Any:
    """Parse ``path``; a file over 1 MiB or that is not JSON raises ``error`` with one line naming ``what``."""
    suffix = f"; {hint}" if hint else ""
    if path.stat().st_size > MAX_JSON_BYTES:
        raise error(f"{path}: {what} is larger than {MAX_JSON_BYTES} bytes; not a {what}{suffix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: {what} is not valid JSON ({exc}){suffix}") from None
    except RecursionError:  # '[[[[...' a few thousand deep: nothing a sidecar ever holds
        raise error(f"{path}: {what} is nested too deeply to be a {what}{suffix}") from None
