// Keyboard shortcuts and timing for the annotator's card. The page works without this file:
// every action is a plain form button; this only makes it faster.
(function () {
  "use strict";

  var shownAt = performance.now();

  var KEYS = {
    a: "left", arrowleft: "left",
    b: "right", arrowright: "right",
    t: "tie",
    x: "both_bad",
    s: "skip",
    u: "up", arrowup: "up", "+": "up",
    d: "down", arrowdown: "down", "-": "down"
  };

  function card() { return document.getElementById("card"); }

  function typingIn(target) {
    return target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.tagName === "SELECT" || target.isContentEditable);
  }

  function openAndFocus(selector) {
    var box = card() && card().querySelector(selector);
    if (!box) { return; }
    var details = box.closest("details");
    if (details) { details.open = true; }
    box.focus();
  }

  // The edit box starts from the text of whichever side the annotator wants to rewrite.
  function prefillEdit() {
    var box = card() && card().querySelector("textarea[name=edited_text]");
    if (box && !box.value) { box.value = box.dataset.left || ""; }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typingIn(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var root = card();
    if (!root) { return; }
    var key = event.key.toLowerCase();
    if (key === "r") { event.preventDefault(); openAndFocus("textarea[name=rationale]"); return; }
    if (key === "e") { event.preventDefault(); prefillEdit(); openAndFocus("textarea[name=edited_text]"); return; }
    if (key === "1" || key === "2" || key === "3") {
      var radio = root.querySelector("input[name=strength][value='" + key + "']");
      if (radio) { radio.checked = true; event.preventDefault(); }
      return;
    }
    var action = KEYS[key];
    if (!action) { return; }
    var button = root.querySelector("button[data-key='" + action + "']");
    if (button && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });

  // "Start from A / B" in the edit box copies that side's text in, to be rewritten.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-fill]");
    var box = button && card() && card().querySelector("textarea[name=edited_text]");
    if (!box) { return; }
    box.value = box.dataset[button.dataset.fill] || "";
    box.focus();
  });

  // Record how long the card was on screen; the server falls back to the lease time without it.
  // A click fires before htmx (or the browser) collects the form's values.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[type=submit]");
    var form = button && button.closest("form.vote-form");
    var field = form && form.querySelector("input[name=time_spent_ms]");
    if (field) { field.value = String(Math.round(performance.now() - shownAt)); }
  }, true);
  document.addEventListener("htmx:afterSwap", function () { shownAt = performance.now(); });
  document.body.dataset.keysReady = "1";
})();
