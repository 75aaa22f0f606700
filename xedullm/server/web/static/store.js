// What the page keeps in this browser (localStorage, shared by its tabs): one id for the
// browser, the student's settings, and the conversations, which survive closing the tab.
// Which conversation a tab shows is the tab's own (sessionStorage). With storage switched off
// (some private modes) the page still works, for this visit only.

const PREFIX = "xedullm.";
export const CONVERSATIONS_KEY = `${PREFIX}conversations`;
const MAX_CONVERSATIONS = 30;

function read(area, key) {
  try { return window[area].getItem(key); } catch { return null; }
}

function write(area, key, value) {
  try {
    if (value === null) window[area].removeItem(key);
    else window[area].setItem(key, value);
    return true;
  } catch {
    return false; // full or switched off
  }
}

/** Settings such as the language and the access code: `prefs.get("lang")`. */
export const prefs = {
  get: (name) => read("localStorage", PREFIX + name),
  set: (name, value) => write("localStorage", PREFIX + name, value),
};

function randomId() {
  // crypto.randomUUID needs a secure context; a LAN address over http is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The browser's id is issued by the server (signed there), so the teacher's per-student limits
// count this browser once, however many tabs it opens, and a made-up id counts for nothing.
const ISSUED = /^[0-9a-f]{32}\.[0-9a-f]{32}$/;

/** The id this browser holds ("" before the server issued one): sent with every request. */
export function browserId() {
  const stored = prefs.get("browser");
  return stored && ISSUED.test(stored) ? stored : "";
}

/** Asks the server for this browser's id (it answers the one held, while still valid). Without
 *  one (no classroom controls, or this computer had all its ids today) the page works the
 *  same: its questions then count as this computer's address. */
export async function ensureBrowserId(headers) {
  try {
    const res = await fetch("api/browser-id", { method: "POST", headers });
    const id = res.ok ? (await res.json()).browser_id : null;
    if (typeof id === "string" && ISSUED.test(id)) prefs.set("browser", id);
    else if (res.ok) prefs.set("browser", null);   // the server keeps no ids: send none
  } catch {
    // offline or refused: keep what is held
  }
}

// ---- conversations -------------------------------------------------------------------------

function cleanMessage(m) {
  if (!m || typeof m.content !== "string" || (m.role !== "user" && m.role !== "assistant")) return null;
  const message = { role: m.role, content: m.content };
  if (m.role === "assistant" && typeof m.reasoning === "string" && m.reasoning) message.reasoning = m.reasoning;
  // A question's pictures: shrunk data: URLs (picture.js), kept with it in this browser only.
  if (m.role === "user" && Array.isArray(m.images)) {
    const images = m.images.filter((u) => typeof u === "string" && u.startsWith("data:image/"));
    if (images.length) message.images = images;
  }
  if (m.stopped === true) message.stopped = true;
  if (m.interrupted === true) message.interrupted = true;
  return message;
}

function cleanConversation(c) {
  if (!c || typeof c.id !== "string" || !Array.isArray(c.messages)) return null;
  const messages = c.messages.map(cleanMessage).filter(Boolean);
  return messages.length ? { id: c.id, updated: Number(c.updated) || 0, messages } : null;
}

/** Every saved conversation, the most recent first. */
export function listConversations() {
  let saved;
  try { saved = JSON.parse(read("localStorage", CONVERSATIONS_KEY) || "[]"); } catch { saved = []; }
  if (!Array.isArray(saved)) return [];
  return saved.map(cleanConversation).filter(Boolean).sort((a, b) => b.updated - a.updated);
}

export function loadConversation(id) {
  return listConversations().find((c) => c.id === id) || null;
}

function writeAll(conversations) {
  // When storage is full the oldest conversations make room for the newest.
  let kept = conversations.slice(0, MAX_CONVERSATIONS);
  while (kept.length && !write("localStorage", CONVERSATIONS_KEY, JSON.stringify(kept))) kept = kept.slice(0, -1);
  if (!kept.length) write("localStorage", CONVERSATIONS_KEY, null);
}

/** Saves one conversation; an empty one is removed. Other tabs' conversations are untouched. */
export function saveConversation(conversation) {
  const others = listConversations().filter((c) => c.id !== conversation.id);
  const mine = cleanConversation(conversation);
  writeAll(mine ? [mine, ...others].sort((a, b) => b.updated - a.updated) : others);
}

export function deleteConversation(id) {
  writeAll(listConversations().filter((c) => c.id !== id));
}

export function newConversation() {
  return { id: randomId(), updated: Date.now(), messages: [] };
}

// Pages before conversation history kept one conversation per tab in sessionStorage: a tab
// open across the upgrade keeps it, now saved like any other.
function adoptTabConversation() {
  let messages;
  try { messages = JSON.parse(read("sessionStorage", `${PREFIX}messages`) || "null"); } catch { messages = null; }
  write("sessionStorage", `${PREFIX}messages`, null);
  const adopted = cleanConversation({ ...newConversation(), messages: Array.isArray(messages) ? messages : [] });
  if (adopted) saveConversation(adopted);
  return adopted;
}

/** The conversation this tab shows: the tab's own, else the latest, else a new one. */
export function conversationForThisTab() {
  const own = loadConversation(read("sessionStorage", `${PREFIX}current`));
  return own || adoptTabConversation() || listConversations()[0] || newConversation();
}

export function rememberForThisTab(conversation) {
  write("sessionStorage", `${PREFIX}current`, conversation.id);
}
