"""The Client facade: XEduLLM's API (sync, streaming, async) over the engines.

Construction does no network I/O. The engine (HTTP transport + protocol adapter, or the
in-process local model) is created on first use.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Union

from .errors import BadRequestError, ConfigurationError, LLMError, ModelNotFoundError, StreamInterruptedError
from .fallback import Attempt, Attempts, Breaker, parse_spec
from .keys import mask_key, resolve_credentials
from .types import ChatChunk, ChatRequest, ChatResult, Connection, EmbeddingResult, Usage, join_tool_calls

if TYPE_CHECKING:
    from .engines.engine import Engine
    from .classroom_presets import Preset

Messages = Union[str, List[Dict[str, Any]]]
_ROLES = ("system", "user", "assistant", "tool")
# build_request(system=...) left out: use the client's own system prompt.
_CLIENT_SYSTEM = object()
# Parameters with a field of their own in ChatRequest; any other keyword goes to ``extra``.
_REQUEST_FIELDS = ("max_tokens", "stop")


def _check_range(name: str, value: Optional[float], high: float) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise ConfigurationError(
            f"{name} 应是 0 到 {high:g} 之间的数，收到 {value!r}。/ "
            f"{name} must be a number between 0 and {high:g}, got {value!r}.")
    return float(value)


def _messages(input: Messages) -> List[Dict[str, Any]]:
    """Validate what the caller passed to inference() and normalize it to messages."""
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    if not isinstance(input, (list, tuple)) or not input:
        raise BadRequestError(
            "inference() 的输入应是字符串，或非空的消息列表 [{'role': 'user', 'content': '...'}]。/ "
            "inference() takes a string or a non-empty list of {'role', 'content'} messages.")
    messages = [_message(i, item) for i, item in enumerate(input)]
    if all(m["role"] == "system" for m in messages):
        raise BadRequestError("消息里至少要有一条用户消息。/ Add at least one user message.")
    return messages


def _message(i: int, item: Any) -> Dict[str, Any]:
    """One message: text content; an assistant turn may instead carry ``tool_calls``
    (content None), and a ``tool`` turn answers one of them by ``tool_call_id``."""
    n = i + 1
    if not isinstance(item, dict) or "role" not in item:
        raise BadRequestError(
            f"第 {n} 条消息应是含 'role' 和 'content' 的字典，收到 {type(item).__name__}。/ "
            f"Message {n} must be a dict with 'role' and 'content'.")
    role, content, calls = item["role"], item.get("content"), item.get("tool_calls")
    if role not in _ROLES:
        raise BadRequestError(
            f"第 {n} 条消息的 role {role!r} 不支持，可选 system / user / assistant / tool。/ "
            f"Message {n} has role {role!r}; use system, user, assistant or tool.")
    if calls is not None and (role != "assistant" or not isinstance(calls, list)
                              or not all(isinstance(c, dict) for c in calls)):
        raise BadRequestError(
            f"第 {n} 条消息的 tool_calls 应是助手消息里的字典列表。/ "
            f"Message {n}: tool_calls must be a list of dicts on an assistant message.")
    if isinstance(content, list):
        content = _parts(n, role, content)
    elif not isinstance(content, str) and not (calls and content is None):
        raise BadRequestError(
            f"第 {n} 条消息的 content 应是字符串，或 OpenAI 的内容片段列表（text、image_url）。/ "
            f"Message {n} content must be a string or a list of OpenAI content parts (text, image_url).")
    message: Dict[str, Any] = {"role": role, "content": content}
    if calls:
        message["tool_calls"] = calls
    if role == "tool":
        if not isinstance(item.get("tool_call_id"), str):
            raise BadRequestError(
                f"第 {n} 条消息（role 为 tool）需要 tool_call_id：它回答的是哪一次工具调用。/ "
                f"Message {n} (role tool) needs tool_call_id: the tool call it answers.")
        message["tool_call_id"] = item["tool_call_id"]
    return message


def _parts(n: int, role: str, content: List[Any]) -> List[Dict[str, Any]]:
    """OpenAI content parts: text everywhere, pictures (https or data: URLs) in user turns."""
    from . import pictures

    out: List[Dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"messages[{n - 1}].content[{j}]"
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        elif pictures.is_image_part(part) and role == "user":
            out.append({"type": "image_url", "image_url": {"url": pictures.check_url(pictures.image_url(part), where)}})
        else:
            raise BadRequestError(
                f"第 {n} 条消息的第 {j + 1} 个片段不对：应是 {{'type': 'text', 'text': …}}，或（仅用户消息）"
                f"{{'type': 'image_url', 'image_url': {{'url': …}}}}。/ Message {n}, part {j + 1}: use "
                f"{{'type': 'text', 'text': …}} or, in a user message, {{'type': 'image_url', 'image_url': {{'url': …}}}}.")
    if not out:
        raise BadRequestError(f"第 {n} 条消息的内容片段列表是空的。/ Message {n} has an empty list of parts.")
    return out


def _check_ascii_keys(credentials: Any, what_zh: str, what_en: str) -> None:
    # An HTTP header carries only ASCII; the HTTP library would raise a bare UnicodeEncodeError.
    for key in (credentials.api_key, credentials.secret_key):
        if key and not (key.isascii() and key.isprintable()):
            raise ConfigurationError(
                f"{what_zh}里有中文、全角或不可见字符，无法随请求发送：请重新复制，只保留英文字母、数字和符号。/ "
                f"The {what_en} contains non-ASCII or invisible characters, which cannot be sent with "
                f"a request: copy it again, keeping only letters, digits and symbols.")


def _unsupported(message: str, param: str) -> BadRequestError:
    err = BadRequestError(message, code="unsupported_parameter")
    err.param = param  # the field to name in the server's 400
    return err


class Client:
    """One model at one provider (or a classroom server, or the local model)."""

    def __init__(
        self,
        provider: Optional[str] = None,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        secret_key: Optional[str] = None,
        xedu_url: Optional[str] = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 2,
        verbose: bool = True,
        fallback: Optional[Sequence[Union["Client", str]]] = None,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
        require_key: bool = True,
    ) -> None:
        if timeout is None or timeout <= 0:
            raise ConfigurationError("timeout 必须大于 0。/ timeout must be greater than 0.")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ConfigurationError("model 必须是非空字符串。/ model must be a non-empty string.")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.system_prompt: Optional[str] = None
        self.last_usage: Optional[Usage] = None
        #: a reasoning model's thinking for the last answer ('' when there was none)
        self.last_reasoning = ""
        #: which provider gave the last answer (a fallback's id when the primary failed)
        self.last_provider: Optional[str] = None
        #: the tools the model asked to call in the last answer (OpenAI's shape), else []
        self.last_tool_calls: List[Dict[str, Any]] = []
        self._engine: Optional[Engine] = None
        # Engines left behind by reload_credentials(): answers still running on them finish.
        self._retired: List[Engine] = []
        self._store_seen: Any = None
        #: when the key in use was taken (time.time()), for the admin page's "since"
        self.key_since = time.time()
        self.xedu_url = xedu_url.rstrip("/") if xedu_url else None
        # Client(xedu_url=…): the turns so far. XEduLLM's teacher server kept one conversation
        # per student client, so inference('继续') goes on from the last answer; new_conversation()
        # starts over. A message list passed to inference() is sent exactly as given.
        self.conversation: List[Dict[str, Any]] = []
        # The catalog (every provider's row) is read on the first Client, not on import.
        from . import catalog

        if xedu_url:
            # A classroom server speaks the OpenAI protocol; the teacher's server picks the model.
            self.provider = None
            self.base_url = f"{self.xedu_url}/v1"
            self.model = model
            self._credentials = _classroom_credentials(api_key)
            _check_ascii_keys(self._credentials, "访问码（或学生令牌）", "access code (or student token)")
        elif provider is None and base_url:
            self.provider = None
            self.base_url = base_url.rstrip("/")
            if not model:
                raise ConfigurationError(
                    "使用 base_url 时请同时指定 model。/ Pass model= together with base_url.")
            self.model = model
            self._credentials = resolve_credentials(catalog.GENERIC_OPENAI, api_key, secret_key)
            _check_ascii_keys(self._credentials, "密钥", "API key")
        else:
            if provider is None:
                if api_key:
                    raise ConfigurationError(
                        f"给了 api_key 却没有指定 provider：请写 provider='deepseek' 等，可选 "
                        f"{catalog.support_provider()}。/ An api_key needs a provider=… "
                        f"(or base_url=…).")
                provider = "local"
            self.provider = catalog.find_provider(provider)
            self._credentials = resolve_credentials(self.provider, api_key, secret_key)
            # A bce-v3/ key or a compatible-mode address picks the provider's other API form.
            self.provider = catalog.api_form(self.provider, base_url, self._credentials.api_key)
            self.base_url = (base_url or self.provider.base_url).rstrip("/")
            self.model = model or self._default_model()
            _check_ascii_keys(self._credentials, "密钥", "API key")
            missing = self.provider.needs_key and not self._credentials.api_key or (
                self.provider.needs_secret and not self._credentials.secret_key)
            if missing and require_key:
                from .keys import missing_key_error

                raise missing_key_error(self.provider)
            # require_key=False (a classroom server waiting for the teacher's key): each call
            # raises MissingKeyError until reload_credentials() finds the key in the store.
        # Other clients that answer when this one cannot (fallback.py says when); set_fallback()
        # replaces them.
        self.fallbacks: List[Client] = [_fallback_client(f, self.timeout, self.max_retries) for f in fallback or ()]
        self._breaker = Breaker(breaker_failures, breaker_cooldown)
        if verbose:
            print(self._banner())

    def _default_model(self) -> str:
        if self.provider.protocol == "local":
            # The best local model this computer has (a Chinese-capable one once pulled).
            from .engines.local import default_model

            return default_model()
        return self.provider.default_model

    # -- presentation -----------------------------------------------------------------
    @property
    def label(self) -> str:
        """The provider id, or the address for a base_url / classroom client."""
        return self.provider.id if self.provider is not None else (self.xedu_url or self.base_url)

    @property
    def spec(self) -> str:
        """This client as ``fallback=`` and ``--compare`` take it, 'PROVIDER[:MODEL][@BASE_URL]'
        (model and address only where they are not the provider's defaults); a client with only
        a base URL is its address."""
        if self.provider is None:
            return self.label
        spec = self.provider.id
        if self.model and self.model != self.provider.default_model:
            spec += f":{self.model}"
        from . import catalog

        if self.base_url != catalog.main_row(self.provider).base_url.rstrip("/"):
            spec += f"@{self.base_url}"
        return spec

    def _banner(self) -> str:
        if self.provider is not None:
            return f"|| Selected provider: {self.provider.id} || Current model: {self.model} ||"
        url = self.xedu_url or self.base_url
        banner = f"|| Selected base URL: {url} ||"
        return banner + (f" Current model: {self.model} ||" if self.model else "")

    def __repr__(self) -> str:
        who = f"provider={self.provider.id!r}" if self.provider else f"base_url={self.base_url!r}"
        key = f", api_key={mask_key(self._credentials.api_key)!r}" if self._credentials.api_key else ""
        return f"Client({who}, model={self.model!r}{key})"

    def secrets(self) -> List[str]:
        """The key(s) this client sends, its fallbacks' too, for layers that must scrub them from
        their output."""
        own = [k for k in (self._credentials.api_key, self._credentials.secret_key) if k]
        return own + [k for f in self.fallbacks for k in f.secrets()]

    @property
    def key_info(self) -> Dict[str, Any]:
        """The key in use, for display only: masked, where it came from, since when."""
        creds = self._credentials
        return {"provider": self.provider.id if self.provider else None,
                "api_key": mask_key(creds.api_key), "secret_key": mask_key(creds.secret_key),
                "source": creds.source, "since": self.key_since}

    def reload_credentials(self, force: bool = False) -> bool:
        """Take up a key saved or rotated in the key store (``xedullm key set/rotate``, the admin
        page) since this client found its key; True when the key changed (its fallbacks' too).

        Only a key that came from the store (or none at all) is followed: a key passed as an
        argument or in the environment is the caller's choice and stays. Cheap to call often:
        the private file is read again only when its mtime changes, a keyring at most every
        ``KEYRING_TTL`` seconds. Answers already running finish on the old key; the next
        request uses the new one.
        """
        changed = False
        for fallback in self.fallbacks:
            changed = fallback.reload_credentials(force) or changed
        provider = self.provider
        if (provider is None or self.xedu_url or not provider.needs_key
                or self._credentials.source not in ("store", "none")):
            return changed
        from .keys.store import store_stamp

        stamp = store_stamp()
        if stamp == self._store_seen and not force:
            return changed
        self._store_seen = stamp
        fresh = resolve_credentials(provider, secret_key=None)
        if fresh.source not in ("store", "none") or not fresh.api_key:
            return changed
        if (fresh.api_key, fresh.secret_key) == (self._credentials.api_key, self._credentials.secret_key):
            return changed
        _check_ascii_keys(fresh, "密钥", "API key")
        self._credentials = fresh
        self.key_since = time.time()
        if self._engine is not None:
            self._retired.append(self._engine)   # closed with the client, not under a running answer
            self._engine = None
        self._breaker.reset()
        return True

    # -- class-level catalog ------------------------------------------------------------
    @staticmethod
    def support_provider(lang: str = "en") -> List[str]:
        from . import catalog

        return catalog.support_provider(lang)

    @staticmethod
    def provider_info(name: str, lang: str = "zh") -> Dict[str, Any]:
        from . import catalog

        if lang not in catalog.LANGS:
            catalog.support_provider(lang)  # raises the standard lang error
        provider = catalog.find_provider(name)
        info = provider.as_dict()
        info["label"] = provider.label_zh if lang == "zh" else provider.label_en
        info["key_guide"] = provider.key_guide(lang)
        return info

    # -- engine (private: every other layer uses the methods below) -----------------------
    def _get_engine(self) -> Engine:
        if self._engine is None:
            provider = self.provider
            if provider is not None and not self.xedu_url and (
                    provider.needs_key and not self._credentials.api_key
                    or provider.needs_secret and not self._credentials.secret_key):
                from .keys import missing_key_error

                raise missing_key_error(provider)
            from .engines import open_engine

            conn = Connection(self.base_url, self._credentials.api_key, self._credentials.secret_key)
            self._engine = open_engine(self.provider, conn, self.model, timeout=self.timeout,
                                       max_retries=self.max_retries,
                                       relay_server_messages=bool(self.xedu_url))
        return self._engine

    def close(self) -> None:
        for engine in (*self._retired, self._engine):
            if engine is not None:
                engine.close()

    async def aclose(self) -> None:
        """Close the async connections too (``close()`` only closes the sync ones)."""
        for engine in (*self._retired, self._engine):
            if engine is not None:
                await engine.aclose()
        self.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- settings ---------------------------------------------------------------------
    def set_system(self, prompt: Optional[str]) -> None:
        if prompt is not None and not isinstance(prompt, str):
            raise ConfigurationError("系统提示词应是字符串。/ The system prompt must be a string.")
        self.system_prompt = prompt or None

    def use_preset(self, name: str) -> "Preset":
        """Use a classroom preset (``xedullm.presets()``) as the system prompt, by id or name."""
        from .classroom_presets import find_preset

        preset = find_preset(name)
        self.set_system(preset.text)
        return preset

    def set_model(self, model: str) -> None:
        """Use another model of the same provider for later calls (checked where it can be)."""
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError("model 必须是非空字符串。/ model must be a non-empty string.")
        model = model.strip()
        if self.provider is not None and self.provider.protocol == "local":
            from .engines.local import resolve_model_path

            resolve_model_path(model)  # a ConfigurationError with advice if there is no such file
        self.model = model

    @property
    def fallback_specs(self) -> List[str]:
        """The fallbacks, in the order they are tried, each as its ``spec``."""
        return [f.spec for f in self.fallbacks]

    def set_fallback(self, fallback: Optional[Sequence[Union["Client", str]]]) -> None:
        """Use these fallbacks from the next call on: Clients or 'PROVIDER[:MODEL][@BASE_URL]'
        specs (keys found as for ``provider=``), tried in order; ``[]`` (or None) for none.

        All are made before any is used, so an error (an unknown provider, a missing key)
        names its spec and changes nothing. A spec equal to a current fallback's ``spec`` keeps
        that Client and its connections. One left out is not closed: an answer it is giving
        goes on to the end.
        """
        if isinstance(fallback, (str, Client)):
            fallback = [fallback]
        current = {f.spec: f for f in self.fallbacks}
        made: List[Client] = []
        for item in fallback or ():
            if isinstance(item, Client):
                made.append(item)
            elif isinstance(item, str) and item.strip() in current:
                made.append(current[item.strip()])
            else:
                made.append(_named_fallback(item, self.timeout, self.max_retries))
        if not self.fallbacks:
            # The breaker was not told of failures while nobody could take over: start afresh.
            self._breaker.reset()
        self.fallbacks = made

    # -- asking -----------------------------------------------------------------------
    def build_request(self, input: Union[Messages, ChatRequest], temperature: Optional[float] = None,
                      top_p: Optional[float] = None, stream: bool = False, *,
                      system: Union[str, None, object] = _CLIENT_SYSTEM, **kwargs: Any) -> ChatRequest:
        """The checked request ``input`` becomes: the system prompt first, this client's model.

        ``system`` replaces this client's system prompt for this request (None: none at all);
        the classroom server passes the teacher's live one. The one place ``stream`` is
        decided; engines and adapters only read it.
        """
        if isinstance(input, ChatRequest):
            return input if input.stream == bool(stream) else dataclasses.replace(input, stream=bool(stream))
        images = kwargs.pop("images", None)
        if images:
            input = self._picture_question(input, images)
        messages = _messages(input)
        if self.provider is not None and self.provider.protocol == "local":
            from .pictures import cannot_see, has_images

            if has_images(messages):   # the local engine runs a text model
                raise cannot_see("本地", "The local", self.model or "")
        system = self.system_prompt if system is _CLIENT_SYSTEM else system
        if system:
            messages.insert(0, {"role": "system", "content": system})
        known = {name: kwargs.pop(name) for name in _REQUEST_FIELDS if name in kwargs}
        self._check_options(kwargs, messages)
        stop = known.get("stop")
        return ChatRequest(
            model=kwargs.pop("model", None) or self.model or "default",
            messages=messages,
            stream=bool(stream),
            temperature=_check_range("temperature", temperature, 2.0),
            top_p=_check_range("top_p", top_p, 1.0),
            max_tokens=known.get("max_tokens"),
            stop=[stop] if isinstance(stop, str) else stop,
            extra=kwargs,
        )

    @staticmethod
    def _picture_question(input: Messages, images: Any) -> Messages:
        from .pictures import question

        if isinstance(images, (str, bytes)) or not isinstance(images, (list, tuple)):
            images = [images]
        if not isinstance(input, str):
            raise BadRequestError(
                "images=[…] 要和一段文字的问题一起用，如 inference('图里有什么？', images=['cat.jpg'])；"
                "消息列表请直接在 content 里放 image_url 片段。/ images=[…] goes with a question as text, e.g. "
                "inference('What is in the picture?', images=['cat.jpg']); in a list of messages put "
                "image_url parts in the content instead.")
        return question(input, images)

    def _option_table(self) -> Any:
        """The OpenAI options (``tools``, ``seed``…) this client's protocol carries, as a table
        ``{option: name on the wire or None}``; see protocols/options.py."""
        protocol = self.provider.protocol if self.provider else "openai"
        if protocol == "local":
            from .engines.local import OPTIONS
            return OPTIONS
        from .protocols import options_for

        return options_for(protocol)

    def _check_options(self, kwargs: Dict[str, Any], messages: List[Dict[str, Any]]) -> None:
        options = _options_module()
        turn = options.has_tool_turns(messages)
        if not kwargs and turn is None:
            return   # nothing to check, as for most requests: the table is not even looked up
        table = self._option_table()
        refused = options.unsupported(kwargs, table)
        where = self.provider.label_zh if self.provider else "这个服务"
        where_en = self.provider.label_en if self.provider else "this server"
        if refused:
            names = ", ".join(refused)
            raise _unsupported(
                f"{where}不支持参数 {names}，请去掉它，或换一个支持它的服务商。/ "
                f"{where_en} does not support {names}: leave it out, or use a provider that does.",
                refused[0])
        if turn is not None and options.TOOLS not in table:
            raise _unsupported(
                f"{where}不支持工具调用，第 {turn + 1} 条消息却是工具调用的一部分。/ "
                f"{where_en} does not support tool calls, but message {turn + 1} is part of one.",
                f"messages[{turn}]")

    def chat(self, input: Union[Messages, ChatRequest], temperature: Optional[float] = None,
             top_p: Optional[float] = None, **kwargs: Any) -> ChatResult:
        """The whole answer as a result: ``text``, ``reasoning``, ``usage``, ``finish_reason``,
        ``provider`` (who answered)."""
        req = self.build_request(input, temperature, top_p, False, **kwargs)
        for attempt in self._attempts():
            try:
                result = attempt.answerer.chat(req)
            except LLMError as err:
                attempt.failed(self._default_gone(err, req, attempt), answered=False)
                continue
            attempt.succeeded()
            return self._answered(result, attempt)
        raise AssertionError("unreachable: the last attempt raises")

    def chat_stream(self, input: Union[Messages, ChatRequest], temperature: Optional[float] = None,
                    top_p: Optional[float] = None, **kwargs: Any) -> Iterator[ChatChunk]:
        """The answer as it arrives: chunks with ``text``, ``reasoning``, and at the end usage."""
        req = self.build_request(input, temperature, top_p, True, **kwargs)
        self._remember(None, "")
        for attempt in self._attempts():
            texts: List[str] = []
            chunks, answered = attempt.answerer.stream(req), False
            try:
                for chunk in chunks:
                    answered = answered or bool(chunk.text or chunk.reasoning or chunk.tool_calls)
                    texts.append(chunk.text)
                    yield self._arrived(chunk, attempt)
            except LLMError as err:
                err = err if answered else self._default_gone(err, req, attempt)
                if isinstance(err, StreamInterruptedError):
                    err.partial_text = "".join(texts)   # what the student saw before the cut
                attempt.failed(err, answered)  # never a second provider once text was shown
                continue
            finally:
                chunks.close()  # closing or abandoning the iterator closes the connection
            attempt.succeeded()
            return

    async def achat(self, input: Union[Messages, ChatRequest], temperature: Optional[float] = None,
                    top_p: Optional[float] = None, **kwargs: Any) -> ChatResult:
        req = self.build_request(input, temperature, top_p, False, **kwargs)
        for attempt in self._attempts():
            try:
                result = await attempt.answerer.achat(req)
            except LLMError as err:
                attempt.failed(await self._adefault_gone(err, req, attempt), answered=False)
                continue
            attempt.succeeded()
            return self._answered(result, attempt)
        raise AssertionError("unreachable: the last attempt raises")

    async def achat_stream(self, input: Union[Messages, ChatRequest], temperature: Optional[float] = None,
                           top_p: Optional[float] = None, **kwargs: Any) -> AsyncIterator[ChatChunk]:
        req = self.build_request(input, temperature, top_p, True, **kwargs)
        self._remember(None, "")
        for attempt in self._attempts():
            texts: List[str] = []
            chunks, answered = attempt.answerer.astream(req), False
            try:
                async for chunk in chunks:
                    answered = answered or bool(chunk.text or chunk.reasoning or chunk.tool_calls)
                    texts.append(chunk.text)
                    yield self._arrived(chunk, attempt)
            except LLMError as err:
                err = err if answered else await self._adefault_gone(err, req, attempt)
                if isinstance(err, StreamInterruptedError):
                    err.partial_text = "".join(texts)   # what the student saw before the cut
                attempt.failed(err, answered)
                continue
            finally:
                await chunks.aclose()
            attempt.succeeded()
            return

    def _is_default_gone(self, err: LLMError, req: ChatRequest, attempt: Attempt) -> bool:
        return (isinstance(err, ModelNotFoundError) and attempt.answerer is self._engine
                and self.provider is not None and req.model == self.provider.default_model)

    def _default_gone(self, err: LLMError, req: ChatRequest, attempt: Attempt) -> LLMError:
        """The provider retired our default model: say which models it lists now (issue 26)."""
        if not self._is_default_gone(err, req, attempt):
            return err
        try:
            models = self.support_model()
        except LLMError:
            models = list(self.provider.models)
        from .live_models import explain_default_gone
        return explain_default_gone(err, req.model, models)

    async def _adefault_gone(self, err: LLMError, req: ChatRequest, attempt: Attempt) -> LLMError:
        if not self._is_default_gone(err, req, attempt):
            return err
        try:
            models = await self.asupport_model()
        except LLMError:
            models = list(self.provider.models)
        from .live_models import explain_default_gone
        return explain_default_gone(err, req.model, models)

    def _attempts(self) -> Attempts:
        fallbacks = self.fallbacks   # once: set_fallback() may replace the list meanwhile
        primary = (self.label, self._get_engine(), self._breaker if fallbacks else None)
        return Attempts([primary] + [(f.label, _AsFallback(f), None) for f in fallbacks])

    def _answered(self, result: ChatResult, attempt: Attempt) -> ChatResult:
        if result.provider is None:
            result.provider = attempt.label
        if attempt.fallback_reason is not None:
            result.fallback_reason = attempt.fallback_reason
        self.last_provider = result.provider
        self._remember(result.usage, result.reasoning, result.tool_calls)
        return result

    def _arrived(self, chunk: ChatChunk, attempt: Attempt) -> ChatChunk:
        if chunk.provider is None:
            chunk.provider = attempt.label
        if attempt.fallback_reason is not None:
            chunk.fallback_reason = attempt.fallback_reason
        self.last_provider = chunk.provider
        self._note_chunk(chunk)
        return chunk

    def _remember(self, usage: Optional[Usage], reasoning: str, tool_calls: Optional[List[Dict[str, Any]]] = None) -> None:
        self.last_usage = usage
        self.last_reasoning = reasoning
        self.last_tool_calls = list(tool_calls or [])

    def _note_chunk(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None:
            self.last_usage = chunk.usage
        if chunk.reasoning:
            self.last_reasoning += chunk.reasoning
        if chunk.tool_calls:
            join_tool_calls(self.last_tool_calls, chunk.tool_calls)

    def new_conversation(self) -> None:
        """Start over: the next inference('…') of a ``Client(xedu_url=…)`` has no history."""
        self.conversation = []

    def _with_history(self, input: Messages) -> Messages:
        """A question (a str) to a classroom server goes on from the conversation so far."""
        if self.xedu_url and isinstance(input, str):
            return [*self.conversation, {"role": "user", "content": input}]
        return input

    def _answered_turn(self, input: Messages, answer: str) -> None:
        if self.xedu_url and isinstance(input, str):
            self.conversation = [*self.conversation, {"role": "user", "content": input},
                                 {"role": "assistant", "content": answer}]

    def inference(self, input: Messages, temperature: Optional[float] = None,
                  top_p: Optional[float] = None, stream: bool = False, **kwargs: Any):
        """The answer as a str, or with ``stream=True`` an iterator of str pieces.

        Only the answer: a reasoning model's thinking is in ``last_reasoning``, never mixed in.
        With ``tools=[...]`` the tools the model wants called are in ``last_tool_calls``
        (the text is then often empty); ``chat()`` gives them on its result too.
        ``images=[path_or_url, …]`` asks about pictures (a model that sees, e.g. glm-4v-flash);
        a message list may carry OpenAI's ``image_url`` parts instead.
        With ``xedu_url`` a str question continues the conversation (see new_conversation()).
        """
        req = self.build_request(self._with_history(input), temperature, top_p, stream, **kwargs)  # bad input fails now
        if stream:
            return self._remembered(input, _texts(self.chat_stream(req)))
        text = self.chat(req).text
        self._answered_turn(input, text)
        return text

    def _remembered(self, input: Messages, pieces: Iterator[str]) -> Iterator[str]:
        seen: List[str] = []
        try:
            for piece in pieces:
                seen.append(piece)
                yield piece
        finally:
            pieces.close()
        self._answered_turn(input, "".join(seen))   # only once the answer is whole

    async def ainference(self, input: Messages, temperature: Optional[float] = None,
                         top_p: Optional[float] = None, stream: bool = False, **kwargs: Any):
        """Like inference(): ``await`` gives a str, or with ``stream=True`` an async iterator."""
        req = self.build_request(self._with_history(input), temperature, top_p, stream, **kwargs)
        if stream:
            return self._aremembered(input, _atexts(self.achat_stream(req)))
        text = (await self.achat(req)).text
        self._answered_turn(input, text)
        return text

    async def _aremembered(self, input: Messages, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        seen: List[str] = []
        try:
            async for piece in pieces:
                seen.append(piece)
                yield piece
        finally:
            await pieces.aclose()
        self._answered_turn(input, "".join(seen))

    # -- embeddings -----------------------------------------------------------------------
    def embed(self, texts: Union[str, Sequence[str]], model: Optional[str] = None) -> List[List[float]]:
        """One vector per text, in order (a single text gives a list of one). ``model``: an
        embedding model of this provider (default: its usual one, e.g. text-embedding-v4 at
        Qwen). Usage is in ``last_usage``; ``embeddings()`` gives it with the vectors."""
        return self.embeddings(texts, model).vectors

    async def aembed(self, texts: Union[str, Sequence[str]], model: Optional[str] = None) -> List[List[float]]:
        return (await self.aembeddings(texts, model)).vectors

    def embeddings(self, texts: Union[str, Sequence[str]], model: Optional[str] = None) -> EmbeddingResult:
        """Like ``embed()``, as a result: ``vectors``, ``usage``, ``model``. Fallbacks are never
        asked (vectors of two models cannot be compared); long lists go in several requests."""
        texts, chosen, size = self._embedding_plan(texts, model)
        engine = self._get_engine()
        return self._embedded([engine.embed(batch, chosen) for batch in _batches(texts, size)], chosen)

    async def aembeddings(self, texts: Union[str, Sequence[str]], model: Optional[str] = None) -> EmbeddingResult:
        texts, chosen, size = self._embedding_plan(texts, model)
        engine = self._get_engine()
        return self._embedded([await engine.aembed(batch, chosen) for batch in _batches(texts, size)], chosen)

    def embedding_models(self) -> List[str]:
        """This provider's embedding models, its default first; [] where it has none we know
        of (or the other side decides: a classroom server, the local model)."""
        from .embeddings import EMBEDDING_MODELS

        found = EMBEDDING_MODELS.get("classroom" if self.xedu_url else (self.provider.id if self.provider else None))
        if found is None:
            return []
        return list(dict.fromkeys(([found.default] if found.default else []) + list(found.models)))

    def _embedding_plan(self, texts: Any, model: Optional[str]) -> Any:
        from .embeddings import checked_texts, models_for

        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ConfigurationError("model 必须是非空字符串。/ model must be a non-empty string.")
        texts = checked_texts(texts)
        key = "classroom" if self.xedu_url else (self.provider.id if self.provider else None)
        label_zh = self.provider.label_zh if self.provider else "这个服务"
        label_en = self.provider.label_en if self.provider else "This service"
        found = models_for(key, label_zh, label_en)
        return texts, (model or found.default or self.model or "default"), found.batch

    def _embedded(self, results: List[Any], model: str) -> EmbeddingResult:
        counted = [r.usage for r in results if r.usage is not None]
        usage = Usage(sum(u.prompt_tokens for u in counted), 0, sum(u.total_tokens for u in counted)) if counted else None
        self._remember(usage, "")
        return EmbeddingResult(vectors=[vector for result in results for vector in result.vectors], usage=usage,
                               model=next((r.model for r in results if r.model), model))

    def support_model(self) -> List[str]:
        """Model ids: live from the provider where it lists them, else the catalog's."""
        models = self._get_engine().models() if self._lists_models_live() else []
        if not models and self.provider is not None:
            models = list(self.provider.models)
        return models

    async def asupport_model(self) -> List[str]:
        models = await self._get_engine().amodels() if self._lists_models_live() else []
        if not models and self.provider is not None:
            models = list(self.provider.models)
        return models

    def _lists_models_live(self) -> bool:
        return self.provider is None or self.provider.has_models_endpoint or self.provider.protocol == "local"

    def run(self, host: str = "0.0.0.0", port: int = 7860, **options: Any) -> None:
        """Serve the classroom web chat and OpenAI-compatible API until Ctrl-C."""
        from .server.runner import run_client_server

        if options.get("compare") and not options.get("compare_clients"):
            # Compare mode's columns: built like fallbacks, keys from the environment or key store.
            specs = [spec.strip() for spec in str(options["compare"]).split(",") if spec.strip()]
            options["compare_clients"] = tuple(_compare_client(spec, self.timeout, self.max_retries)
                                               for spec in specs)
        run_client_server(self, host=host, port=port, **options)


def _compare_client(spec: str, timeout: float, max_retries: int) -> Client:
    try:
        return _fallback_client(spec, timeout, max_retries)
    except ConfigurationError as err:
        # Several providers start at once: say which entry of --compare needs fixing.
        raise ConfigurationError(f"对比模型 {spec!r}（--compare）/ compare model {spec!r}: {err}") from None


def _named_fallback(spec: Any, timeout: float, max_retries: int) -> Client:
    if not isinstance(spec, str):
        raise ConfigurationError(f"备用服务商应是 Client 或 PROVIDER[:MODEL][@BASE_URL] 形式的文字，收到 "
                                 f"{type(spec).__name__}。/ A fallback is a Client or text of the form "
                                 f"PROVIDER[:MODEL][@BASE_URL], got {type(spec).__name__}.")
    try:
        return _fallback_client(spec, timeout, max_retries)
    except ConfigurationError as err:
        # The teacher may change several at once: say which one needs fixing.
        raise ConfigurationError(f"备用服务商 {spec!r} 无法使用 / fallback {spec!r} cannot be used: {err}") from None


def _classroom_credentials(access_code: Optional[str]):
    # A classroom server takes the class access code (or a student token) as its key;
    # never a provider key from the environment.
    from .keys import Credentials, clean_key

    code = clean_key(access_code)
    return Credentials(code, None, "argument" if code else "none")


def _batches(texts: List[str], size: int) -> List[List[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def _texts(chunks: Iterator[ChatChunk]) -> Iterator[str]:
    """Plain str pieces (text-to-speech and print() take them as they are); no thinking."""
    try:
        for chunk in chunks:
            if chunk.text:
                yield chunk.text
    finally:
        chunks.close()


async def _atexts(chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            if chunk.text:
                yield chunk.text
    finally:
        await chunks.aclose()


class _AsFallback:
    """A fallback Client seen as an engine: the request goes with that client's own model."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _own(self, req: ChatRequest) -> ChatRequest:
        return dataclasses.replace(req, model=self.client.model or req.model)

    def chat(self, req: ChatRequest) -> ChatResult:
        return self.client.chat(self._own(req))

    def stream(self, req: ChatRequest) -> Iterator[ChatChunk]:
        return self.client.chat_stream(self._own(req))

    async def achat(self, req: ChatRequest) -> ChatResult:
        return await self.client.achat(self._own(req))

    def astream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.client.achat_stream(self._own(req))


_options: Any = None


def _options_module() -> Any:
    """protocols/options.py, imported at its first use (``from xedullm import Client`` stays
    quick) and then kept: an import statement on every request costs more than its check."""
    global _options
    if _options is None:
        from .protocols import options
        _options = options
    return _options


def _fallback_client(spec: Union[Client, str], timeout: float, max_retries: int) -> Client:
    """A Client, or 'PROVIDER[:MODEL][@BASE_URL]' made into one (keys found as for provider=)."""
    if isinstance(spec, Client):
        return spec
    provider, model, base_url = parse_spec(spec)
    return Client(provider=provider, model=model, base_url=base_url, timeout=timeout,
                  max_retries=max_retries, verbose=False)
