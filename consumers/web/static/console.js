// Progressive enhancement of the change form: the summary follows the form as it changes.
// Without this file the "Update summary" button posts the form and the page comes back
// with the summary. Nothing here submits a request.
(function () {
  "use strict";
  var form = document.getElementById("change-form");
  if (!form || !window.fetch) { return; }
  var summary = document.getElementById("summary");
  var button = form.querySelector("[data-role=preview]");
  if (button) { button.hidden = true; }
  var timer = null;
  var latest = 0;

  function refresh() {
    var sent = ++latest;
    var body = new URLSearchParams(new FormData(form));
    body.set("action", "preview");
    summary.classList.add("updating");
    fetch(form.getAttribute("data-preview"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" }
    }).then(function (response) {
      return response.text();
    }).then(function (html) {
      if (sent !== latest) { return; }
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var fresh = holder.querySelector("#summary");
      if (fresh) { summary.replaceWith(fresh); summary = fresh; }
      summary.classList.remove("updating");
    }).catch(function () {
      summary.classList.remove("updating");
    });
  }

  function soon() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 150);
  }

  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
})();
