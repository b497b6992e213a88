"""Reading JSON files that users bring (camera files, capture metadata) without surprises.

``json.loads`` raises RecursionError, not a JSONDecodeError, for deeply nested input, reads
NaN/Infinity literals, and accepts files of any size; one function turns all of that into a
one-line error of the caller's type that names the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gsbp_ros.errors import GsbpError

#: Larger JSON files are refused before reading: a camera file of 100,000 views is ~60 MB.
MAX_JSON_BYTES = 256 << 20


def read_json(path: str | Path, *, error: type[GsbpError], what: str = "JSON file") -> Any:
    """Parse a JSON file; every failure is ``error(f"{path}: ...")``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(
                f"{path}: {what} is {size / 2**20:.0f} MiB; refusing to read more than "
                f"{MAX_JSON_BYTES >> 20} MiB of JSON"
            )
        text = path.read_bytes().decode("utf-8-sig")
        return json.loads(text)
    except RecursionError:
        raise error(f"{path}: not valid JSON: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid JSON: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def number(value: Any, what: str, error: type[GsbpError], *, integer: bool = False) -> float:
    """``value`` as a finite float (or an int when ``integer``), else ``error`` naming ``what``.

    Only JSON numbers count: strings, booleans, lists and null are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{what} must be a number, got {json.dumps(value)[:40]}")
    if not math.isfinite(value):
        raise error(f"{what} must be finite, got {value}")
    if integer:
        if value != int(value):
            raise error(f"{what} must be a whole number, got {value}")
        return int(value)
    return float(value)


def matrix(value: Any, rows: int, cols: int, what: str, error: type[GsbpError]) -> list:
    """A ``rows`` x ``cols`` nested list of finite numbers (floats), else ``error``."""
    if not isinstance(value, list) or len(value) != rows:
        raise error(f"{what} must be a {rows}x{cols} list of numbers")
    out = []
    for r in value:
        if not isinstance(r, list) or len(r) != cols:
            raise error(f"{what} must be a {rows}x{cols} list of numbers")
        out.append([number(v, what, error) for v in r])
    return out
