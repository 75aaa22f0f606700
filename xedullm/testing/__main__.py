"""``python -m xedullm.testing openai|dashscope|ernie ...``: run one fake until Ctrl-C."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import List, Optional

from .dashscope_fake import FakeDashScopeServer
from .ernie_fake import FakeErnieServer
from .openai_fake import FLAVORS, FakeOpenAIServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xedullm.testing",
                                     description="运行假的大模型服务 / Run a fake LLM provider")
    parser.add_argument("kind", choices=("openai", "dashscope", "ernie"))
    parser.add_argument("--flavor", choices=FLAVORS, default="openai",
                        help="openai kind only / 仅用于 openai")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port / 任意空闲端口")
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument("--secret-key", default="test-sk", help="ernie only / 仅用于 ernie")
    parser.add_argument("--models", default=None, help="comma-separated / 逗号分隔")
    parser.add_argument("--reply", default=None, help="fixed reply text / 固定回答")
    parser.add_argument("--token-delay", type=float, default=0.0)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    models = args.models.split(",") if args.models else None
    common = dict(reply=args.reply, token_delay=args.token_delay, host=args.host, port=args.port)
    if args.kind == "openai":
        fake = FakeOpenAIServer(flavor=args.flavor, api_key=args.api_key, models=models, **common)
    elif args.kind == "dashscope":
        fake = FakeDashScopeServer(api_key=args.api_key, models=models, **common)
    else:
        fake = FakeErnieServer(api_key=args.api_key, secret_key=args.secret_key, **common)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fake.start()
    try:
        print(fake.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
