"""Where a model file comes from: each source answers "which URL, with which headers, how
big, which sha256". The download itself (resume, checks, placing) is pull.py's.

Wire forms, checked 2026-12-07 (docs/teacher-guide.md, "Offline models", has the sources):

- Hugging Face, resolve protocol: ``{endpoint}/{repo}/resolve/{revision}/{file}``; endpoint
  ``HF_ENDPOINT`` (mirrors in China) or https://huggingface.co. ``HEAD`` without following
  redirects (``Accept-Encoding: identity``): an LFS file answers 302 to its CDN with
  ``X-Linked-Size`` (bytes) and ``X-Linked-Etag`` (its sha256, quoted), plus ``X-Repo-Commit``;
  a plain git file answers 200 with ``ETag`` (a git sha1, not a sha256) and
  ``Content-Length``. A relative Location is the hub's own rename redirect and is followed.
  ``GET`` with ``Range: bytes=N-`` follows the 302; the CDN answers 206.
- ModelScope: list ``{endpoint}/api/v1/models/{repo}/repo/files?Revision=master&Recursive=true``
  -> ``{"Code":200,"Data":{"Files":[{"Path","Name","Type","Size","Sha256",...}]}}``; file
  ``{endpoint}/api/v1/models/{repo}/repo?Revision=master&FilePath={file}`` with Range.
  Endpoint ``MODELSCOPE_DOMAIN`` (host, https:// added) or https://www.modelscope.cn.
- A classroom server (``xedullm serve``): ``GET {url}/v1/local-models`` lists the teacher's
  models (``id``, ``file``, ``size``, ``sha256``); ``GET {url}/v1/local-models/{id}`` is the
  file, with Range; both behind the class's access code or a student token (Bearer).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional
from urllib.parse import quote, quote_plus, urljoin
from urllib.request import getproxies, proxy_bypass

from ..errors import (APIConnectionError, AuthenticationError, ConfigurationError,
                      ModelNotFoundError, ServerError)
from .local_catalog import LocalModel

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_DEFAULT_ENDPOINT = "https://www.modelscope.cn"
MODELSCOPE_REVISION = "master"
MAX_REDIRECTS = 5
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class RemoteFile:
    url: str
    where: str                                  # for messages: "Hugging Face (https://…)"
    size: Optional[int] = None
    sha256: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict, repr=False)   # may hold a code or token


class Http:
    """A small urllib3 client: proxies from the environment, certifi's CAs, redirects followed
    by hand (an Authorization header never goes to another host)."""

    def __init__(self, timeout: float = 60.0) -> None:
        import certifi
        import urllib3

        self._urllib3 = urllib3
        self._timeout = urllib3.Timeout(connect=min(15.0, timeout), read=timeout)
        self._proxies = getproxies()
        self._ca = certifi.where()
        self._managers: Dict[Optional[str], Any] = {}

    def _manager(self, url: str) -> Any:
        parsed = self._urllib3.util.parse_url(url)
        proxy = self._proxies.get(parsed.scheme or "http") or self._proxies.get("all")
        if proxy and proxy_bypass(parsed.host or ""):
            proxy = None
        manager = self._managers.get(proxy)
        if manager is None:
            common = dict(num_pools=4, maxsize=4, timeout=self._timeout, retries=False, ca_certs=self._ca)
            manager = (self._urllib3.ProxyManager(proxy, **common) if proxy
                       else self._urllib3.PoolManager(**common))
            self._managers[proxy] = manager
        return manager

    def open(self, method: str, url: str, headers: Dict[str, str], *, follow: str = "all") -> Any:
        """The response (body unread) after redirects: ``follow='all'``, or ``'relative'`` (a
        HEAD to the hub: its CDN redirect is the answer)."""
        headers = dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self._manager(url).urlopen(method, url, headers=headers, redirect=False,
                                                      preload_content=False, decode_content=False)
            except (self._urllib3.exceptions.HTTPError, OSError) as exc:
                raise connection_error(url, exc) from None
            location = response.headers.get("location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            if follow == "relative" and not location.startswith("/"):
                return response
            response.drain_conn()
            response.release_conn()
            target = urljoin(url, location)
            if _host(target) != _host(url):
                headers.pop("Authorization", None)
            url = target
        raise ServerError(f"下载地址重定向太多次：{url} / Too many redirects while downloading: {url}")

    def json(self, url: str, headers: Dict[str, str]) -> Any:
        response = self.open("GET", url, headers)
        try:
            body = response.read()
        except (self._urllib3.exceptions.HTTPError, OSError) as exc:
            raise connection_error(url, exc) from None
        finally:
            response.release_conn()
        check_status(response.status, url, body)
        try:
            return json.loads(body)
        except ValueError:
            raise ServerError(f"{url} 的回答不是 JSON。/ The answer from {url} is not JSON.") from None


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def connection_error(url: str, exc: BaseException) -> APIConnectionError:
    return APIConnectionError(
        f"连不上 {_host(url)}（{type(exc).__name__}）：请检查网络，或换一个来源（--source、HF_ENDPOINT、--from 老师的服务器），"
        f"再运行同一条命令，已下载的部分会接着下载。/ Cannot reach {_host(url)} ({type(exc).__name__}): check the "
        f"network or pick another source (--source, HF_ENDPOINT, --from your teacher's server), then run the same "
        f"command again; what was downloaded is kept and continued.")


def check_status(status: int, url: str, body: bytes = b"") -> None:
    if status < 400:
        return
    where = _host(url)
    if status in (401, 403):
        raise AuthenticationError(_message_from(body) or (
            f"{where} 拒绝了下载（{status}）：请检查访问码或令牌。/ {where} refused the download ({status}): "
            f"check the access code or token."), status_code=status)
    if status == 404:
        raise ModelNotFoundError(f"{where} 上没有这个文件（404）：{url} / No such file on {where} (404): {url}",
                                 status_code=404)
    raise ServerError(f"{where} 出错了（HTTP {status}），请稍后再试。/ {where} failed (HTTP {status}); try again later.",
                      status_code=status)


def _message_from(body: bytes) -> Optional[str]:
    """The bilingual message our own server puts in its OpenAI-format errors."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return message if isinstance(message, str) else None


def normalize_etag(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"').lower()


def sha256_or_none(value: Optional[str]) -> Optional[str]:
    value = (value or "").strip().lower()
    return value if _SHA256.match(value) else None


def hugging_face(http: Http, row: LocalModel, endpoint: Optional[str] = None) -> RemoteFile:
    if not row.hf_repo or not row.hf_file:
        raise ConfigurationError(_no_source(row, "hf"))
    base = (endpoint or os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")
    url = f"{base}/{row.hf_repo}/resolve/{quote(row.revision, safe='')}/{quote(row.hf_file)}"
    head = http.open("HEAD", url, {"Accept-Encoding": "identity"}, follow="relative")
    head.release_conn()
    check_status(head.status, url)
    linked_size = head.headers.get("x-linked-size")
    size_text = linked_size or (head.headers.get("content-length") if head.status < 300 else None)
    size = int(size_text) if size_text and size_text.isdigit() else None
    sha = sha256_or_none(normalize_etag(head.headers.get("x-linked-etag") or head.headers.get("etag")))
    return RemoteFile(url=url, where=f"Hugging Face ({base})", size=size, sha256=sha)


def modelscope(http: Http, row: LocalModel, endpoint: Optional[str] = None) -> RemoteFile:
    if not row.ms_repo or not row.ms_file:
        raise ConfigurationError(_no_source(row, "modelscope"))
    base = (endpoint or os.environ.get("MODELSCOPE_DOMAIN") or MODELSCOPE_DEFAULT_ENDPOINT).rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "https://" + base
    listing = http.json(f"{base}/api/v1/models/{row.ms_repo}/repo/files?Revision={MODELSCOPE_REVISION}"
                        f"&Recursive=true", {})
    files = ((listing or {}).get("Data") or {}).get("Files") or []
    entry = next((f for f in files if isinstance(f, dict) and f.get("Path") == row.ms_file), None)
    if entry is None:
        raise ModelNotFoundError(f"ModelScope 的 {row.ms_repo} 里没有 {row.ms_file}。/ "
                                 f"ModelScope's {row.ms_repo} has no {row.ms_file}.")
    size = entry.get("Size")
    url = (f"{base}/api/v1/models/{row.ms_repo}/repo?Revision={MODELSCOPE_REVISION}"
           f"&FilePath={quote_plus(row.ms_file)}")
    return RemoteFile(url=url, where=f"ModelScope ({base})", size=size if isinstance(size, int) else None,
                      sha256=sha256_or_none(entry.get("Sha256")))


def classroom(http: Http, row: LocalModel, url: str, key: Optional[str]) -> RemoteFile:
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    listing = http.json(f"{base}/v1/local-models", headers)
    entry = next((m for m in (listing or {}).get("data") or [] if isinstance(m, dict) and m.get("id") == row.name),
                 None)
    if entry is None:
        raise ModelNotFoundError(f"老师的服务器 {base} 上没有模型 {row.name}：请老师先运行 xedullm models pull {row.name}。/ "
                                 f"The teacher's server {base} has no model {row.name}: ask your teacher to run "
                                 f"xedullm models pull {row.name} first.")
    size = entry.get("size")
    return RemoteFile(url=f"{base}/v1/local-models/{quote(row.name)}", where=f"老师的服务器 / teacher's server ({base})",
                      size=size if isinstance(size, int) else None, sha256=sha256_or_none(entry.get("sha256")),
                      headers=headers)


def _no_source(row: LocalModel, source: str) -> str:
    return (f"模型 {row.name} 没有来源 {source}，可用：{', '.join(row.sources)}（--source）。/ "
            f"Model {row.name} has no source {source}; available: {', '.join(row.sources)} (--source).")


__all__ = ["Http", "RemoteFile", "classroom", "hugging_face", "modelscope"]
