// The playground: leaving the page while answers are written stops them (a worker should not write for nobody).
// A form sent from the page (Stop, Keep, Ask again) is not leaving it.
(function () {
  "use strict";
  var submitting = false;
  document.addEventListener("submit", function () { submitting = true; });
  window.addEventListener("pagehide", function () {
    var answers = document.getElementById("playground-answers");
    var url = answers && answers.dataset.cancel;
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (!url || submitting || !token || !navigator.sendBeacon) { return; }
    var body = new FormData();
    body.append("csrfmiddlewaretoken", token.value);
    navigator.sendBeacon(url, body);
  });
})();
