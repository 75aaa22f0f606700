// The student chat page. Each tab keeps its own conversation (memory + sessionStorage,
// which browsers keep per tab); the server adds the teacher's system prompt and key.
import { renderMarkdown } from "./markdown.js";
import { readEvents } from "./sse.js";
import { showNotices, studentHeaders } from "./classroom.js";

const TEXT = {
  zh: {
    title: "XEduLLM 课堂对话", provider: "平台：", model: "模型：", system: "系统提示词",
    conversation: "对话", empty: "你好！有什么想问的？在下面输入你的问题吧。",
    inputLabel: "你的消息", placeholder: "输入你的问题：Enter 发送，Shift+Enter 换行",
    submit: "提交", stop: "停止", retry: "重试", undo: "撤回", clear: "清空",
    you: "我", ai: "AI", answering: "正在回答…", stopped: "（已停止）",
    stoppedStatus: "已停止回答。", compatible: "OpenAI 兼容接口",
    codeTitle: "请输入访问码", codeHelp: "访问码由老师提供。", ok: "确定", cancel: "取消",
    switchTo: "English",
  },
  en: {
    title: "XEduLLM Classroom Chat", provider: "Provider: ", model: "Model: ", system: "System prompt",
    conversation: "Conversation", empty: "Hi! What would you like to ask? Type your question below.",
    inputLabel: "Your message", placeholder: "Type your question: Enter sends, Shift+Enter adds a new line",
    submit: "Submit", stop: "Stop", retry: "Retry", undo: "Undo", clear: "Clear",
    you: "You", ai: "AI", answering: "Answering…", stopped: "(stopped)",
    stoppedStatus: "Answer stopped.", compatible: "OpenAI-compatible",
    codeTitle: "Enter the access code", codeHelp: "Your teacher gives you the access code.",
    ok: "OK", cancel: "Cancel", switchTo: "中文",
  },
};

// Messages made here are bilingual like the server's, whatever the page language.
const ERRORS = {
  network: "连不上老师的服务器，请检查网络后点“重试”，或告诉老师。 / Cannot reach the teacher's server: check the network and press Retry, or tell the teacher.",
  interrupted: "回答中途断开了，请点“重试”。 / The answer was cut off; press Retry.",
  info: "读取服务器信息失败，请刷新页面或告诉老师。 / Could not load the server info; reload the page or tell the teacher.",
  http: (status) => `服务器出错（HTTP ${status}），请稍后点“重试”或告诉老师。 / The server answered with an error (HTTP ${status}); press Retry later or tell the teacher.`,
  code: "需要访问码才能提问，请向老师要访问码。 / An access code is needed to ask; ask your teacher for it.",
};

const $ = (id) => document.getElementById(id);
const ui = {
  log: $("log"), empty: $("empty"), input: $("input"), form: $("composer"),
  submit: $("submit"), stop: $("stop"), retry: $("retry"), undo: $("undo"), clear: $("clear"),
  status: $("status"), lang: $("lang"), provider: $("provider"), model: $("model"),
  system: $("system"), systemText: $("system-text"),
  dialog: $("code-dialog"), codeForm: $("code-form"), codeInput: $("code-input"), codeCancel: $("code-cancel"),
};

const store = {
  get(area, key) {
    try { return window[area].getItem(key); } catch { return null; }
  },
  set(area, key, value) {
    try {
      if (value === null) window[area].removeItem(key);
      else window[area].setItem(key, value);
    } catch { /* storage disabled: the page still works for this visit */ }
  },
};

function newSessionId() {
  // crypto.randomUUID needs a secure context; a LAN address over http is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const state = {
  lang: store.get("localStorage", "xedullm.lang") === "en" ? "en" : "zh",
  session: store.get("sessionStorage", "xedullm.session") || newSessionId(),
  messages: loadMessages(),
  info: null,
  job: null, // the answer being streamed: {controller, view, discarded}
  error: null, // the visible error bubble
};
store.set("sessionStorage", "xedullm.session", state.session);

function loadMessages() {
  try {
    const saved = JSON.parse(store.get("sessionStorage", "xedullm.messages") || "[]");
    return Array.isArray(saved) ? saved.filter((m) => m && typeof m.content === "string" &&
      (m.role === "user" || m.role === "assistant")) : [];
  } catch {
    return [];
  }
}

function saveMessages() {
  store.set("sessionStorage", "xedullm.messages", JSON.stringify(state.messages));
}

const t = (key) => TEXT[state.lang][key];

// ---- language ----------------------------------------------------------------

function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  ui.lang.textContent = t("switchTo");
  ui.lang.lang = state.lang === "zh" ? "en" : "zh-CN";
  showInfo();
  updateControls();
}

ui.lang.addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  store.set("localStorage", "xedullm.lang", state.lang);
  applyLang();
});

// ---- server info -------------------------------------------------------------

function showInfo() {
  const info = state.info;
  if (!info) return;
  const label = (state.lang === "en" && info.provider_label_en) || info.provider_label || info.provider;
  ui.provider.textContent = !label ? t("compatible")
    : info.provider && info.provider !== label ? `${label} (${info.provider})` : label;
  ui.model.textContent = info.model || "—";
}

async function loadInfo() {
  try {
    const res = await fetch("api/info", { headers: headers() });
    if (!res.ok) throw new Error(String(res.status));
    state.info = await res.json();
  } catch {
    showError(ERRORS.info);
    return;
  }
  showInfo();
  if (state.info.system_prompt) {
    ui.systemText.textContent = state.info.system_prompt;
    ui.system.hidden = false;
  }
  if (state.info.access_code_required && !accessCode()) await askCode();
  await showNotices(state.info);
}

// ---- access code (classroom controls) ----------------------------------------

const accessCode = () => store.get("localStorage", "xedullm.accessCode");

function askCode() {
  return new Promise((resolve) => {
    ui.codeInput.value = "";
    const done = (code) => {
      ui.codeForm.removeEventListener("submit", onSubmit);
      ui.codeCancel.removeEventListener("click", onCancel);
      ui.dialog.removeEventListener("cancel", onCancel);
      if (ui.dialog.open) ui.dialog.close();
      if (code) store.set("localStorage", "xedullm.accessCode", code);
      ui.input.focus();
      resolve(code);
    };
    const onSubmit = () => done(ui.codeInput.value.trim() || null);
    const onCancel = () => done(null);
    ui.codeForm.addEventListener("submit", onSubmit);
    ui.codeCancel.addEventListener("click", onCancel);
    ui.dialog.addEventListener("cancel", onCancel);
    ui.dialog.showModal();
  });
}

function headers() {
  const h = { "X-Xedullm-Session": state.session, ...studentHeaders() };
  const code = accessCode();
  if (code) h.Authorization = `Bearer ${code}`;
  return h;
}

// ---- conversation view -------------------------------------------------------

function messageView(role) {
  const article = document.createElement("article");
  article.className = `msg ${role}`;
  const who = article.appendChild(document.createElement("div"));
  who.className = "who";
  who.dataset.i18n = role === "user" ? "you" : "ai";
  who.textContent = t(who.dataset.i18n);
  const body = article.appendChild(document.createElement("div"));
  body.className = "bubble";
  ui.log.appendChild(article);
  return { article, body };
}

function fillView(view, message) {
  if (message.role === "user") {
    // Students' own words are shown verbatim, never interpreted.
    view.body.textContent = message.content;
  } else {
    view.body.replaceChildren(renderMarkdown(message.content));
  }
  if (message.stopped) {
    const note = view.body.appendChild(document.createElement("p"));
    note.className = "note";
    note.dataset.i18n = "stopped";
    note.textContent = t("stopped");
  }
}

function renderAll() {
  ui.log.replaceChildren(ui.empty);
  for (const message of state.messages) fillView(messageView(message.role), message);
  state.error = null;
  updateControls();
  scrollToEnd(true);
}

function showError(message) {
  clearError();
  const article = document.createElement("article");
  article.className = "msg error";
  article.setAttribute("role", "alert");
  const body = article.appendChild(document.createElement("div"));
  body.className = "bubble";
  body.textContent = message;
  ui.log.appendChild(article);
  state.error = article;
  updateControls();
  scrollToEnd(true);
}

function clearError() {
  if (state.error) state.error.remove();
  state.error = null;
}

function nearEnd() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80;
}

function scrollToEnd(force) {
  if (force || nearEnd()) ui.log.scrollTop = ui.log.scrollHeight;
}

function updateControls() {
  const busy = Boolean(state.job);
  const hadFocus = document.activeElement === ui.stop;
  ui.submit.hidden = busy;
  ui.stop.hidden = !busy;
  if (hadFocus && !busy) ui.input.focus();
  ui.retry.disabled = busy || !state.messages.some((m) => m.role === "user");
  ui.undo.disabled = !busy && state.messages.length === 0;
  ui.clear.disabled = !busy && state.messages.length === 0 && !state.error;
  ui.empty.hidden = state.messages.length > 0 || busy || Boolean(state.error);
  ui.status.textContent = busy ? t("answering") : ui.status.dataset.key ? t(ui.status.dataset.key) : "";
}

function setStatus(key) {
  ui.status.dataset.key = key || "";
  updateControls();
}

// ---- talking to the server ---------------------------------------------------

async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) return String(body.error.message);
  } catch { /* not JSON: fall through to the generic message */ }
  return res.status === 401 ? ERRORS.code : ERRORS.http(res.status);
}

// 401 is either our access code refused (ask again) or the teacher's key refused upstream
// (asking the student for a code would not help: show the message for the teacher).
async function codeRefused(res) {
  try {
    const body = await res.clone().json();
    return body.error.code === "invalid_access_code";
  } catch { return true; }
}

async function postChat(signal) {
  const body = JSON.stringify({
    messages: state.messages.map(({ role, content }) => ({ role, content })),
    stream: true,
    stream_options: { include_usage: true },
  });
  for (;;) {
    let res;
    try {
      res = await fetch("v1/chat/completions", {
        method: "POST", body, signal,
        headers: { ...headers(), "Content-Type": "application/json", Accept: "text/event-stream" },
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new Error(ERRORS.network);
    }
    if (res.status === 401 && state.info && state.info.access_code_required && await codeRefused(res)) {
      store.set("localStorage", "xedullm.accessCode", null);
      if (await askCode()) continue;
    }
    if (!res.ok) throw new Error(await errorMessage(res));
    return res;
  }
}

async function streamAnswer(res, onText) {
  let finished = false;
  await readEvents(res.body, (data) => {
    if (finished) return;
    if (data === "[DONE]") { finished = true; return; }
    let chunk;
    try { chunk = JSON.parse(data); } catch { return; }
    if (chunk.error) throw new Error(String(chunk.error.message || ERRORS.interrupted));
    const choice = chunk.choices && chunk.choices[0];
    const text = choice && choice.delta && choice.delta.content;
    if (text) onText(text);
  });
  if (!finished) throw new Error(ERRORS.interrupted);
}

async function generate() {
  clearError();
  setStatus("");
  const view = messageView("assistant");
  view.body.setAttribute("aria-live", "polite");
  view.body.setAttribute("aria-busy", "true");
  const job = { controller: new AbortController(), view, discarded: false };
  state.job = job;
  updateControls();
  scrollToEnd(true);

  let content = "";
  let frame = 0;
  const paint = () => {
    frame = 0;
    const stick = nearEnd();
    view.body.replaceChildren(renderMarkdown(content));
    if (stick) scrollToEnd(true);
  };
  try {
    const res = await postChat(job.controller.signal);
    await streamAnswer(res, (text) => {
      content += text;
      if (!frame) frame = requestAnimationFrame(paint);
    });
    finish({ role: "assistant", content });
  } catch (err) {
    if (job.discarded) return;
    if (err.name === "AbortError") {
      if (content) finish({ role: "assistant", content, stopped: true });
      else finish(null);
      setStatus("stoppedStatus");
    } else {
      finish(null);
      showError(err.message || ERRORS.interrupted);
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
  }

  function finish(message) {
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    view.body.removeAttribute("aria-busy");
    if (message) {
      state.messages.push(message);
      fillView(view, message);
    } else {
      view.article.remove();
    }
    state.job = null;
    saveMessages();
    updateControls();
  }
}

// Stops the answer in progress and forgets it (used by undo and clear).
function discardJob() {
  if (!state.job) return;
  state.job.discarded = true;
  state.job.controller.abort();
  state.job = null;
}

// ---- actions -----------------------------------------------------------------

function submit() {
  const text = ui.input.value.trim();
  if (!text || state.job) return;
  clearError();
  state.messages.push({ role: "user", content: text });
  saveMessages();
  fillView(messageView("user"), { role: "user", content: text });
  ui.input.value = "";
  generate();
}

function retry() {
  if (state.job) return;
  while (state.messages.length && state.messages[state.messages.length - 1].role === "assistant") {
    state.messages.pop();
  }
  if (!state.messages.length) return;
  saveMessages();
  renderAll();
  generate();
}

function undo() {
  discardJob();
  let last = state.messages.pop();
  if (last && last.role === "assistant") last = state.messages.pop();
  // The undone question goes back into an empty box so it can be edited and resent.
  if (last && last.role === "user" && !ui.input.value.trim()) ui.input.value = last.content;
  saveMessages();
  setStatus("");
  renderAll();
  ui.input.focus();
}

function clearAll() {
  discardJob();
  state.messages = [];
  saveMessages();
  setStatus("");
  renderAll();
  ui.input.focus();
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
ui.input.addEventListener("keydown", (event) => {
  // Enter while an input method is composing picks a candidate; it must not send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    submit();
  }
});
ui.stop.addEventListener("click", () => state.job && state.job.controller.abort());
ui.retry.addEventListener("click", retry);
ui.undo.addEventListener("click", undo);
ui.clear.addEventListener("click", clearAll);

applyLang();
renderAll();
loadInfo();
