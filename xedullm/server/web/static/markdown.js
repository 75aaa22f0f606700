// A small Markdown renderer that builds DOM nodes directly.
// It never assigns HTML strings (no innerHTML), so raw HTML in model output stays
// text, and it creates no <img>, <script>, <iframe> or style: model output can neither
// run script nor make the browser fetch anything. Links are http(s) only.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:\s+(.*))?$/;
const TABLE_DELIM = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const PUNCT = /[!-/:-@[-`{-~]/;
const BARE_URL = /^https?:\/\/[^\s<>"'`\u007f-\uffff]+/i;
const URL_TRAIL = /[.,;:!?'")\]]+$/;

function el(tag, cls) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  return node;
}

// Only absolute http(s) URLs become links; everything else (javascript:, data:, relative)
// is shown as text.
export function safeHref(raw) {
  const text = String(raw || "").trim();
  if (!/^https?:\/\//i.test(text)) return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, parent) {
  const a = el("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  parent.appendChild(a);
  return a;
}

// ---- inline ------------------------------------------------------------------

// Finds the `]` closing the `[` at `open`, honouring nesting and backslash escapes.
function closingBracket(src, open) {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    const c = src[i];
    if (c === "\\") i++;
    else if (c === "[") depth++;
    else if (c === "]" && --depth === 0) return i;
  }
  return -1;
}

// Parses `(url "title")` at `pos`; returns {url, end} or null.
function linkTarget(src, pos) {
  if (src[pos] !== "(") return null;
  let i = pos + 1;
  while (src[i] === " ") i++;
  let url = "";
  if (src[i] === "<") {
    const close = src.indexOf(">", i);
    if (close < 0) return null;
    url = src.slice(i + 1, close);
    i = close + 1;
  } else {
    let depth = 0;
    const start = i;
    for (; i < src.length; i++) {
      const c = src[i];
      if (c === "\\") { i++; continue; }
      if (c === "(") depth++;
      else if (c === ")") { if (depth === 0) break; depth--; }
      else if (c === " " || c === "\n") break;
    }
    url = src.slice(start, i);
  }
  while (src[i] === " " || src[i] === "\n") i++;
  if (src[i] === '"' || src[i] === "'") {
    const close = src.indexOf(src[i], i + 1);
    if (close < 0) return null;
    i = close + 1;
    while (src[i] === " ") i++;
  }
  if (src[i] !== ")") return null;
  return { url, end: i + 1 };
}

// Emphasis runs: the opener must be followed, and the closer preceded, by a non-space.
// `_` also needs non-word neighbours outside, so snake_case names stay intact.
function closingDelim(src, pos, delim) {
  const after = src[pos + delim.length];
  if (!after || /\s/.test(after)) return -1;
  const isUnderscore = delim[0] === "_";
  if (isUnderscore && pos > 0 && /[\p{L}\p{N}]/u.test(src[pos - 1])) return -1;
  let from = pos + delim.length + 1;
  for (;;) {
    const i = src.indexOf(delim, from);
    if (i < 0) return -1;
    const before = src[i - 1];
    const next = src[i + delim.length];
    const single = delim.length === 1;
    const ok = !/\s/.test(before) && before !== "\\" &&
      !(single && (next === delim || before === delim)) &&
      !(isUnderscore && next && /[\p{L}\p{N}]/u.test(next));
    if (ok) return i;
    from = i + 1;
  }
}

const EMPHASIS = [
  ["**", "strong"], ["__", "strong"], ["~~", "del"], ["*", "em"], ["_", "em"],
];

export function renderInline(src, parent, inLink = false) {
  let text = "";
  const flush = () => {
    if (text) parent.appendChild(document.createTextNode(text));
    text = "";
  };
  let i = 0;
  outer: while (i < src.length) {
    const c = src[i];
    if (c === "\\" && PUNCT.test(src[i + 1] || "")) {
      text += src[i + 1];
      i += 2;
      continue;
    }
    if (c === "\n") {
      flush();
      parent.appendChild(el("br"));
      i++;
      continue;
    }
    if (c === "`") {
      let n = 1;
      while (src[i + n] === "`") n++;
      const fence = "`".repeat(n);
      let close = src.indexOf(fence, i + n);
      while (close >= 0 && src[close + n] === "`") {
        let j = close;
        while (src[j] === "`") j++;
        close = src.indexOf(fence, j);
      }
      if (close < 0) {
        text += fence;
        i += n;
        continue;
      }
      let code = src.slice(i + n, close).replace(/\n/g, " ");
      if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
      flush();
      parent.appendChild(el("code")).textContent = code;
      i = close + n;
      continue;
    }
    const image = c === "!" && src[i + 1] === "[";
    if ((c === "[" || image) && !inLink) {
      const open = image ? i + 1 : i;
      const close = closingBracket(src, open);
      const target = close > 0 ? linkTarget(src, close + 1) : null;
      if (target) {
        flush();
        const label = src.slice(open + 1, close);
        const href = safeHref(target.url);
        // Images are never loaded: they become a link the student may choose to open.
        const box = href ? link(href, parent) : parent;
        if (image) {
          box.appendChild(document.createTextNode("🖼 " + (label || href || target.url)));
        } else {
          renderInline(label, box, true);
        }
        i = target.end;
        continue;
      }
    }
    if (c === "<" && !inLink) {
      const m = /^<(https?:\/\/[^\s<>]+)>/i.exec(src.slice(i));
      const href = m && safeHref(m[1]);
      if (href) {
        flush();
        link(href, parent).textContent = m[1];
        i += m[0].length;
        continue;
      }
    }
    if ((c === "h" || c === "H") && !inLink && !/[\p{L}\p{N}]/u.test(src[i - 1] || "")) {
      const m = BARE_URL.exec(src.slice(i));
      if (m) {
        const url = m[0].replace(URL_TRAIL, "");
        const href = safeHref(url);
        if (href && url.length > 8) {
          flush();
          link(href, parent).textContent = url;
          i += url.length;
          continue;
        }
      }
    }
    for (const [delim, tag] of EMPHASIS) {
      if (src.startsWith(delim, i)) {
        const close = closingDelim(src, i, delim);
        if (close > 0) {
          flush();
          renderInline(src.slice(i + delim.length, close), parent.appendChild(el(tag)), inLink);
          i = close + delim.length;
          continue outer;
        }
        text += delim;
        i += delim.length;
        continue outer;
      }
    }
    text += c;
    i++;
  }
  flush();
}

// ---- blocks ------------------------------------------------------------------

function indentOf(line) {
  return line.length - line.trimStart().length;
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  const cells = [];
  let cell = "";
  let inCode = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\" && s[i + 1] === "|") { cell += "|"; i++; continue; }
    if (c === "`") inCode = !inCode;
    if (c === "|" && !inCode) { cells.push(cell.trim()); cell = ""; continue; }
    cell += c;
  }
  cells.push(cell.trim());
  return cells;
}

function startsBlock(line, next) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
    ITEM.test(line) || (line.includes("|") && next !== undefined && TABLE_DELIM.test(next) && next.includes("-"));
}

function renderTable(lines, i, out) {
  const head = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((d) =>
    d.startsWith(":") && d.endsWith(":") ? "center" : d.endsWith(":") ? "right" : "");
  const wrap = out.appendChild(el("div", "table-wrap"));
  const table = wrap.appendChild(el("table"));
  const row = (cells, tag, parent) => {
    const tr = parent.appendChild(el("tr"));
    head.forEach((_, k) => {
      const cell = tr.appendChild(el(tag, aligns[k] ? "align-" + aligns[k] : ""));
      renderInline(cells[k] || "", cell);
    });
  };
  row(head, "th", table.appendChild(el("thead")));
  const body = table.appendChild(el("tbody"));
  i += 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes("|")) {
    row(splitRow(lines[i]), "td", body);
    i++;
  }
  return i;
}

function renderList(lines, i, out) {
  const first = ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const baseIndent = first[1].length;
  const list = out.appendChild(el(ordered ? "ol" : "ul"));
  if (ordered && parseInt(first[2], 10) !== 1) list.start = parseInt(first[2], 10);
  let loose = false;
  const items = [];
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || m[1].length !== baseIndent || /\d/.test(m[2]) !== ordered) break;
    const contentIndent = m[1].length + m[2].length + 1;
    const body = [m[3] || ""];
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        // A blank line ends the item unless indented content or a sibling item follows.
        let j = i + 1;
        while (j < lines.length && !lines[j].trim()) j++;
        if (j < lines.length && indentOf(lines[j]) > baseIndent) {
          body.push(...lines.slice(i, j).map(() => ""));
          i = j;
          loose = true;
          continue;
        }
        const sibling = j < lines.length && ITEM.exec(lines[j]);
        if (sibling && sibling[1].length === baseIndent && /\d/.test(sibling[2]) === ordered) {
          loose = true;
          i = j;
        }
        break;
      }
      const indent = indentOf(line);
      if (indent > baseIndent) {
        body.push(line.slice(Math.min(indent, contentIndent)));
      } else if (!startsBlock(line, lines[i + 1]) && body[body.length - 1].trim()) {
        body.push(line.trim()); // lazy continuation of the item's paragraph
      } else {
        break;
      }
      i++;
    }
    items.push(body);
  }
  for (const body of items) {
    const li = list.appendChild(el("li"));
    renderBlocks(body, li);
    if (!loose) {
      for (const p of [...li.children]) {
        if (p.tagName === "P") p.replaceWith(...p.childNodes);
      }
    }
  }
  return i;
}

function renderBlocks(lines, out) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }

    let m = FENCE.exec(line);
    if (m) {
      const fence = m[1];
      const code = [];
      i++;
      while (i < lines.length) {
        const close = lines[i].trim();
        if (close.length >= fence.length && close === fence[0].repeat(close.length)) { i++; break; }
        code.push(lines[i]);
        i++;
      }
      const pre = out.appendChild(el("pre"));
      const codeEl = pre.appendChild(el("code"));
      if (m[2]) {
        codeEl.dataset.lang = m[2];
        pre.dataset.lang = m[2];
      }
      codeEl.textContent = code.join("\n");
      continue;
    }
    m = HEADING.exec(line);
    if (m) {
      // Answer headings sit below the page's own h1/h2 in the document outline.
      const h = out.appendChild(el("h" + Math.min(m[1].length + 2, 6)));
      renderInline(m[2] || "", h);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      out.appendChild(el("hr"));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && lines[i].trim()) {
        const q = QUOTE.exec(lines[i]);
        quoted.push(q ? q[1] : lines[i]);
        i++;
      }
      renderBlocks(quoted, out.appendChild(el("blockquote")));
      continue;
    }
    if (ITEM.test(line)) {
      i = renderList(lines, i, out);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_DELIM.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      i = renderTable(lines, i, out);
      continue;
    }
    const para = [line.trim()];
    i++;
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) {
      para.push(lines[i].trim());
      i++;
    }
    renderInline(para.join("\n"), out.appendChild(el("p")));
  }
}

// Renders Markdown `src` into a new DocumentFragment. An unfinished code fence (while an
// answer is still streaming in) simply runs to the end.
export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  renderBlocks(String(src).replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n"), frag);
  return frag;
}
