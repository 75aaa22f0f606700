"""How the student page keeps up with a long streamed answer, measured in headless Chromium.

    python -m bench.web_render              # a 60,000-character answer (about half a minute)
    python -m bench.web_render --chars 20000

The fake provider streams a classroom-like answer (paragraphs, lists, formulas, tables, code)
as fast as it can, in 4-character chunks: harder on the page than any real provider. The page
repaints at most once per animation frame and re-renders only the Markdown block still
growing; this prints what that costs, next to what one full render of the answer costs (what
every repaint would cost without reusing the finished blocks). Needs the 'test' extra
(Playwright) and /usr/bin/chromium. Prints numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

from xedullm import Client
from xedullm.server.app import create_app
from xedullm.testing import FakeOpenAIServer
from xedullm.testing.runner import ServerThread

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

SECTION = """### 第 {n} 节：匀变速直线运动

物体做匀加速运动时，速度 $v = v_0 + at$，位移 $x = v_0 t + \\frac{{1}}{{2}} a t^2$。消去 $t$ 得

$$
v^2 - v_0^2 = 2ax
$$

1. 先写出已知量：$v_0 = {n}\\,\\text{{m/s}}$，$a = 2\\,\\text{{m/s}}^2$
2. 再代入公式 \\(x = \\frac{{v^2 - v_0^2}}{{2a}}\\)
3. 最后检查单位，**别忘了方向**。

| 时间 t/s | 速度 v/(m/s) |
|---:|---:|
| 0 | {n} |
| 1 | {n2} |

```python
def position(v0, a, t):
    return v0 * t + 0.5 * a * t ** 2   # 第 {n} 节

print(position({n}, 2, 3))
```

"""


def answer(chars: int) -> str:
    text, n = "", 1
    while len(text) < chars:
        text += SECTION.format(n=n, n2=n + 2)
        n += 1
    return text[:chars]


# Wraps the page's renderer (the same module instance app.js uses) to time every repaint, and
# records long tasks and frame gaps while the answer streams.
INSTRUMENT = """async () => {
    const m = await import('/static/render.js');
    const show = m.MarkdownView.prototype.show;
    window.__paints = [];
    m.MarkdownView.prototype.show = function (src) {
        const t = performance.now();
        show.call(this, src);
        window.__paints.push(performance.now() - t);
    };
    window.__long = [];
    new PerformanceObserver(list => { for (const e of list.getEntries()) window.__long.push(e.duration); })
        .observe({ entryTypes: ['longtask'] });
    window.__frames = [];
    let last = performance.now();
    const tick = now => { window.__frames.push(now - last); last = now; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
}"""

FULL_RENDER = """async () => {
    const m = await import('/static/render.js');
    const src = window.__source;
    const box = document.createElement('div');
    document.querySelector('#log').append(box);
    const t = performance.now();
    new m.MarkdownView(box).show(src);
    box.getBoundingClientRect();   // include layout
    const took = performance.now() - t;
    box.remove();
    return took;
}"""


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=60_000)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    text = answer(args.chars)
    with FakeOpenAIServer(flavor="deepseek", api_key=None) as fake:
        fake.reply = text
        client = Client(provider="deepseek", base_url=fake.base_url, api_key="sk-bench-web", verbose=False)
        with ServerThread(create_app(client)) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelector('#model').textContent !== '…'")
            page.evaluate(INSTRUMENT)
            started = time.perf_counter()
            page.fill("#input", "讲讲匀变速直线运动")
            page.press("#input", "Enter")
            page.wait_for_selector(".bubble[aria-busy]", state="detached", timeout=600_000)
            streamed = time.perf_counter() - started
            paints = page.evaluate("window.__paints")
            long_tasks = page.evaluate("window.__long")
            frames = page.evaluate("window.__frames")
            shown = page.evaluate("document.querySelector('.msg.assistant .answer').childElementCount")
            page.evaluate("src => { window.__source = src; }", text)
            full = [page.evaluate(FULL_RENDER) for _ in range(3)]
            browser.close()
        client.close()

    chunks = -(-len(text) // 4)
    print(f"answer: {len(text):,} characters in {chunks:,} chunks, streamed and shown in {streamed:.1f} s "
          f"({shown} blocks on screen)")
    print(f"repaints: {len(paints):,} (at most one per animation frame); time per repaint: "
          f"median {statistics.median(paints):.1f} ms, p95 {pct(paints, 0.95):.1f} ms, "
          f"max {max(paints):.1f} ms; all repaints together {sum(paints) / 1000:.1f} s")
    print(f"frames while streaming: {len(frames):,}, gap p50 {pct(frames, 0.5):.0f} ms, "
          f"p95 {pct(frames, 0.95):.0f} ms, max {max(frames):.0f} ms")
    print(f"long tasks (> 50 ms): {len(long_tasks)}, longest {max(long_tasks, default=0):.0f} ms")
    print(f"one full render of the finished answer: median {statistics.median(full):.0f} ms "
          f"(what every repaint would cost without reusing finished blocks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
