// Model answers as students need them: Markdown (markdown-it), math (KaTeX) and code
// (highlight.js), all served by the teacher's server. Raw HTML is off and only http(s) links
// survive, so an answer can show anything but can run or load nothing.
import markdownit from "./vendor/markdown-it.min.js";
import hljs from "./vendor/highlight.min.js";

const md = markdownit({ html: false, linkify: true, breaks: true, typographer: false });

// Only web links: no javascript:, data:, file: or links into the teacher's server.
md.validateLink = (url) => /^https?:\/\//i.test(url);

const escapeHtml = md.utils.escapeHtml;

// ---- math ----------------------------------------------------------------------------------
// Formulas are cut out of the text before Markdown sees them, so `*`, `_` and backslashes
// inside them stay exactly as the model wrote them.

const DELIMITERS = [
  { open: "\\(", close: "\\)", display: false },
  { open: "\\[", close: "\\]", display: true },
  { open: "$$", close: "$$", display: true },
  { open: "$", close: "$", display: false },
];

const isSpace = (ch) => ch === undefined || /\s/.test(ch);
const isDigit = (ch) => ch !== undefined && ch >= "0" && ch <= "9";

// Where `close` ends the formula starting at `from`, or -1. A backslash always takes the next
// character with it, so `\\` and `\$` never end a formula.
function findClose(src, from, max, delim) {
  for (let i = from; i < max; i++) {
    if (src.startsWith(delim.close, i)) {
      // A lone `$` is money, not math, unless it hugs its formula: "$5 and $6" stays text.
      if (delim.open !== "$" || (!isSpace(src[i - 1]) && !isDigit(src[i + 1]))) return i;
    } else if (src[i] === "\\") {
      i++;
    }
  }
  return -1;
}

function mathInline(state, silent) {
  const { src, pos, posMax } = state;
  const delim = DELIMITERS.find((d) => src.startsWith(d.open, pos));
  if (!delim) return false;
  const start = pos + delim.open.length;
  if (delim.open === "$" && isSpace(src[start])) return false;
  const end = findClose(src, start, posMax, delim);
  if (end < 0 || !src.slice(start, end).trim()) return false;
  if (!silent) {
    const token = state.push("math", "", 0);
    token.content = src.slice(start, end);
    token.markup = delim.open;
    token.info = delim.close;
    token.meta = { display: delim.display };
  }
  state.pos = end + delim.close.length;
  return true;
}

// `$$` or `\[` opening a line, up to the line that ends with `$$` or `\]`. Until that line
// arrives (mid-stream) the text stays a paragraph and shows as typed.
function mathBlock(state, startLine, endLine, silent) {
  if (state.sCount[startLine] - state.blkIndent >= 4) return false;
  const start = state.bMarks[startLine] + state.tShift[startLine];
  const delim = DELIMITERS.find((d) => d.display && state.src.startsWith(d.open, start));
  if (!delim) return false;
  const first = state.src.slice(start + delim.open.length, state.eMarks[startLine]);
  const firstTrimmed = first.trimEnd();
  let content;
  let last = startLine;
  if (firstTrimmed.endsWith(delim.close)) {
    content = firstTrimmed.slice(0, -delim.close.length);
    // "$$a$$ and $$b$$" is a paragraph with two formulas in it, not one block.
    if (content.includes(delim.close) || !content.trim()) return false;
  } else {
    if (first.includes(delim.close)) return false;
    for (last = startLine + 1; ; last++) {
      if (last >= endLine) return false;
      const from = state.bMarks[last] + state.tShift[last];
      const to = state.eMarks[last];
      // A blank line ends it: LaTeX allows none inside a formula, and a stray `$$` must not
      // swallow the paragraphs after it.
      if (from >= to || state.sCount[last] < state.blkIndent) return false;
      if (state.src.slice(from, to).trimEnd().endsWith(delim.close)) break;
    }
    const lastLine = state.src.slice(state.bMarks[last] + state.tShift[last], state.eMarks[last]).trimEnd();
    content = [first, state.getLines(startLine + 1, last, state.blkIndent, false),
      lastLine.slice(0, -delim.close.length)].join("\n");
  }
  if (silent) return true;
  state.line = last + 1;
  const token = state.push("math_block", "", 0);
  token.block = true;
  token.content = content;
  token.markup = delim.open;
  token.info = delim.close;
  token.map = [startLine, state.line];
  return true;
}

md.inline.ruler.before("escape", "math", mathInline);
md.block.ruler.before("fence", "math_block", mathBlock, { alt: ["paragraph", "reference", "blockquote", "list"] });

const KATEX_OPTIONS = {
  throwOnError: true, // a formula KaTeX cannot read shows its source instead (below)
  strict: "ignore",   // Chinese inside formulas is normal in class, not worth a warning
  trust: false,       // no \href, \url, \includegraphics, \htmlClass …
  maxSize: 20,
  maxExpand: 500,
  output: "htmlAndMathml", // MathML for screen readers, and for copy-tex to copy the source
};

function typeset(token, display) {
  const source = token.markup + token.content + token.info;
  const katex = globalThis.katex;
  if (katex) {
    try {
      return katex.renderToString(token.content, { ...KATEX_OPTIONS, displayMode: display });
    } catch { /* not valid LaTeX: show what the model wrote */ }
  }
  const tag = display && token.block ? "pre" : "code";
  return `<${tag} class="math-error" data-i18n-title="mathError">${escapeHtml(source)}</${tag}>`;
}

md.renderer.rules.math = (tokens, idx) => typeset(tokens[idx], tokens[idx].meta.display);
md.renderer.rules.math_block = (tokens, idx) => `<div class="math-display">${typeset(tokens[idx], true)}</div>\n`;

// ---- code ----------------------------------------------------------------------------------

md.renderer.rules.fence = (tokens, idx) => {
  const token = tokens[idx];
  const lang = token.info.trim().split(/\s+/)[0].toLowerCase();
  const code = token.content.replace(/\n$/, "");
  const known = lang && hljs.getLanguage(lang);
  const body = known ? hljs.highlight(code, { language: lang, ignoreIllegals: true }).value : escapeHtml(code);
  const label = lang ? `<span class="code-lang">${escapeHtml(lang)}</span>` : "<span></span>";
  return `<div class="code-block"><div class="code-head">${label}` +
    `<button type="button" class="copy copy-code" data-i18n="copy"></button></div>` +
    `<pre><code class="hljs${known ? ` language-${escapeHtml(lang)}` : ""}">${body}</code></pre></div>\n`;
};

// ---- structure -----------------------------------------------------------------------------

md.renderer.rules.table_open = () => '<div class="table-wrap"><table>\n';
md.renderer.rules.table_close = () => "</table></div>\n";

// Pictures are never loaded (they could come from anywhere): a link to them instead.
md.renderer.rules.image = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  const alt = self.renderInlineAsText(token.children, options, env);
  return `<a href="${escapeHtml(token.attrGet("src"))}" target="_blank" rel="noopener noreferrer">🖼 ${escapeHtml(alt)}</a>`;
};

const ALIGN = { "text-align:left": "align-left", "text-align:center": "align-center", "text-align:right": "align-right" };

function digits(n) {
  return String(Math.max(1, n)).length;
}

// Page-specific touches markdown-it leaves to us, applied to the token stream.
md.core.ruler.push("classroom_page", (state) => {
  const tokens = state.tokens;
  tokens.forEach((token, i) => {
    if (token.type === "heading_open" || token.type === "heading_close") {
      // The page's own title is h1 and its sections h2: answers start below them.
      token.tag = `h${Math.min(6, Number(token.tag.slice(1)) + 2)}`;
    } else if (token.type === "th_open" || token.type === "td_open") {
      // Alignment as a class: the page allows no inline style outside formulas.
      const style = token.attrGet("style");
      if (style) {
        token.attrs = token.attrs.filter(([name]) => name !== "style");
        if (ALIGN[style]) token.attrJoin("class", ALIGN[style]);
      }
    } else if (token.type === "ordered_list_open") {
      // A list numbered past 99 needs a wider margin, or its numbers leave the bubble.
      let items = 0;
      for (let j = i + 1; j < tokens.length && tokens[j].level > token.level; j++) {
        if (tokens[j].type === "list_item_open" && tokens[j].level === token.level + 1) items++;
      }
      const width = digits(Number(token.attrGet("start") || 1) + items - 1);
      if (width > 2) token.attrJoin("class", `digits-${Math.min(width, 6)}`);
    } else if (token.type === "inline") {
      for (const child of token.children || []) {
        if (child.type === "link_open") {
          child.attrSet("target", "_blank");
          child.attrSet("rel", "noopener noreferrer");
        }
      }
    }
  });
});

// ---- rendering -----------------------------------------------------------------------------

/** The whole answer as HTML (for tests and one-off use). */
export function renderHTML(src) {
  return md.render(src);
}

// The answer as top-level blocks, each with where it starts and the source it came from (its
// key: the same source renders the same).
function blocks(src, offset) {
  const tokens = md.parse(src, {});
  const lineStarts = [0];
  for (let i = src.indexOf("\n"); i >= 0; i = src.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  const at = (line) => (line < lineStarts.length ? lineStarts[line] : src.length);
  const out = [];
  for (let i = 0; i < tokens.length; i++) {
    let j = i;
    if (tokens[i].nesting === 1) {
      while (j + 1 < tokens.length && !(tokens[j].level === tokens[i].level && tokens[j].nesting === -1)) j++;
    }
    const map = tokens[i].map;
    out.push({
      tokens: tokens.slice(i, j + 1),
      key: map ? src.slice(at(map[0]), at(map[1])) : null,
      start: map ? offset + at(map[0]) : null,
    });
    i = j;
  }
  return out;
}

// A link reference definition ("[1]: https://…") changes links above it: such an answer is
// rendered whole every time (models rarely write them).
const REFERENCE = /^ {0,3}\[[^\]]+\]:/m;

const LIST_ITEM = /^(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)/;

// Whether nothing appended to `src` can change how the text before `start` reads: a blank line
// comes first, and the block's first line is complete, not indented and opens no list item (one
// could join a list above). Code fences and formulas cannot be open then: an open one would
// have swallowed this block.
function settled(src, start) {
  if (!start || src[start - 1] !== "\n") return false;
  const before = src.lastIndexOf("\n", start - 2) + 1;
  const end = src.indexOf("\n", start);
  if (src.slice(before, start - 1).trim() || end < 0) return false;
  const first = src.slice(start, end);
  return /^\S/.test(first) && !LIST_ITEM.test(first);
}

/** Keeps an element showing the Markdown it is given. While an answer streams in, only its
 *  last blocks change: only they are parsed and rendered again, so a long answer costs each
 *  repaint about as much as a short one. `localize(node)` fills in the labels of freshly
 *  rendered parts (copy buttons, hints). */
export class MarkdownView {
  constructor(element, localize = () => {}) {
    this.element = element;
    this.localize = localize;
    this.shown = []; // [{key, start, nodes}] in page order
    this.src = null;
  }

  show(src) {
    if (src === this.src) return;
    let kept = 0;
    const whole = REFERENCE.test(src);
    if (!whole && this.src !== null && src.startsWith(this.src)) {
      for (let i = this.shown.length - 1; i > 0 && !kept; i--) if (settled(src, this.shown[i].start)) kept = i;
    }
    const offset = kept ? this.shown[kept].start : 0;
    const next = [...this.shown.slice(0, kept), ...blocks(src.slice(offset), offset)];
    this.src = src;
    let same = kept;
    while (!whole && same < this.shown.length && same < next.length && next[same].key !== null &&
      this.shown[same].key === next[same].key) same++;
    for (const block of this.shown.splice(same)) for (const node of block.nodes) node.remove();
    const added = document.createDocumentFragment();
    for (const block of next.slice(same)) {
      const template = document.createElement("template");
      template.innerHTML = md.renderer.render(block.tokens, md.options, {});
      const nodes = [...template.content.childNodes];
      added.append(...nodes);
      this.shown.push({ key: block.key, start: block.start, nodes });
    }
    this.localize(added);
    this.element.append(added);
  }
}
