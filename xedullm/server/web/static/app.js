// The student chat page. Conversations are kept in this browser, so closing the tab loses
// nothing; the server adds the teacher's system prompt and key.
import { copyText } from "./copy.js";
import { MarkdownView } from "./render.js";
import { readChatStream } from "./sse.js";
import * as saved from "./store.js";
import { readableTime, transcript, transcriptName } from "./transcript.js";
import { showNotices, studentHeaders } from "./classroom.js";
import { showCompare } from "./compare.js";
import { contentOf, pastedPicture, shrink } from "./picture.js";

const TEXT = {
  zh: {
    title: "XEduLLM 课堂对话", provider: "平台：", model: "模型：", system: "系统提示词",
    conversation: "对话", empty: "你好！有什么想问的？在下面输入你的问题吧。",
    inputLabel: "你的消息", placeholder: "输入你的问题：Enter 发送，Shift+Enter 换行",
    submit: "提交", stop: "停止", retry: "重试", undo: "撤回", clear: "清空",
    you: "我", ai: "AI", answering: "正在回答…", stillWaiting: "仍在等待回答…（已等 {s} 秒）",
    stopped: "（已停止）", interrupted: "（回答中断）",
    stoppedStatus: "已停止回答。", compatible: "OpenAI 兼容接口",
    codeTitle: "请输入访问码", codeHelp: "访问码由老师提供。", ok: "确定", cancel: "取消",
    switchTo: "English", toDark: "深色", toLight: "浅色",
    history: "对话记录", newChat: "新对话", export: "导出", untitled: "新对话（未开始）",
    thinking: "思考过程", copy: "复制", copyAnswer: "复制回答", copied: "已复制",
    copyFailed: "复制失败，请选中文字后按 Ctrl+C", mathError: "这个公式无法显示，这里是它的原文",
    clearTitle: "清空这段对话？", clearHelp: "清空后这段对话就找不回来了。", clearOk: "清空", keep: "保留",
    attach: "图片", detach: "去掉图片", attachedAlt: "要发送的图片", sentAlt: "我发的图片",
  },
  en: {
    title: "XEduLLM Classroom Chat", provider: "Provider: ", model: "Model: ", system: "System prompt",
    conversation: "Conversation", empty: "Hi! What would you like to ask? Type your question below.",
    inputLabel: "Your message", placeholder: "Type your question: Enter sends, Shift+Enter adds a new line",
    submit: "Submit", stop: "Stop", retry: "Retry", undo: "Undo", clear: "Clear",
    you: "You", ai: "AI", answering: "Answering…", stillWaiting: "Still waiting for the answer… ({s} s so far)",
    stopped: "(stopped)", interrupted: "(cut off)",
    stoppedStatus: "Answer stopped.", compatible: "OpenAI-compatible",
    codeTitle: "Enter the access code", codeHelp: "Your teacher gives you the access code.",
    ok: "OK", cancel: "Cancel", switchTo: "中文", toDark: "Dark", toLight: "Light",
    history: "Conversations", newChat: "New chat", export: "Export", untitled: "New chat (not started)",
    thinking: "Thinking", copy: "Copy", copyAnswer: "Copy answer", copied: "Copied",
    copyFailed: "Could not copy: select the text and press Ctrl+C", mathError: "This formula cannot be shown; here is its source",
    clearTitle: "Clear this conversation?", clearHelp: "A cleared conversation cannot be brought back.",
    clearOk: "Clear", keep: "Keep",
    attach: "Picture", detach: "Remove picture", attachedAlt: "The picture to send", sentAlt: "A picture I sent",
  },
};

// Messages made here are bilingual like the server's, whatever the page language.
const ERRORS = {
  network: "连不上老师的服务器，请检查网络后点“重试”，或告诉老师。 / Cannot reach the teacher's server: check the network and press Retry, or tell the teacher.",
  interrupted: "回答中途断开了，已收到的部分保留在上面，请点“重试”。 / The answer was cut off; what arrived is kept above. Press Retry.",
  firstByte: "等了 20 秒还没有收到回答，请点“重试”；一直这样请告诉老师。 / No answer after 20 seconds; press Retry, and tell your teacher if it keeps happening.",
  stalled: "回答停住了，已收到的部分保留在上面，请点“重试”；一直这样请告诉老师。 / The answer stopped coming; what arrived is kept above. Press Retry, and tell your teacher if it keeps happening.",
  info: "读取服务器信息失败，请刷新页面或告诉老师。 / Could not load the server info; reload the page or tell the teacher.",
  http: (status) => `服务器出错（HTTP ${status}），请稍后点“重试”或告诉老师。 / The server answered with an error (HTTP ${status}); press Retry later or tell the teacher.`,
  code: "需要访问码才能提问，请向老师要访问码。 / An access code is needed to ask; ask your teacher for it.",
  picture: "这个文件打不开，请换一张图片（png、jpg、webp）。 / This file cannot be opened as a picture; try another (png, jpg, webp).",
};

// How long the page waits before telling the student. The server retries a failing provider
// for minutes; a student should hear within seconds, and never lose what already arrived.
const WAIT = {
  hint: 4_000,       // "still waiting…" after this long without anything new
  firstByte: 20_000, // nothing at all from the server: give up
  overall: 90_000,   // past this, an answer that has gone quiet ...
  quiet: 10_000,     // ... for this long is given up; one still arriving never is
};

const $ = (id) => document.getElementById(id);
const ui = {
  log: $("log"), empty: $("empty"), input: $("input"), form: $("composer"),
  submit: $("submit"), stop: $("stop"), retry: $("retry"), undo: $("undo"), clear: $("clear"),
  status: $("status"), lang: $("lang"), theme: $("theme"), provider: $("provider"), model: $("model"),
  system: $("system"), systemText: $("system-text"),
  history: $("history"), newChat: $("new-chat"), export: $("export"),
  dialog: $("code-dialog"), codeForm: $("code-form"), codeInput: $("code-input"), codeCancel: $("code-cancel"), codeWhy: $("code-why"),
  clearDialog: $("clear-dialog"),
  attach: $("attach"), pictureInput: $("picture-input"), attached: $("attached"), attachedImg: $("attached-img"),
  detach: $("detach"),
};

const state = {
  lang: saved.prefs.get("lang") === "en" ? "en" : "zh",
  conversation: saved.conversationForThisTab(),
  info: null,
  job: null,   // the answer being streamed: {controller, view, discarded, gaveUp, clock}
  error: null, // the visible error bubble
  picture: null, // the shrunk picture (a data: URL) to go with the next question
};
saved.rememberForThisTab(state.conversation);

const t = (key) => TEXT[state.lang][key];
const messages = () => state.conversation.messages;

// The Markdown source of every answer on screen, for its copy button.
const answerSource = new WeakMap();

// ---- language and theme ----------------------------------------------------------------------

function localize(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  for (const node of root.querySelectorAll("[data-i18n-alt]")) node.alt = t(node.dataset.i18nAlt);
}

function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  localize(document);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  ui.lang.textContent = t("switchTo");
  ui.lang.lang = state.lang === "zh" ? "en" : "zh-CN";
  showInfo();
  showTheme();
  showHistory();
  updateControls();
}

ui.lang.addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  saved.prefs.set("lang", state.lang);
  applyLang();
});

// The page follows the system's light or dark setting; the button overrides it. A choice that
// matches the system is forgotten, so the page follows the system again from then on.
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

function isDark() {
  const chosen = document.documentElement.dataset.theme;
  return chosen ? chosen === "dark" : systemDark.matches;
}

function showTheme() {
  ui.theme.textContent = t(isDark() ? "toLight" : "toDark");
  ui.theme.setAttribute("aria-pressed", String(isDark()));
}

ui.theme.addEventListener("click", () => {
  const next = isDark() ? "light" : "dark";
  const follows = next === (systemDark.matches ? "dark" : "light");
  if (follows) delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = next;
  saved.prefs.set("theme", follows ? null : next);
  showTheme();
});
systemDark.addEventListener("change", showTheme);

// ---- server info -------------------------------------------------------------------------------

function showInfo() {
  const info = state.info;
  if (!info) return;
  const label = (state.lang === "en" && info.provider_label_en) || info.provider_label || info.provider;
  ui.provider.textContent = !label ? t("compatible")
    : info.provider && info.provider !== label ? `${label} (${info.provider})` : label;
  ui.model.textContent = info.model || "—";
}

async function loadInfo() {
  let info;
  let asked = false;
  for (;;) {
    try {
      const res = await fetch("api/info", { headers: headers() });
      if (!res.ok) throw new Error(String(res.status));
      info = await res.json();
    } catch {
      showError(ERRORS.info);
      return;
    }
    // A class with an access code says only that (and why) until a good code comes with it.
    if (!info.access_code_required || info.access_code_accepted !== false) break;
    if (accessCode()) saved.prefs.set("accessCode", null);   // stopped working: ask again
    asked = true;
    if (!(await askCode(info.message))) break;
  }
  // A server that checks the code only on each question (an embedding app's own policy).
  if (info.access_code_required && !accessCode() && !asked) await askCode();
  await saved.ensureBrowserId(headers());
  state.info = info;
  showInfo();
  if (state.info.system_prompt) {
    ui.systemText.textContent = state.info.system_prompt;
    ui.system.hidden = false;
  }
  // The teacher may turn pictures off (setting allow_pictures); the button goes with them.
  ui.attach.hidden = state.info.allow_pictures === false;
  showCompare(state.info, headers, localize);
  await showNotices(state.info, headers);
}

// ---- access code (classroom controls) and confirmation -------------------------------------

const accessCode = () => saved.prefs.get("accessCode");

// ``why``: the server's own words when a code was missing, wrong or revoked.
function askCode(why) {
  return new Promise((resolve) => {
    ui.codeInput.value = "";
    ui.codeWhy.textContent = why || "";
    ui.codeWhy.hidden = !why;
    const done = (code) => {
      ui.codeForm.removeEventListener("submit", onSubmit);
      ui.codeCancel.removeEventListener("click", onCancel);
      ui.dialog.removeEventListener("cancel", onCancel);
      if (ui.dialog.open) ui.dialog.close();
      if (code) saved.prefs.set("accessCode", code);
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

function confirmClear() {
  return new Promise((resolve) => {
    ui.clearDialog.returnValue = "";
    ui.clearDialog.addEventListener("close", () => resolve(ui.clearDialog.returnValue === "clear"), { once: true });
    ui.clearDialog.showModal();
  });
}

function headers() {
  const h = { ...studentHeaders() };
  const browser = saved.browserId();
  if (browser) h["X-XEduLLM-Session"] = browser;
  const code = accessCode();
  if (code) h.Authorization = `Bearer ${code}`;
  return h;
}

// ---- conversation history ------------------------------------------------------------------

function titleOf(conversation) {
  const first = conversation.messages.find((m) => m.role === "user");
  const text = first ? first.content.replace(/\s+/g, " ").trim() : "";
  return text.length > 24 ? `${text.slice(0, 24)}…` : text;
}

function showHistory() {
  const list = saved.listConversations();
  const current = state.conversation;
  if (!list.some((c) => c.id === current.id)) list.unshift(current);
  ui.history.replaceChildren(...list.map((c) => {
    const option = document.createElement("option");
    option.value = c.id;
    option.textContent = c.messages.length ? `${titleOf(c)} · ${readableTime(new Date(c.updated))}` : t("untitled");
    option.selected = c.id === current.id;
    return option;
  }));
}

function openConversation(conversation) {
  state.conversation = conversation;
  saved.rememberForThisTab(conversation);
  setStatus("");
  renderAll();
  showHistory();
}

function persist() {
  state.conversation.updated = Date.now();
  saved.saveConversation(state.conversation);
  showHistory();
}

ui.history.addEventListener("change", () => {
  const chosen = saved.loadConversation(ui.history.value);
  if (state.job || !chosen) showHistory(); // gone meanwhile (cleared in another tab): list again
  else openConversation(chosen);
});

ui.newChat.addEventListener("click", () => {
  if (state.job) return;
  openConversation(saved.newConversation());
  ui.input.focus();
});

ui.export.addEventListener("click", () => {
  const now = new Date();
  const file = new Blob([transcript(state.conversation, state.info, now)], { type: "text/markdown;charset=utf-8" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(file);
  link.download = transcriptName(now);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
});

// Another tab of this browser saved: show its conversations, and its changes to ours.
window.addEventListener("storage", (event) => {
  if (event.key !== saved.CONVERSATIONS_KEY && event.key !== null) return;
  if (!state.job) {
    const fresh = saved.loadConversation(state.conversation.id);
    if (fresh && fresh.updated !== state.conversation.updated) {
      state.conversation = fresh;
      renderAll();
    }
  }
  showHistory();
});

// ---- conversation view -------------------------------------------------------------------------

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

function labelled(node, key) {
  node.dataset.i18n = key;
  node.textContent = t(key);
  return node;
}

function messageView(role) {
  const article = element("article", `msg ${role}`, ui.log);
  labelled(element("div", "who", article), role === "user" ? "you" : "ai");
  const body = element("div", "bubble", article);
  const view = { article, body };
  if (role === "assistant") {
    view.answer = new MarkdownView(element("div", "answer", body), localize);
    view.tools = element("div", "tools", article);
    view.tools.hidden = true;
    const copy = labelled(element("button", "copy copy-answer", view.tools), "copyAnswer");
    copy.type = "button";
  }
  return view;
}

// The thinking shows open while it streams in, and folds once, when the answer begins; after
// that the student opens and closes it as they like.
function showThinking(view, reasoning, answering) {
  if (!reasoning) return;
  if (!view.thinking) {
    view.thinking = element("details", "thinking");
    labelled(element("summary", "", view.thinking), "thinking");
    view.thoughts = new MarkdownView(element("div", "thinking-text", view.thinking), localize);
    view.body.prepend(view.thinking);
    view.thinking.open = true;
  }
  if (answering && !view.folded) {
    view.folded = true;
    view.thinking.open = false;
  }
  view.thoughts.show(reasoning);
}

function fillView(view, message) {
  if (message.role === "user") {
    // Students' own words are shown verbatim, never interpreted.
    view.body.textContent = message.content;
    for (const url of message.images || []) {
      const img = element("img", "sent-picture", view.body);
      img.src = url;
      img.alt = t("sentAlt");
    }
    return;
  }
  showThinking(view, message.reasoning, true);
  view.answer.show(message.content);
  answerSource.set(view.article, message.content);
  view.tools.hidden = !message.content;
  const note = message.stopped ? "stopped" : message.interrupted ? "interrupted" : null;
  if (note) labelled(element("p", "note", view.body), note);
  if (message.answeredBy) element("p", "note answered-by", view.body).textContent = answeredByText(message.answeredBy);
}

// The server names a fallback provider that answered instead of the teacher's (issue 20).
function answeredByText(by) {
  const zh = by.provider_label || by.provider;
  return `由 ${zh} 回答 / answered by ${by.provider_label_en || zh}`;
}

function renderAll() {
  ui.log.replaceChildren(ui.empty);
  for (const message of messages()) fillView(messageView(message.role), message);
  state.error = null;
  updateControls();
  scrollToEnd(true);
}

function showError(message) {
  clearError();
  const article = element("article", "msg error", ui.log);
  article.setAttribute("role", "alert");
  element("div", "bubble", article).textContent = message;
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

function statusText() {
  const job = state.job;
  if (job) return job.waited ? t("stillWaiting").replace("{s}", job.waited) : t("answering");
  return ui.status.dataset.key ? t(ui.status.dataset.key) : "";
}

function updateControls() {
  const busy = Boolean(state.job);
  const empty = messages().length === 0;
  const hadFocus = document.activeElement === ui.stop;
  ui.submit.hidden = busy;
  ui.stop.hidden = !busy;
  if (hadFocus && !busy) ui.input.focus();
  ui.retry.disabled = busy || !messages().some((m) => m.role === "user");
  ui.undo.disabled = !busy && empty;
  ui.clear.disabled = !busy && empty && !state.error;
  ui.history.disabled = busy;
  ui.newChat.disabled = busy || empty;
  ui.export.disabled = busy || empty;
  ui.empty.hidden = !empty || busy || Boolean(state.error);
  ui.status.textContent = statusText();
}

function setStatus(key) {
  ui.status.dataset.key = key || "";
  updateControls();
}

// Copy buttons: on code blocks (the code) and under answers (the answer's Markdown source).
ui.log.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const text = button.classList.contains("copy-code")
    ? button.closest(".code-block").querySelector("code").textContent
    : answerSource.get(button.closest("article")) || "";
  const copied = await copyText(text);
  button.textContent = t(copied ? "copied" : "copyFailed");
  button.classList.toggle("done", copied);
  clearTimeout(button.restore);
  button.restore = setTimeout(() => {
    button.textContent = t(button.dataset.i18n);
    button.classList.remove("done");
  }, 2000);
});

// ---- talking to the server ---------------------------------------------------------------------

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

async function postChat(job) {
  const body = JSON.stringify({
    // A cut-off answer may be empty: the provider would refuse an empty assistant turn.
    messages: messages().filter((m) => m.role === "user" || m.content)
      .map((m) => ({ role: m.role, content: contentOf(m) })),
    stream: true,
    stream_options: { include_usage: true },
  });
  for (;;) {
    let res;
    try {
      res = await fetch("v1/chat/completions", {
        method: "POST", body, signal: job.controller.signal,
        headers: { ...headers(), "Content-Type": "application/json", Accept: "text/event-stream" },
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new Error(ERRORS.network);
    }
    if (res.status === 401 && state.info && state.info.access_code_required && await codeRefused(res)) {
      saved.prefs.set("accessCode", null);
      job.clock.pause(); // typing the code is not waiting for the server
      const code = await askCode();
      job.clock.restart();
      if (code) continue;
    }
    if (!res.ok) throw new Error(await errorMessage(res));
    return res;
  }
}

// Watches one answer's timing (see WAIT): shows how long the student has waited, and gives up
// on a server that stays silent.
function startClock(job) {
  let started = Date.now();
  let last = null; // when the last chunk came
  let paused = false;
  const timer = setInterval(() => {
    if (paused) return;
    const now = Date.now();
    const quiet = now - (last === null ? started : last);
    const waited = quiet >= WAIT.hint ? Math.floor(quiet / 1000) : 0;
    if (waited !== job.waited) {
      job.waited = waited;
      updateControls();
    }
    const gaveUp = last === null ? (now - started >= WAIT.firstByte && "firstByte")
      : (now - started >= WAIT.overall && quiet >= WAIT.quiet && "stalled");
    if (gaveUp) {
      job.gaveUp = gaveUp;
      job.controller.abort();
    }
  }, 250);
  return {
    tick() { last = Date.now(); },
    pause() { paused = true; },
    restart() { started = Date.now(); last = null; paused = false; },
    stop() { clearInterval(timer); },
  };
}

async function generate() {
  clearError();
  setStatus("");
  const view = messageView("assistant");
  view.body.setAttribute("aria-live", "polite");
  view.body.setAttribute("aria-busy", "true");
  const job = { controller: new AbortController(), view, discarded: false, gaveUp: null, waited: 0 };
  job.clock = startClock(job);
  state.job = job;
  updateControls();
  scrollToEnd(true);

  let content = "";
  let reasoning = "";
  let answeredBy = null;
  let frame = 0;
  // One repaint per animation frame however fast chunks come: the view only re-renders the
  // block still growing, so long answers stay smooth.
  const paint = () => {
    frame = 0;
    const stick = nearEnd();
    showThinking(view, reasoning, Boolean(content));
    view.answer.show(content);
    if (stick) scrollToEnd(true);
  };
  const finish = (message) => {
    job.clock.stop();
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    const stick = nearEnd();
    view.body.removeAttribute("aria-busy");
    view.body.removeAttribute("aria-live");
    if (message) {
      messages().push(message);
      fillView(view, message);
    } else {
      view.article.remove();
    }
    state.job = null;
    persist();
    updateControls();
    scrollToEnd(stick);
  };
  try {
    const res = await postChat(job);
    await readChatStream(res, ERRORS.interrupted, (delta) => {
      job.clock.tick();
      if (job.waited) {
        job.waited = 0;
        updateControls();
      }
      content += delta.content;
      reasoning += delta.reasoning;
      answeredBy = answeredBy || delta.answeredBy || null;
      if (!frame && (delta.content || delta.reasoning)) frame = requestAnimationFrame(paint);
    });
    finish({ role: "assistant", content, ...(reasoning && { reasoning }), ...(answeredBy && { answeredBy }) });
  } catch (err) {
    if (job.discarded) return;
    // Whatever arrived stays on screen and in the conversation; 重试 asks again.
    const partial = content || reasoning
      ? { role: "assistant", content, ...(reasoning && { reasoning }) } : null;
    if (err.name === "AbortError" && !job.gaveUp) {
      finish(partial && { ...partial, stopped: true });
      setStatus("stoppedStatus");
    } else {
      finish(partial && { ...partial, interrupted: true });
      showError(job.gaveUp ? ERRORS[job.gaveUp] : err.message || ERRORS.interrupted);
    }
  }
}

// Stops the answer in progress and forgets it (used by undo and clear).
function discardJob() {
  if (!state.job) return;
  state.job.discarded = true;
  state.job.clock.stop();
  state.job.controller.abort();
  state.job = null;
}

// ---- actions -----------------------------------------------------------------------------------

function submit() {
  const text = ui.input.value.trim();
  if (!text || state.job) return;
  clearError();
  const message = { role: "user", content: text, ...(state.picture && { images: [state.picture] }) };
  messages().push(message);
  persist();
  fillView(messageView("user"), message);
  ui.input.value = "";
  setPicture(null);
  generate();
}

// ---- a picture with the question -------------------------------------------------------------

function setPicture(url) {
  state.picture = url;
  ui.attached.hidden = !url;
  if (url) ui.attachedImg.src = url;
  else ui.attachedImg.removeAttribute("src");
}

async function attach(file) {
  if (!file) return;
  try {
    setPicture(await shrink(file));
  } catch {
    showError(ERRORS.picture);
  }
  ui.input.focus();
}

ui.attach.addEventListener("click", () => ui.pictureInput.click());
ui.pictureInput.addEventListener("change", () => {
  attach(ui.pictureInput.files[0]);
  ui.pictureInput.value = "";
});
ui.detach.addEventListener("click", () => setPicture(null));
ui.input.addEventListener("paste", (event) => {
  const file = pastedPicture(event);
  if (!file) return;
  event.preventDefault();
  attach(file);
});

function retry() {
  if (state.job) return;
  while (messages().length && messages()[messages().length - 1].role === "assistant") messages().pop();
  if (!messages().length) return;
  persist();
  renderAll();
  generate();
}

function undo() {
  discardJob();
  let last = messages().pop();
  if (last && last.role === "assistant") last = messages().pop();
  // The undone question goes back into an empty box so it can be edited and resent.
  if (last && last.role === "user" && !ui.input.value.trim()) {
    ui.input.value = last.content;
    setPicture((last.images && last.images[0]) || null);
  }
  persist();
  setStatus("");
  renderAll();
  ui.input.focus();
}

async function clearAll() {
  if (!(await confirmClear())) return;
  discardJob();
  saved.deleteConversation(state.conversation.id);
  openConversation(saved.newConversation());
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
