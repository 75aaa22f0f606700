"""A copy of a GGUF model file with another chat template, for tests of template-dependent
features (tool calls) with the small model the tests already have.

GGUF layout (llama.cpp's gguf.h): header (magic, version, tensor count, metadata count), the
metadata key/values, the tensor infos (offsets relative to the data section), padding to the
file's alignment, then the tensor data. Changing one string changes the length of the
metadata, so the copy re-pads before the unchanged tensor data.
"""
from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import BinaryIO, Union

from ..models.gguf import _FIXED, _STRING, _read_string, _skip_value

_ALIGNMENT_KEY = "general.alignment"
_TEMPLATE_KEY = "tokenizer.chat_template"


def _string_bytes(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _copy_value(f: BinaryIO, kind: int) -> bytes:
    start = f.tell()
    _skip_value(f, kind)
    end = f.tell()
    f.seek(start)
    return f.read(end - start)


def with_chat_template(source: Union[str, Path], target: Union[str, Path], template: str) -> Path:
    """Write ``target``: ``source`` with its ``tokenizer.chat_template`` set to ``template``."""
    with open(source, "rb") as f:
        magic, version, tensors, count = struct.unpack("<4sIQQ", f.read(24))
        entries = []
        alignment = 32
        replaced = False
        for _ in range(count):
            key = _read_string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            if key == _TEMPLATE_KEY and kind == _STRING:
                _skip_value(f, kind)
                value = _string_bytes(template)
                replaced = True
            else:
                value = _copy_value(f, kind)
                if key == _ALIGNMENT_KEY and kind in _FIXED:
                    alignment = int.from_bytes(value, "little")
            entries.append(_string_bytes(key) + struct.pack("<I", kind) + value)
        if not replaced:
            entries.append(_string_bytes(_TEMPLATE_KEY) + struct.pack("<I", _STRING) + _string_bytes(template))
        infos_start = f.tell()
        for _ in range(tensors):
            _read_string(f)
            (dims,) = struct.unpack("<I", f.read(4))
            f.seek(8 * dims + 4 + 8, 1)       # dims, type, offset
        infos_end = f.tell()
        f.seek(infos_start)
        infos = f.read(infos_end - infos_start)
        data_start = -(-infos_end // alignment) * alignment
        head = struct.pack("<4sIQQ", magic, version, tensors, len(entries)) + b"".join(entries) + infos
        head += b"\0" * (-len(head) % alignment)
        with open(target, "wb") as out:
            out.write(head)
            f.seek(data_start)
            shutil.copyfileobj(f, out, 1 << 20)
    return Path(target)

