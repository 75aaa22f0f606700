"""The GGUF file header: magic ``GGUF`` then a little-endian uint32 version (llama.cpp's
gguf.h; versions 1-3 exist, llama.cpp reads 2 and 3). Enough to tell a model file from an
error page, a truncated start or a file of another format."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Optional, Union

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


# Value types of GGUF metadata (gguf.h): fixed sizes, 8 = string, 9 = array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def metadata_string(path: Union[str, Path], key: str) -> Optional[str]:
    """The string value of metadata ``key`` (e.g. ``tokenizer.chat_template``) in a GGUF file,
    or None when the file has no such key or is not a GGUF file llama.cpp reads."""
    try:
        with open(path, "rb") as f:
            if not header_ok(f.read(HEADER_BYTES)):
                return None
            _tensors, count = struct.unpack("<QQ", f.read(16))
            for _ in range(count):
                name = _read_string(f)
                (kind,) = struct.unpack("<I", f.read(4))
                if kind == _STRING and name == key:
                    return _read_string(f)
                _skip_value(f, kind)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None
    return None


def chat_template(path: Union[str, Path]) -> Optional[str]:
    """The model's own chat template (Jinja), or None when the file carries none."""
    return metadata_string(path, "tokenizer.chat_template")


def _read_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    data = f.read(length)
    if len(data) != length:
        raise ValueError("truncated GGUF metadata")
    return data.decode("utf-8")


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind in _FIXED:
        f.seek(_FIXED[kind], 1)
    elif kind == _STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, 1)
    elif kind == _ARRAY:
        item_kind, n = struct.unpack("<IQ", f.read(12))
        if item_kind in _FIXED:
            f.seek(_FIXED[item_kind] * n, 1)
        else:
            for _ in range(n):
                _skip_value(f, item_kind)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")
