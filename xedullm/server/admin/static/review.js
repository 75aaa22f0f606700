// Classroom review on the admin page: today's kept conversations, one student's or everyone's,
// filtered by a search. Every text here is students' input or model output: textContent only.

const $ = (id) => document.getElementById(id);
const open = new Set(); // conversations the teacher opened stay open across refreshes
let apiCall = null;
let shownKey = "";
let searchTimer = null;

const time = (s) => new Date(s * 1000).toLocaleTimeString();

function fillStudents(students) {
  const select = $("review-who");
  const chosen = select.value;
  const options = [Object.assign(document.createElement("option"), { value: "", textContent: "全部 / Everyone" })];
  for (const s of students) {
    if (!s.who) continue;
    const label = s.name && s.name !== s.who ? `${s.name} · ${s.who}` : s.who;
    options.push(Object.assign(document.createElement("option"), { value: s.who, textContent: label }));
  }
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function conversationView(c) {
  const box = document.createElement("details");
  box.className = "conversation";
  box.dataset.who = c.who || "";
  box.open = open.has(c.id);
  box.addEventListener("toggle", () => { if (box.open) open.add(c.id); else open.delete(c.id); });
  const summary = box.appendChild(document.createElement("summary"));
  summary.appendChild(document.createElement("span")).textContent = `${time(c.started)} `;
  summary.appendChild(document.createElement("strong")).textContent = c.name || c.who || "—";
  if (c.name && c.name !== c.who) summary.appendChild(document.createElement("small")).textContent = ` ${c.who}`;
  summary.appendChild(document.createElement("span")).textContent = `：${c.question}`;
  for (const m of c.messages) {
    const p = box.appendChild(document.createElement("p"));
    p.appendChild(document.createElement("b")).textContent = `${m.role}: `;
    p.appendChild(document.createTextNode(String(m.content)));
  }
  const answer = box.appendChild(document.createElement("p"));
  answer.appendChild(document.createElement("b")).textContent = "assistant: ";
  answer.appendChild(document.createTextNode(c.answer));
  return box;
}

async function load() {
  const who = $("review-who").value;
  const q = $("review-q").value.trim();
  const params = new URLSearchParams();
  if (who) params.set("who", who);
  if (q) params.set("q", q);
  const data = await apiCall(`/admin/api/review?${params}`);
  $("review-list").replaceChildren(...data.conversations.map(conversationView));
  $("review-count").textContent = `${data.conversations.length} 段对话 / conversations`;
}

// Called on every refresh of the overview.
export function reviewRefresh(api, reviewOn, students) {
  apiCall = api;
  $("review-off").hidden = reviewOn;
  $("review-tools").hidden = !reviewOn;
  if (!reviewOn) {
    $("review-list").replaceChildren();
    $("review-count").textContent = "";
    return;
  }
  const key = JSON.stringify(students.map((s) => [s.who, s.name, s.requests]));
  if (key !== shownKey) fillStudents(students);
  shownKey = key;
  load().catch((err) => { $("review-count").textContent = err.message; });
}

export function showStudent(who) {
  $("review-who").value = who;
  $("review-section").scrollIntoView({ block: "start" });
  load().catch((err) => { $("review-count").textContent = err.message; });
}

$("review-who").addEventListener("change", () => load().catch(() => {}));
$("review-q").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => load().catch(() => {}), 300);
});
