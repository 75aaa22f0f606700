// Runs before the page is drawn, so a student who chose dark (or light) never sees a flash of
// the other theme. Without a choice the page follows the system (prefers-color-scheme in CSS).
(function () {
  var theme = null;
  try { theme = window.localStorage.getItem("xedullm.theme"); } catch (e) { /* storage off */ }
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
})();
