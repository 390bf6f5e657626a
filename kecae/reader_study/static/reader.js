// Keyboard shortcuts, the save button's state and the time on screen. The form works without
// this script too: the server checks every answer.
(function () {
  "use strict";
  var form = document.getElementById("answer");
  if (!form) { return; }
  var save = document.getElementById("save");
  var keys = JSON.parse(form.getAttribute("data-keys") || "{}");
  var shown = performance.now();
  var sent = false;

  function groups() {
    var names = [];
    form.querySelectorAll("input[type=radio][required]").forEach(function (el) {
      if (names.indexOf(el.name) < 0) { names.push(el.name); }
    });
    return names;
  }
  function ready() {
    return groups().every(function (n) {
      return form.querySelector('input[name="' + n + '"]:checked') !== null;
    });
  }
  function update() { save.disabled = sent || !ready(); }
  function choose(name, value) {
    var el = form.querySelector('input[name="' + name + '"][value="' + value + '"]');
    if (el) { el.checked = true; update(); }
  }

  form.addEventListener("change", update);
  form.addEventListener("submit", function (e) {
    if (sent || !ready()) { e.preventDefault(); return; }
    form.querySelector("input[name=elapsed_ms]").value = String(Math.round(performance.now() - shown));
    sent = true;  // one submission per image, however often Enter is pressed
    window.setTimeout(update, 0);
  });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    if (e.key === "Enter") {
      e.preventDefault();
      if (!sent && ready()) { form.requestSubmit(); }
      return;
    }
    var k = keys[e.key] || keys[e.key.toLowerCase()];
    if (k) { e.preventDefault(); choose(k[0], k[1]); }
  });
  update();
})();
