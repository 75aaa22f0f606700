// Copies text to the clipboard. The Clipboard API exists only on secure pages (https or
// localhost), and a classroom server is usually plain http on a LAN address, so there the
// older copy command on a hidden text box does it.
export async function copyText(text) {
  if (window.isSecureContext && navigator.clipboard) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch { /* refused (no permission, page not focused): try the older way */ }
  }
  const focused = document.activeElement;
  const box = document.createElement("textarea");
  box.value = text;
  box.readOnly = true;
  box.className = "offscreen";
  document.body.append(box);
  box.select();
  let copied = false;
  try { copied = document.execCommand("copy"); } catch { copied = false; }
  box.remove();
  if (focused && focused.focus) focused.focus();
  return copied;
}
