"""cProfile of xedullm's client per request (sequential, sync), non-stream then stream.

    python profile_client.py '<json spec>'    -> the top functions, as text on stdout

spec: url, key, model, question, reply, requests, top.
"""
from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import re
import sys


def main():
    spec = json.loads(sys.argv[1])
    import xedullm
    from xedullm import Client

    ours = re.escape(os.path.dirname(xedullm.__file__) + os.sep)

    client = Client(base_url=spec["url"], api_key=spec["key"], model=spec["model"], verbose=False)
    for stream in (False, True):
        ask = (lambda q: "".join(client.inference(q, stream=True))) if stream else client.inference
        for _ in range(20):
            assert ask(spec["question"]) == spec["reply"]
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(spec["requests"]):
            ask(spec["question"])
        profile.disable()
        kind = "stream" if stream else "non-stream"
        for order, restrict, what in (("tottime", (), "by own time"),
                                      ("cumulative", (ours,), "xedullm's functions by cumulative time")):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(*restrict, spec["top"])
            print(f"### client, {kind}, {spec['requests']} requests, {what}\n")
            print(out.getvalue().split("\n", 1)[1].strip())
            print()


if __name__ == "__main__":
    main()
