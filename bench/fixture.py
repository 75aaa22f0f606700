"""What every section asks and expects: one question, one fixed answer, one fake provider."""
from __future__ import annotations

from .envs import ENVS
from .procs import Server, clean_env, free_port

KEY = "sk-bench-5f3c9a7e21d04b6a"
MODEL = "gpt-4o-mini"
QUESTION = "什么是光合作用？/ What is photosynthesis?"
# 114 characters: 29 stream chunks of 4 characters (the fake's piece size, CHUNKS below).
REPLY = ("光合作用是植物利用阳光、水和二氧化碳制造养分并放出氧气的过程，叶绿体是它的工厂。"
         "Photosynthesis turns light, water and CO2 into sugar and oxygen in leaves.")
# A steady provider pace: ~33 chunks/s, so one answer streams for about a second.
TOKEN_DELAY = 0.03


def start_fake(token_delay: float, name: str = "fake") -> Server:
    """Our fake OpenAI-compatible provider in its own process (xedullm's venv)."""
    port = free_port()
    cmd = [ENVS["xedullm"].python, "-m", "xedullm.testing", "openai", "--flavor", "openai",
           "--port", str(port), "--api-key", KEY, "--models", MODEL, "--reply", REPLY,
           "--token-delay", str(token_delay)]
    return Server(name, cmd, port, "/v1/models", clean_env(),
                  headers={"Authorization": f"Bearer {KEY}"})
CHUNKS = -(-len(REPLY) // 4)
