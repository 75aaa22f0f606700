// The teacher's admin page. Everything from the server is shown with textContent or as
// form values, never as HTML: names, session ids and conversations are students' input.

import { drawChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const POST_HEADERS = { "Content-Type": "application/json", "X-Xedullm-Admin": "1" };
let editing = null; // the token name being edited, or null when creating
let loaded = false;

async function api(path, body) {
  const res = await fetch(path, body === undefined ? { headers: { Accept: "application/json" } }
    : { method: "POST", headers: POST_HEADERS, body: JSON.stringify(body) });
  if (res.status === 401) {
    // The session ended (or the password changed): show the login page.
    location.reload();
    throw new Error("请重新登录 / Please log in again");
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
  return data;
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

const time = (s) => new Date(s * 1000).toLocaleTimeString();
const num = (v) => (v === null || v === undefined ? "—" : String(v));
const whoText = (who) => who || "（未识别 / unidentified）";

function cells(row, values) {
  for (const v of values) {
    const td = row.insertCell();
    if (v instanceof Node) td.appendChild(v); else td.textContent = v;
  }
  return row;
}

function fillTable(id, rows, toCells) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const r of rows) cells(body.insertRow(), toCells(r));
  if (!rows.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.className = "muted";
    td.textContent = "暂无 / None yet";
  }
}

const openConversations = new Set(); // rows the teacher opened stay open across refreshes

function conversationView(conv, id) {
  if (!conv) return "";
  const box = document.createElement("details");
  box.open = openConversations.has(id);
  box.addEventListener("toggle", () => {
    if (box.open) openConversations.add(id); else openConversations.delete(id);
  });
  const summary = box.appendChild(document.createElement("summary"));
  summary.textContent = "查看 / View";
  for (const m of conv.messages || []) {
    const p = box.appendChild(document.createElement("p"));
    const role = p.appendChild(document.createElement("b"));
    role.textContent = `${m.role}: `;
    p.appendChild(document.createTextNode(String(m.content)));
  }
  const answer = box.appendChild(document.createElement("p"));
  const role = answer.appendChild(document.createElement("b"));
  role.textContent = "assistant: ";
  answer.appendChild(document.createTextNode(String(conv.answer || "")));
  return box;
}

function tokenActions(t) {
  const span = document.createElement("span");
  if (t.revoked) return span;
  const edit = span.appendChild(document.createElement("button"));
  edit.type = "button";
  edit.className = "ghost small";
  edit.textContent = "修改 / Edit";
  edit.addEventListener("click", () => startEdit(t));
  const revoke = span.appendChild(document.createElement("button"));
  revoke.type = "button";
  revoke.className = "danger small";
  revoke.textContent = "停用 / Revoke";
  revoke.dataset.name = t.name;
  revoke.addEventListener("click", async () => {
    if (!confirm(`停用令牌“${t.name}”？它会立刻失效。/ Revoke '${t.name}'? It stops working at once.`)) return;
    try {
      await api("/admin/api/tokens/revoke", { name: t.name });
      await refresh();
    } catch (err) { notice(err.message); }
  });
  return span;
}

function render(data) {
  $("day").textContent = data.day;
  const s = data.settings;
  $("t-requests").textContent = String(data.totals.requests);
  $("t-tokens").textContent = String(data.totals.tokens);
  $("t-errors").textContent = String(data.totals.errors);
  $("t-budget").textContent = s.daily_budget ? `${data.totals.tokens} / ${s.daily_budget}` : "不限 / no limit";
  $("t-meter").style.width = s.daily_budget ? `${Math.min(100, (100 * data.totals.tokens) / s.daily_budget)}%` : "0";
  drawChart($("chart"), data.series);
  fillTable("students", data.students, (r) => [whoText(r.who), String(r.requests), String(r.tokens),
    String(r.errors), num(r.limit)]);
  fillTable("tokens", data.tokens, (t) => [t.name, String(t.used_today), num(t.daily_tokens), num(t.rpm),
    num(t.concurrent), t.models.join(", ") || "—", t.expires || "—",
    t.revoked ? "已停用 / revoked" : t.expired ? "已过期 / expired" : "有效 / active", tokenActions(t)]);
  fillTable("errors", data.errors, (r) => [time(r.started), whoText(r.who), String(r.status), r.outcome]);
  fillTable("recent", data.recent, (r) => [time(r.started), whoText(r.who), r.model || "—",
    num(r.total_tokens === null ? null : r.total_tokens), `${r.latency_ms} ms`, r.outcome,
    conversationView(r.conversation, r.id)]);
  if (!loaded) {
    // Fill the settings form once; later refreshes must not overwrite what the teacher types.
    loaded = true;
    fillSettings(s);
  }
  const list = $("model-list");
  list.replaceChildren(...s.models.map((m) => Object.assign(document.createElement("option"), { value: m })));
}

function fillSettings(s) {
  $("system").value = s.system_prompt || "";
  $("model").value = s.model || "";
  $("budget").value = s.daily_budget || "";
  $("per-student").value = s.per_student_daily || "";
  $("review").checked = Boolean(s.review);
}

async function refresh() {
  try {
    render(await api("/admin/api/overview"));
    notice("");
  } catch (err) {
    notice(err.message);
  }
}

const orNull = (v) => (v === "" ? null : v);

function tokenFields() {
  return {
    name: $("tk-name").value.trim(),
    daily_tokens: orNull($("tk-daily").value),
    rpm: orNull($("tk-rpm").value),
    concurrent: orNull($("tk-concurrent").value),
    models: $("tk-models").value.split(",").map((m) => m.trim()).filter(Boolean),
    expires: orNull($("tk-expires").value),
  };
}

function startEdit(t) {
  editing = t.name;
  $("tk-name").value = t.name;
  $("tk-name").readOnly = true;
  $("tk-daily").value = t.daily_tokens || "";
  $("tk-rpm").value = t.rpm || "";
  $("tk-concurrent").value = t.concurrent || "";
  $("tk-models").value = t.models.join(", ");
  $("tk-expires").value = t.expires || "";
  $("tk-submit").textContent = "保存修改 / Save changes";
  $("tk-cancel").hidden = false;
  $("new-token").hidden = true;
  $("tk-name").scrollIntoView({ block: "center" });
}

function endEdit() {
  editing = null;
  $("token-form").reset();
  $("tk-name").readOnly = false;
  $("tk-submit").textContent = "创建 / Create";
  $("tk-cancel").hidden = true;
}

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("token-status").textContent = "";
  try {
    if (editing) {
      await api("/admin/api/tokens/update", tokenFields());
      $("token-status").textContent = "已保存 / Saved";
      endEdit();
    } else {
      const made = await api("/admin/api/tokens", tokenFields());
      $("new-token-value").textContent = made.token;
      $("new-token").hidden = false;
      $("token-form").reset();
    }
    await refresh();
  } catch (err) {
    $("token-status").textContent = err.message;
  }
});
$("tk-cancel").addEventListener("click", endEdit);

$("settings").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("settings-status").textContent = "";
  try {
    await api("/admin/api/settings", {
      system_prompt: $("system").value,
      model: $("model").value,
      daily_budget: orNull($("budget").value),
      per_student_daily: orNull($("per-student").value),
      review: $("review").checked,
    });
    $("settings-status").textContent = "已保存，下一个请求起生效 / Saved; applies from the next request";
    await refresh();
  } catch (err) {
    $("settings-status").textContent = err.message;
  }
});

$("refresh").addEventListener("click", refresh);
$("logout").addEventListener("click", async () => {
  try { await api("/admin/logout", {}); } finally { location.reload(); }
});

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 5000);
