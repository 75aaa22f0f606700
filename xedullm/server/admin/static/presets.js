// The preset picker: a classroom preset (xedullm presets) fills the system prompt box. The
// teacher can still edit the text; "Save settings" saves it like a prompt typed by hand.

const select = document.getElementById("preset");
const description = document.getElementById("preset-description");
const system = document.getElementById("system");

async function loadPresets() {
  const res = await fetch("/admin/api/presets", { headers: { Accept: "application/json" } });
  if (!res.ok) return; // logged out: admin.js shows the login page
  const { presets } = await res.json();
  const byId = new Map();
  for (const preset of presets) {
    byId.set(preset.id, preset);
    const option = document.createElement("option");
    option.value = preset.id;
    option.textContent = `${preset.name_zh} / ${preset.name_en}`;
    select.append(option);
  }
  select.addEventListener("change", () => {
    const preset = byId.get(select.value);
    description.hidden = !preset;
    if (!preset) return;
    description.textContent = preset.description;
    system.value = preset.text;
    system.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

if (select && system) loadPresets();
