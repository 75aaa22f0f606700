// The key box: one per provider, the seed's key guide beside it. A key typed here goes to
// the server once (POST /admin/api/key, checked live before it is saved) and the field is
// emptied at once; the page only ever shows keys masked, as the server sends them.

const $ = (id) => document.getElementById(id);
const POST_HEADERS = { "Content-Type": "application/json", "X-Xedullm-Admin": "1" };
const said = new Map();   // provider → the last message its box showed (kept across redraws)
let shown = "";           // the boxes' data as last drawn

const SOURCES = {
  store: "本机密钥存储 / this computer's key store",
  argument: "代码里传入 / passed in code",
  none: "还没有 / none yet",
};

function sourceText(source) {
  if (source && source.startsWith("env:")) return `环境变量 ${source.slice(4)} / environment variable ${source.slice(4)}`;
  return SOURCES[source] || source || "";
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function field(label, id) {
  const wrap = el("label", label);
  const input = document.createElement("input");
  input.type = "password";
  input.id = id;
  input.autocomplete = "off";
  input.spellcheck = false;
  input.required = true;
  wrap.appendChild(input);
  return wrap;
}

function inUse(info) {
  if (!info || !info.api_key) return el("p", "还没有保存密钥 / No key saved yet", "muted key-in-use");
  const since = info.since ? new Date(info.since * 1000).toLocaleString() : "";
  return el("p", `正在使用 / In use: ${info.api_key} · 来自 / from ${sourceText(info.source)}` +
    (since ? ` · 自 / since ${since}` : ""), "key-in-use");
}

function box(p, local, first) {
  const details = el("details");
  details.id = `key-${p.provider}`;
  details.className = "key-box";
  details.open = first;
  details.appendChild(el("summary", `${p.label_zh} / ${p.label_en}`));
  const use = inUse(p.in_use);
  details.appendChild(use);
  const guide = el("div", undefined, "key-guide");
  const link = el("a", p.key_url);
  link.href = p.key_url;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  const where = el("p", "控制台 / Console: ");
  where.appendChild(link);
  guide.append(where, el("p", p.key_steps_zh), el("p", p.key_steps_en, "muted"),
    el("p", `免费额度 / Free quota：${p.free_quota_zh} / ${p.free_quota_en}`, "muted"));
  details.appendChild(guide);
  const form = el("form");
  form.className = "key-form";
  form.appendChild(field("API Key", `key-input-${p.provider}`));
  if (p.needs_secret) form.appendChild(field("Secret Key", `secret-input-${p.provider}`));
  const button = el("button", "验证并保存 / Check and save");
  button.type = "submit";
  form.appendChild(button);
  const status = el("p", said.get(p.provider) || "", "status");
  status.id = `key-status-${p.provider}`;
  status.setAttribute("role", "status");
  form.appendChild(status);
  if (!local) {
    for (const input of form.querySelectorAll("input, button")) input.disabled = true;
    status.textContent = "只能在运行服务器的这台电脑上输入密钥。/ Keys can only be entered on the computer running the server.";
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $(`key-input-${p.provider}`);
    const secret = $(`secret-input-${p.provider}`);
    const body = { provider: p.provider, api_key: key.value };
    if (secret) body.secret_key = secret.value;
    key.value = "";            // the key leaves the page with this request, and only then
    if (secret) secret.value = "";
    button.disabled = true;
    status.textContent = "正在向服务商验证…… / Checking with the provider…";
    try {
      const res = await fetch("/admin/api/key", { method: "POST", headers: POST_HEADERS, body: JSON.stringify(body) });
      let data = null;
      try { data = await res.json(); } catch { /* not JSON */ }
      if (!res.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
      status.textContent = data.message;
      said.set(p.provider, data.message);
      use.replaceWith(inUse(data.in_use));
      document.dispatchEvent(new Event("xedullm:key-saved"));
    } catch (err) {
      status.textContent = err.message;
      said.set(p.provider, err.message);
    } finally {
      button.disabled = !local;
    }
  });
  details.appendChild(form);
  const leaked = el("div", undefined, "key-leaked");
  leaked.appendChild(el("h4", "密钥泄露了怎么办 / If the key leaked"));
  const steps = el("ol");
  p.leaked_zh.forEach((zh, i) => steps.appendChild(el("li", `${zh} / ${p.leaked_en[i]}`)));
  leaked.appendChild(steps);
  details.appendChild(leaked);
  return details;
}

export async function showKeyBoxes() {
  const res = await fetch("/admin/api/keys", { headers: { Accept: "application/json" } });
  if (!res.ok) return;
  const text = await res.text();
  if (text === shown) return;
  const data = JSON.parse(text);
  const open = document.activeElement && document.activeElement.closest && document.activeElement.closest(".key-box");
  if (open) return;   // the teacher is typing in a box: do not rebuild it under their hands
  shown = text;
  $("key-boxes").replaceChildren(...data.providers.map((p, i) => box(p, data.local, i === 0)));
  if (location.hash.startsWith("#key-")) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) target.open = true;
  }
}
