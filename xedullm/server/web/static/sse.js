// Server-sent events over fetch: EventSource cannot POST or be stopped mid-answer.

// Reads a server-sent-events byte stream, calling onData with each event's data.
// Lines may arrive split across reads, so the unfinished tail waits in `buffer`; as the
// SSE standard says, an event the stream ends in the middle of is dropped.
export async function readEvents(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  const line = (text) => {
    if (text === "") {
      if (data.length) onData(data.join("\n"));
      data = [];
    } else if (!text.startsWith(":")) {
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
    }
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // A trailing "\r" may be the first half of "\r\n": keep it for the next read.
      const parts = buffer.split(/\r\n|\r(?!$)|\n/);
      buffer = parts.pop();
      parts.forEach(line);
    }
    if (buffer.endsWith("\r")) line(buffer.slice(0, -1));
  } finally {
    reader.cancel().catch(() => {});
  }
}

// An OpenAI-format chat stream: calls onDelta({content, reasoning, answeredBy}) for every chunk
// (answeredBy is set only when a fallback provider answered); an error frame, or a stream that
// ends without [DONE], throws (``broken`` is the message when the server gave none).
export async function readChatStream(res, broken, onDelta) {
  let finished = false;
  await readEvents(res.body, (data) => {
    if (finished) return;
    if (data === "[DONE]") { finished = true; return; }
    let chunk;
    try { chunk = JSON.parse(data); } catch { return; }
    if (chunk.error) throw new Error(String(chunk.error.message || broken));
    const choice = chunk.choices && chunk.choices[0];
    const delta = (choice && choice.delta) || {};
    onDelta({ content: delta.content || "", reasoning: delta.reasoning_content || "", answeredBy: chunk.xedullm });
  });
  if (!finished) throw new Error(broken);
}
