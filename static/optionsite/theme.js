// The colour theme, set before the first paint: loaded (not deferred) in <head> of every page,
// a file of its own because the Content-Security-Policy refuses inline scripts. It writes
// data-theme="light"|"dark" on <html> from the choice remembered in this browser
// (localStorage "optionsite.theme": "light", "dark"; absent = follow the system), else from the
// system's prefers-color-scheme, and follows the system while nothing is remembered. The
// header's #theme-toggle button cycles auto → dark → light → auto. site.css holds the colours.
(function () {
  "use strict";
  var KEY = "optionsite.theme";
  var CHOICES = ["auto", "dark", "light"];
  var media = window.matchMedia("(prefers-color-scheme: dark)");
  function stored() {
    try { return localStorage.getItem(KEY); } catch (e) { return null; } // storage off: follow the system
  }
  function choice() { var c = stored(); return c === "dark" || c === "light" ? c : "auto"; }
  function apply() {
    var c = choice();
    var theme = c === "auto" ? (media.matches ? "dark" : "light") : c;
    document.documentElement.dataset.theme = theme;
    document.documentElement.dataset.themeChoice = c;
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.textContent = c === "auto" ? "Theme: auto (" + theme + ")" : "Theme: " + c;
      button.setAttribute("aria-label", "Colour theme: " + c + "; press to change");
    }
  }
  apply();
  media.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", function () {
    apply();
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      var next = CHOICES[(CHOICES.indexOf(choice()) + 1) % CHOICES.length];
      try {
        if (next === "auto") localStorage.removeItem(KEY); else localStorage.setItem(KEY, next);
      } catch (e) { // storage off: the choice lasts for this page only
        document.documentElement.dataset.theme = next === "auto" ? (media.matches ? "dark" : "light") : next;
        return;
      }
      apply();
    });
  });
})();
