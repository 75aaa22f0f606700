// A picture for the question: picked or pasted, shrunk in this browser before it is sent (a
// phone photo of several MB becomes a JPEG of a few hundred KB), so the class's bandwidth and
// the server's size cap are spared. The page's CSP allows data: images only, so the picture is
// decoded with createImageBitmap and kept as a data: URL.
const MAX_SIDE = 1024;
const QUALITY = 0.85;

export async function shrink(file) {
  if (!file || !file.type.startsWith("image/")) throw new Error("not-a-picture");
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // a transparent PNG would turn black as JPEG
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", QUALITY);
}

// The first picture among pasted items, if any.
export function pastedPicture(event) {
  for (const item of (event.clipboardData && event.clipboardData.items) || []) {
    if (item.kind === "file" && item.type.startsWith("image/")) return item.getAsFile();
  }
  return null;
}

// OpenAI's content parts for a question with pictures; plain text without.
export function contentOf(message) {
  if (!message.images || !message.images.length) return message.content;
  return [{ type: "text", text: message.content },
    ...message.images.map((url) => ({ type: "image_url", image_url: { url } }))];
}
