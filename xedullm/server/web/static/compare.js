// Compare mode (xedullm serve --compare): one question, every model the teacher chose, the
// answers side by side. Each column is its own /v1/chat/completions stream with `model` set to
// the column's id, so the server's policy, budget and ledger count every column.
//
//   showCompare(info, headers, localize) -> when /api/info lists `compare` columns, adds a
//                                 "并排对比 / Compare" button that switches the page to the
//                                 side-by-side view (and back). `headers()` gives the page's
//                                 request headers (browser id, access code, name); `localize(node)`
//                                 labels rendered parts (code blocks' copy buttons) as the chat does.
//
// A comparison is one question at a time and is not kept in the conversation history.

import { copyText } from "./copy.js";
import { MarkdownView } from "./render.js";
import { readChatStream } from "./sse.js";

const TEXT = {
  open: "并排对比 / Compare",
  close: "返回对话 / Back to chat",
  heading: "同一个问题，问老师选的几个模型 / One question, the models your teacher chose",
  placeholder: "输入要比较的问题：Enter 发送 / Type a question to compare: Enter sends",
  ask: "一起问 / Ask all",
  waiting: "等待回答… / Waiting…",
  done: "完成 / Done",
  broken: "回答中断了，请重试。/ The answer was cut off; try again.",
  network: "连不上服务器，请检查网络后重试。/ Cannot reach the server; check the network and try again.",
};

function element(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children) node.append(child);
  return node;
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) return String(body.error.message);
  } catch { /* not JSON */ }
  return `服务器出错（${res.status}），请稍后重试。/ The server answered ${res.status}; try again later.`;
}

function columnView(column, parent) {
  const box = element("section", { className: "compare-column" });
  box.dataset.column = column.id;
  box.append(element("h3", {}, element("span", { className: "compare-label", textContent: column.label }),
    element("span", { className: "compare-model", textContent: column.model })));
  const body = element("div", { className: "compare-answer answer" });
  body.setAttribute("aria-live", "polite");
  const status = element("p", { className: "compare-status hint" });
  box.append(body, status);
  parent.append(box);
  return { column, body, status, view: null };
}

async function askColumn(slot, question, headers, localize, signal) {
  slot.body.replaceChildren();
  slot.body.classList.remove("compare-error");
  slot.view = new MarkdownView(slot.body, localize);
  slot.status.textContent = TEXT.waiting;
  const started = Date.now();
  let text = "";
  try {
    const res = await fetch("v1/chat/completions", {
      method: "POST", signal,
      headers: { ...headers(), "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ model: slot.column.id, stream: true, stream_options: { include_usage: true },
        messages: [{ role: "user", content: question }] }),
    });
    if (!res.ok) throw new Error(await errorText(res));
    await readChatStream(res, TEXT.broken, (delta) => {
      if (delta.content) {
        text += delta.content;
        slot.view.show(text);
      }
    });
    slot.status.textContent = `${TEXT.done} · ${((Date.now() - started) / 1000).toFixed(1)}s`;
  } catch (err) {
    if (err.name === "AbortError") return;
    slot.status.textContent = "";
    slot.body.classList.add("compare-error");
    slot.body.append(element("p", { textContent: err instanceof TypeError ? TEXT.network : err.message }));
  }
}

export function showCompare(info, headers, localize = () => {}) {
  const columns = (info && info.compare) || [];
  if (!columns.length || document.getElementById("compare")) return;
  document.head.append(element("link", { rel: "stylesheet", href: "static/compare.css" }));

  const input = element("textarea", { id: "compare-input", rows: 2, placeholder: TEXT.placeholder });
  input.setAttribute("aria-label", TEXT.placeholder);
  const ask = element("button", { type: "submit", className: "primary", id: "compare-ask", textContent: TEXT.ask });
  const form = element("form", { className: "compare-form", autocomplete: "off" }, input, ask);
  const grid = element("div", { className: "compare-columns" });
  const section = element("section", { id: "compare", className: "compare", hidden: true },
    element("h2", { className: "compare-heading", textContent: TEXT.heading }), form, grid);
  const slots = columns.map((column) => columnView(column, grid));
  document.querySelector("main").after(section);

  const toggle = element("button", { type: "button", id: "compare-toggle", className: "ghost", textContent: TEXT.open });
  document.querySelector(".top-buttons").prepend(toggle);
  toggle.addEventListener("click", () => {
    const on = document.body.classList.toggle("comparing");
    section.hidden = !on;
    toggle.textContent = on ? TEXT.close : TEXT.open;
    (on ? input : document.getElementById("input")).focus();
  });

  grid.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy-code");
    if (!button) return;
    const copied = await copyText(button.closest(".code-block").querySelector("code").textContent);
    button.classList.toggle("done", copied);
    clearTimeout(button.restore);
    button.restore = setTimeout(() => button.classList.remove("done"), 2000);
  });

  let controller = null;
  const submit = async () => {
    const question = input.value.trim();
    if (!question) return;
    if (controller) controller.abort();
    controller = new AbortController();
    ask.disabled = true;
    // All columns at once: each streams into its own place as its model answers.
    await Promise.all(slots.map((slot) => askColumn(slot, question, headers, localize, controller.signal)));
    ask.disabled = false;
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
}
