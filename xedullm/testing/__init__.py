"""Fake provider servers for tests and benchmarks: real uvicorn on 127.0.0.1, real sockets,
the providers' wire formats as protocols.md describes them (not as our client uses them).

    from xedullm.testing import FakeOpenAIServer, FakeDashScopeServer, FakeErnieServer, Fault

    with FakeOpenAIServer(flavor="deepseek", api_key="sk-test-1") as fake:
        fake.base_url              # http://127.0.0.1:PORT/v1
        fake.faults.append(Fault.status(503))
        ...                        # talk to it
        fake.requests[-1]["json"]

Servers (each also has ``.start()`` / ``.stop()``; ``port=`` picks a fixed port):

- ``FakeOpenAIServer(flavor='openai', api_key='sk-test', models=None, reply=None,
  token_delay=0.0)``; flavor one of openai, deepseek, moonshot, openrouter, glm, qwen.
  ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``. Per flavor: error bodies
  and statuses, usage placement (openai/deepseek/qwen: a ``choices: []`` chunk only with
  ``stream_options.include_usage``; openrouter: always; glm: top-level on the last chunk,
  chunks without ``object``; moonshot: inside the final choice), comments
  (``: keep-alive`` deepseek, ``: OPENROUTER PROCESSING`` openrouter), ``reasoning_content``
  for ``deepseek-reasoner``. Unknown model: 404 ``model_not_found`` / moonshot
  ``resource_not_found_error`` / glm 400 "1211" / deepseek 400 "Model Not Exist" with the
  generic code ``invalid_request_error``. GLM also accepts Zhipu JWTs. A request with
  ``tools`` is answered with tool calls (``finish_reason: "tool_calls"``, content null; streamed
  as a head piece with index/id/name, then argument fragments), a last ``tool`` message with
  "工具结果是：…", ``response_format`` json_object / json_schema with JSON text; see
  ``answer_shapes.py`` for the exact rules. ``logprobs: true``: ``choice.logprobs.content``
  lists each answer piece as one token at logprob -0.5 (``top_logprobs`` copies of it).
- ``FakeDashScopeServer(api_key='sk-test', models=None, reply=None, token_delay=0.0)``:
  ``base_url`` = ``.../api/v1``; ``POST /api/v1/services/aigc/text-generation/generation``
  (SSE only with header ``X-DashScope-SSE: enable``; ``incremental_output``,
  ``result_format``; ``parameters.tools`` / ``response_format`` answered as the OpenAI fake
  does, tool calls as ``message.tool_calls`` pieces); ``compatible_base_url`` =
  ``.../compatible-mode/v1`` (flavor qwen).
- ``FakeErnieServer(api_key='test-ak', secret_key='test-sk', reply=None, token_delay=0.0)``:
  ``base_url`` = host root; ``POST /oauth/2.0/token`` and
  ``POST /rpc/2.0/ai_custom/v1/wenxinworkshop/chat/<endpoint>``. Extra: ``token_requests``,
  ``issued_tokens``, ``expire_tokens()`` (-> 111), ``revoke_tokens()`` (-> 110).

``api_key=None`` accepts any key. The reply is ``"你好！你刚才说：" + last user message`` unless
``reply`` is a str or ``callable(messages) -> str`` (ERNIE passes its ``system`` as a first
system message); it streams in pieces of 4 characters. Usage: prompt_tokens = characters
of all message contents, completion_tokens = number of pieces (reasoning pieces included).
``token_delay`` seconds pass between stream events (non-stream: per piece, before answering).

Records and counters (all fakes): ``requests`` (dicts: method, path, query, headers with
lower-case keys, json, body, client = (host, port) of the caller), ``chat_requests``, ``usage_log`` (unified
prompt/completion/total dicts, the last usage each request reported on the wire),
``active_connections`` (open TCP connections), ``active_streams``, ``max_active_streams``,
``streams_completed``, ``streams_cancelled`` (client left early), ``wait_for(pred,
timeout=5.0) -> bool``, ``reset()``, ``url`` (host root), ``port``.

Faults (``xedullm.testing.faults.Fault``; FIFO in ``fake.faults``, one per valid chat
request; combine with ``+``): ``none()``, ``status(code, body=None, headers=None)``,
``rate_limited(retry_after=1)``, ``quota()``, ``disconnect_after(n_chunks)``,
``malformed_chunk(after)``, ``error_frame(after, code=None, message=None)``,
``stall(seconds)``, ``stall_between(seconds, after)``, ``keepalive_only(seconds)``,
``no_done()``, ``leading_blank_lines(n)``, ``huge(n_chars)``, ``invalid_utf8(after)``,
``crlf()``. See ``faults.py`` for what each does on stream and non-stream requests.

Model hub: ``FakeHub()`` speaks Hugging Face's resolve protocol and ModelScope's file API
(``hub.add(repo, path, data)``; switches ``cuts``, ``corrupt``, ``declared_size``); see
``hub_fake.py``.

Command line (prints the base URL, serves until Ctrl-C / SIGTERM):
``python -m xedullm.testing openai --flavor deepseek --port 9001 --api-key sk-test-x
[--token-delay 0.02]``; also ``dashscope --api-key K`` and ``ernie --api-key AK --secret-key SK``.
"""
from .fake_server import FakeServer
from .dashscope_fake import FakeDashScopeServer
from .ernie_fake import FakeErnieServer
from .faults import Fault
from .hub_fake import FakeHub
from .openai_fake import FLAVORS, FakeOpenAIServer
from .server_thread import ServerThread

__all__ = ["FLAVORS", "FakeDashScopeServer", "FakeErnieServer", "FakeHub", "FakeOpenAIServer",
           "FakeServer", "Fault", "ServerThread"]
