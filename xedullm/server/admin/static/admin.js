// The teacher's admin page. Everything from the server is shown with textContent or as
// form values, never as HTML: names, session ids and conversations are students' input.

import { drawChart } from "./chart.js";
import { reviewRefresh, showStudent } from "./review.js";
import { showKeyBoxes } from "./keys.js";

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

// A name with the caller id beside it, so two students both called 张三 stay apart.
function whoView(who, name) {
  if (!name || name === who) return whoText(who);
  const span = document.createElement("span");
  span.className = "who";
  span.appendChild(document.createElement("strong")).textContent = name;
  span.appendChild(document.createElement("small")).textContent = ` ${whoText(who)}`;
  return span;
}

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

function showAlerts(alerts) {
  $("alerts").replaceChildren(...alerts.map((a) => {
    const p = document.createElement("p");
    p.className = `alert alert-${a.kind}`;
    p.dataset.kind = a.kind;
    p.textContent = a.message;
    if (a.key_box) {
      const link = document.createElement("a");
      link.href = a.key_box;
      link.className = "alert-key-link";
      link.textContent = " 去粘贴密钥 / Go to the key box";
      link.addEventListener("click", () => {
        const target = document.getElementById(a.key_box.slice(1));
        if (target) target.open = true;
      });
      p.appendChild(link);
    }
    return p;
  }));
}

let paused = false;

function showPaused(isPaused) {
  paused = isPaused;
  $("paused-banner").hidden = !isPaused;
  $("pause").textContent = isPaused ? "继续上课 / Resume class" : "暂停课堂 / Pause class";
  $("pause").classList.toggle("resume", isPaused);
  document.body.classList.toggle("is-paused", isPaused);
}

function reviewButton(r) {
  if (!r.who) return "";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "ghost small";
  button.textContent = "对话 / Conversations";
  button.addEventListener("click", () => showStudent(r.who));
  return button;
}

function render(data) {
  $("day").textContent = data.day;
  const s = data.settings;
  showAlerts(data.alerts || []);
  showPaused(Boolean(s.paused));
  if ($("class-url").textContent !== data.class_url) {
    $("class-url").textContent = data.class_url;
    $("qr").src = "/admin/api/qr.svg";
  }
  $("access-code-state").textContent = s.access_code_required ? "（已开启 / on）" : "（未开启 / off）";
  $("t-requests").textContent = String(data.totals.requests);
  $("t-tokens").textContent = String(data.totals.tokens);
  $("t-errors").textContent = String(data.totals.errors);
  $("t-flagged").textContent = String(data.flagged ? data.flagged.count : 0);
  $("t-budget").textContent = s.daily_budget ? `${data.totals.tokens} / ${s.daily_budget}` : "不限 / no limit";
  $("t-meter").style.width = s.daily_budget ? `${Math.min(100, (100 * data.totals.tokens) / s.daily_budget)}%` : "0";
  drawChart($("chart"), data.series);
  fillTable("students", data.students, (r) => [whoView(r.who, r.name), String(r.requests), String(r.tokens),
    String(r.errors), num(r.limit), s.review ? reviewButton(r) : ""]);
  fillTable("tokens", data.tokens, (t) => [t.name, String(t.used_today), num(t.daily_tokens), num(t.rpm),
    num(t.concurrent), t.models.join(", ") || "—", t.expires || "—",
    t.revoked ? "已停用 / revoked" : t.expired ? "已过期 / expired" : "有效 / active", tokenActions(t)]);
  // "flagged": a question refused for a blocked word; "ok": an answer with words masked.
  fillTable("flagged", data.flagged ? data.flagged.recent : [], (r) => [time(r.started), whoView(r.who, r.name),
    r.outcome === "flagged" ? "提问被拒绝 / question refused" : r.outcome === "ok" ? "回答已遮挡 / answer masked"
      : r.outcome === "content_filter" ? "服务商安全审核 / provider's safety check" : r.outcome]);
  fillTable("errors", data.errors, (r) => [time(r.started), whoView(r.who, r.name), String(r.status), r.outcome]);
  fillTable("recent", data.recent, (r) => [time(r.started), whoView(r.who, r.name), r.model || "—",
    num(r.total_tokens === null ? null : r.total_tokens), `${r.latency_ms} ms`, r.outcome,
    conversationView(r.conversation, r.id)]);
  if (!loaded) {
    // Fill the settings form once; later refreshes must not overwrite what the teacher types.
    loaded = true;
    fillSettings(s);
  }
  const list = $("model-list");
  list.replaceChildren(...s.models.map((m) => Object.assign(document.createElement("option"), { value: m })));
  reviewRefresh(api, s.review, data.students);
}

function fillSettings(s) {
  $("system").value = s.system_prompt || "";
  $("model").value = s.model || "";
  $("fallback").value = (s.fallback || []).join("\n");
  $("budget").value = s.daily_budget || "";
  $("per-student").value = s.per_student_daily || "";
  $("browser-ids").value = s.browser_ids_per_address || "";
  $("review").checked = Boolean(s.review);
  $("require-name").checked = Boolean(s.require_name);
  $("allow-pictures").checked = Boolean(s.allow_pictures);
  $("store-pictures").checked = Boolean(s.store_pictures);
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
// A number box's value is text; the settings want the number (an empty box: not set).
const numberOrNull = (v) => (v.trim() === "" ? null : Number(v));

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
    const changes = {
      system_prompt: $("system").value,
      model: $("model").value,
      // One spec a line (commas work too); an empty box turns fallbacks off.
      fallback: $("fallback").value.split(/[\n,]/).map((f) => f.trim()).filter(Boolean),
      daily_budget: numberOrNull($("budget").value),
      per_student_daily: numberOrNull($("per-student").value),
      browser_ids_per_address: numberOrNull($("browser-ids").value),
      review: $("review").checked,
      require_name: $("require-name").checked,
      allow_pictures: $("allow-pictures").checked,
      store_pictures: $("store-pictures").checked,
    };
    // The access code is never shown here: typing a new one replaces it, the box turns it off.
    if ($("no-access-code").checked) changes.access_code = null;
    else if ($("access-code").value.trim()) changes.access_code = $("access-code").value.trim();
    await api("/admin/api/settings", changes);
    $("access-code").value = "";
    $("no-access-code").checked = false;
    $("settings-status").textContent = "已保存，下一个请求起生效 / Saved; applies from the next request";
    await refresh();
  } catch (err) {
    $("settings-status").textContent = err.message;
  }
});

$("pause").addEventListener("click", async () => {
  try {
    await api("/admin/api/settings", { paused: !paused });
    await refresh();
  } catch (err) { notice(err.message); }
});

$("qr-large").addEventListener("click", () => {
  const on = $("join").classList.toggle("projector");
  $("qr-large").textContent = on ? "退出投影 / Close" : "投影显示 / Show on projector";
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && $("join").classList.contains("projector")) $("qr-large").click();
});

let sheetUrls = [];

$("batch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("batch-status").textContent = "";
  try {
    const made = await api("/admin/api/tokens/batch", {
      count: Number($("batch-count").value), prefix: $("batch-prefix").value.trim(),
    });
    for (const url of sheetUrls) URL.revokeObjectURL(url);
    sheetUrls = [
      URL.createObjectURL(new Blob([made.sheet_html], { type: "text/html;charset=utf-8" })),
      URL.createObjectURL(new Blob([made.sheet_csv], { type: "text/csv;charset=utf-8" })),
    ];
    $("batch-html").href = sheetUrls[0];
    $("batch-csv").href = sheetUrls[1];
    fillTable("batch-table", made.tokens, (t) => [t.name, t.token]);
    $("batch-result").hidden = false;
    $("batch-status").textContent = `已创建 ${made.tokens.length} 个令牌 / Created ${made.tokens.length} tokens`;
    await refresh();
  } catch (err) {
    $("batch-status").textContent = err.message;
  }
});

$("refresh").addEventListener("click", refresh);
$("logout").addEventListener("click", async () => {
  try { await api("/admin/logout", {}); } finally { location.reload(); }
});

refresh();
showKeyBoxes();
document.addEventListener("xedullm:key-saved", refresh);
setInterval(() => { if (!document.hidden) { refresh(); showKeyBoxes(); } }, 5000);
