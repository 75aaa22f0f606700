"""cProfile of ``xedullm serve`` from its first request on (imports and start-up excluded).

    python profile_server.py OUT.prof serve --base-url ... (the `xedullm` CLI arguments)

Stops on SIGINT like the real command, then writes the profile to OUT.prof.
"""
from __future__ import annotations

import cProfile
import sys


def main():
    out, argv = sys.argv[1], sys.argv[2:]
    # Import what serving needs before profiling, so the profile shows requests, not imports.
    import xedullm.engines.async_wire  # noqa: F401 - aiohttp, loaded at the first request otherwise
    import uvicorn.lifespan.on  # noqa: F401
    import uvicorn.loops.asyncio  # noqa: F401
    import uvicorn.protocols.http.httptools_impl  # noqa: F401
    import xedullm.server.app  # noqa: F401
    import xedullm.server.runner  # noqa: F401
    from xedullm.cli import main as cli

    profile = cProfile.Profile()
    profile.enable()
    try:
        cli(argv)
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
