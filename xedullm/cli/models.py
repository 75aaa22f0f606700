"""`xedullm models PROVIDER`: the model ids a provider offers, one per line."""
from __future__ import annotations

from ..catalog import find_provider
from .output import echo


def register(commands) -> None:
    parser = commands.add_parser(
        "models", help="列出服务商的模型 / list a provider's models",
        description="列出可用的模型名，每行一个。 / List the available model ids, one per line.")
    parser.add_argument("provider", help="服务商名字或别名 / provider id or alias")
    parser.add_argument("--base-url", default=None,
                        help="改用这个地址（镜像、代理、测试服务器） / use this address instead")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..client import Client

    provider = find_provider(args.provider)
    client = Client(provider=provider.id, base_url=args.base_url, verbose=False)
    models = client.support_model()
    for model in models:
        echo(model)
    default = client.provider.default_model
    if client.provider.has_models_endpoint and client.model == default and default not in models:
        from ..live_models import default_gone_text
        from .output import warn
        warn(default_gone_text(provider.id, default, models))
    return 0
