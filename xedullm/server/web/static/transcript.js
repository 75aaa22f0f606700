// One conversation as a Markdown file the student can keep, print or hand in.

const pad = (n) => String(n).padStart(2, "0");

const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

/** "2026-09-01 14:05" */
export const readableTime = (d) => `${day(d)} ${pad(d.getHours())}:${pad(d.getMinutes())}`;

/** A file name for the export: "xedullm-2026-09-01-1405.md" */
export const transcriptName = (d) => `xedullm-${day(d)}-${pad(d.getHours())}${pad(d.getMinutes())}.md`;

const quote = (text) => text.split("\n").map((line) => (line ? `> ${line}` : ">")).join("\n");

/** `info` is what /api/info said (provider, model, system prompt), or null. */
export function transcript(conversation, info, now = new Date()) {
  const lines = ["# XEduLLM 课堂对话 / Classroom chat", "", `- 导出时间 / Exported: ${readableTime(now)}`];
  if (info) {
    const provider = info.provider_label || info.provider || "OpenAI 兼容接口 / OpenAI-compatible";
    lines.push(`- 平台 / Provider: ${provider}`, `- 模型 / Model: ${info.model || "—"}`);
    if (info.system_prompt) lines.push("", "系统提示词 / System prompt:", "", quote(info.system_prompt));
  }
  for (const message of conversation.messages) {
    lines.push("", "---", "");
    if (message.role === "user") {
      lines.push("## 我 / You", "", message.content);
      continue;
    }
    lines.push("## AI", "");
    if (message.reasoning) lines.push(quote(`**思考过程 / Thinking**\n\n${message.reasoning}`), "");
    lines.push(message.content);
    if (message.stopped) lines.push("", "*（已停止 / stopped）*");
    if (message.interrupted) lines.push("", "*（回答中断 / cut off）*");
  }
  return `${lines.join("\n")}\n`;
}
