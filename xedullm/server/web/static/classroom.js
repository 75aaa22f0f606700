// The classroom's side of the student page: the student's name, and what the teacher has
// turned on (review, pause). Kept apart from the chat code; the page uses two functions:
//
//   studentHeaders()  -> headers to add to every request (the name, percent-encoded UTF-8)
//   showNotices(info, headers) -> show the notices for /api/info's answer; asks for the name
//                        when the teacher requires one (resolves once it is given). Call it once
//                        after loading /api/info; it then keeps the notices current by itself,
//                        asking /api/info with ``headers()`` (the page's, access code included).

const NAME_KEY = "xedullm.name";
const NAME_MAX = 32;
const POLL_MS = 10000;

let bar = null;
let asking = null;
let polling = false;
let lastInfo = null;
let pageHeaders = () => ({});

function savedName() {
  try { return localStorage.getItem(NAME_KEY) || ""; } catch { return ""; }
}

function saveName(name) {
  try { localStorage.setItem(NAME_KEY, name); } catch { /* private mode: kept for this page only */ }
  memoryName = name;
}

let memoryName = savedName();

export function studentHeaders() {
  const name = memoryName || savedName();
  return name ? { "X-XEduLLM-Name": encodeURIComponent(name) } : {};
}

function element(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props || {});
  for (const child of children) node.append(child);
  return node;
}

function ensureBar() {
  if (bar) return bar;
  document.head.append(element("link", { rel: "stylesheet", href: "static/classroom.css" }));
  bar = element("div", { id: "classroom-notices", className: "classroom-notices" });
  bar.setAttribute("role", "status");
  const header = document.querySelector("header");
  if (header) header.after(bar); else document.body.prepend(bar);
  return bar;
}

function askName(required) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = element("input", { id: "name-input", maxLength: NAME_MAX, value: memoryName || "",
      autocomplete: "name", required: true });
    const ok = element("button", { type: "submit", className: "primary", textContent: "确定 / OK" });
    const cancel = element("button", { type: "button", textContent: "取消 / Cancel", hidden: required });
    const form = element("form", { method: "dialog" },
      element("h2", { textContent: "你的名字或座号 / Your name or seat number" }),
      element("p", { textContent: required
        ? "老师需要知道谁在提问：请填写名字或座号，只需填一次。/ Your teacher asks for your name or seat number (once)."
        : "填写后老师能看到是谁在提问。/ Your teacher will see your name beside your questions." }),
      input, element("div", { className: "buttons" }, ok, cancel));
    const dialog = element("dialog", { id: "name-dialog", className: "name-dialog" }, form);
    dialog.setAttribute("aria-labelledby", "name-title");
    form.querySelector("h2").id = "name-title";
    const finish = (name) => {
      if (name) saveName(name);
      dialog.close();
      dialog.remove();
      asking = null;
      render();
      resolve(name || null);
    };
    form.addEventListener("submit", (event) => {
      const name = input.value.replace(/\s+/g, " ").trim().slice(0, NAME_MAX);
      if (!name) { event.preventDefault(); input.focus(); return; }
      finish(name);
    });
    cancel.addEventListener("click", () => finish(null));
    // A required name cannot be dismissed with Esc.
    dialog.addEventListener("cancel", (event) => { if (required) event.preventDefault(); else finish(null); });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

function render() {
  const info = lastInfo || {};
  const notices = ensureBar();
  const items = [];
  if (info.paused) {
    items.push(element("p", { className: "notice-paused", textContent:
      "老师暂停了课堂，请先听老师讲；老师继续后再发送。/ Your teacher has paused the class; send again once it resumes." }));
  }
  if (info.review) {
    items.push(element("p", { className: "notice-review", textContent:
      "老师开启了课堂回顾：你的对话会被保存，老师可以看到。/ Review is on: your conversations are kept and your teacher can read them." }));
  }
  const name = memoryName;
  if (name || info.require_name) {
    const change = element("button", { type: "button", className: "link", textContent: name ? "修改 / Change" : "填写 / Enter" });
    change.addEventListener("click", () => askName(Boolean(info.require_name)));
    items.push(element("p", { className: "notice-name" },
      element("span", { textContent: name ? `名字 / Name: ${name} ` : "还没有填写名字 / No name yet " }), change));
  }
  notices.replaceChildren(...items);
  notices.hidden = items.length === 0;
}

async function poll() {
  try {
    const res = await fetch("api/info", { headers: { ...pageHeaders(), ...studentHeaders() } });
    if (res.ok) await showNotices(await res.json());
  } catch { /* offline for a moment: keep what is shown */ }
}

export async function showNotices(info, headers) {
  if (headers) pageHeaders = headers;
  lastInfo = info || {};
  render();
  if (!polling) {
    polling = true;
    setInterval(() => { if (!document.hidden) poll(); }, POLL_MS);
  }
  if (lastInfo.require_name && !memoryName) await askName(true);
}
