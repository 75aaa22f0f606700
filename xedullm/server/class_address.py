"""Where students connect: this computer's addresses, and the class address as a QR code
(printed in the terminal at start, shown large on the admin page for the projector).

The QR codes are made here with segno, on this computer: nothing is fetched from anywhere.
"""
from __future__ import annotations

import io
import ipaddress
import socket
from typing import Any, Iterable, List, Optional

_ANY_HOSTS = ("0.0.0.0", "", "::")

def lan_addresses() -> List[str]:
    """This computer's IPv4 addresses other than loopback, found without sending any packet."""
    found: List[str] = []
    try:
        found += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    # Connecting a UDP socket only picks the outgoing interface; nothing is sent.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        found.append(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    return _unique(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def _unique(items: Iterable[str]) -> List[str]:
    seen: List[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def local_urls(host: str, port: int) -> List[str]:
    """The addresses to print: every LAN address then 127.0.0.1 when serving on all interfaces."""
    if host in _ANY_HOSTS:
        hosts = lan_addresses() + ["127.0.0.1"]
    elif host == "localhost":
        hosts = ["127.0.0.1"]
    else:
        hosts = [f"[{host}]" if ":" in host else host]
    return [f"http://{h}:{port}" for h in hosts]


def class_url(request: Any) -> str:
    """The address students should open, as seen from the admin page's own request.

    A teacher often opens /admin on the server itself (127.0.0.1 or localhost), an address
    no student can reach; then the class address is this computer's LAN address instead."""
    base = f"{request.url.scheme}://{request.url.netloc}"
    host = request.url.hostname or ""
    if not _is_loopback(host):
        return base
    lan = lan_addresses()
    port = request.url.port
    if not lan:
        return base
    return f"{request.url.scheme}://{lan[0]}" + (f":{port}" if port else "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def qr_svg(url: str, scale: int = 10) -> bytes:
    """The QR code of ``url`` as a standalone SVG document."""
    import segno

    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=scale, border=2, xmldecl=False,
                                    title=url, dark="#000", light="#fff")
    return out.getvalue()


def terminal_qr(url: str, encoding: Optional[str]) -> Optional[str]:
    """The QR code of ``url`` drawn with half-block characters, or None when the terminal's
    encoding cannot show them (some Windows consoles): the address is printed anyway."""
    import segno

    try:
        "▀▄█".encode(encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return None
    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue().rstrip("\n")
