"""The GGUF file header: magic ``GGUF`` then a little-endian uint32 version (llama.cpp's
gguf.h; versions 1-3 exist, llama.cpp reads 2 and 3). Enough to tell a model file from an
error page, a truncated start or a file of another format."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Union

MAGIC = b"GGUF"
KNOWN_VERSIONS = (2, 3)
HEADER_BYTES = 8


def header_ok(start: bytes) -> bool:
    """True when ``start`` (a file's first bytes, at least 8) opens a GGUF file llama.cpp reads."""
    if len(start) < HEADER_BYTES or start[:4] != MAGIC:
        return False
    (version,) = struct.unpack("<I", start[4:8])
    return version in KNOWN_VERSIONS


def file_ok(path: Union[str, Path]) -> bool:
    try:
        with open(path, "rb") as f:
            return header_ok(f.read(HEADER_BYTES))
    except OSError:
        return False
