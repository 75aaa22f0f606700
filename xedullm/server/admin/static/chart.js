// The usage chart: bars of tokens per time slot, drawn as inline SVG. Labels are set with
// textContent, so nothing in the data can become markup.

const SVG = "http://www.w3.org/2000/svg";
const W = 720;
const H = 200;
const PAD = { left: 48, right: 8, top: 10, bottom: 24 };

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// A round number at or above max, so the axis reads 0 / 500 / 1000 rather than 0 / 487 / 974.
function niceMax(max) {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * step).find((v) => v >= max);
}

export function drawChart(container, series) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "usage-chart" });
  const title = el("title", {}, svg);
  const total = series.reduce((sum, s) => sum + s.tokens, 0);
  title.textContent = `token：共 ${total} / tokens: ${total} in total`;
  const top = niceMax(Math.max(0, ...series.map((s) => s.tokens)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - f);
    el("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }, svg);
    const label = el("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, svg);
    label.textContent = String(Math.round(top * f));
  }
  const slot = plotW / Math.max(1, series.length);
  series.forEach((s, i) => {
    const h = (s.tokens / top) * plotH;
    const bar = el("rect", {
      x: PAD.left + i * slot + 1, y: PAD.top + plotH - h, width: Math.max(1, slot - 2), height: h,
      class: "bar", "data-tokens": s.tokens,
    }, svg);
    const tip = el("title", {}, bar);
    tip.textContent = `${clock(s.start)}  ${s.tokens} token · ${s.requests} 次 / requests`;
    if (i % 6 === 0) {
      const label = el("text", { x: PAD.left + i * slot, y: H - 6, class: "axis" }, svg);
      label.textContent = clock(s.start);
    }
  });
  container.replaceChildren(svg);
}
