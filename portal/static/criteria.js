// Live preview of a list's criteria: post the form (with its CSRF token) 300 ms after each change and show the
// returned fragment (200, or 422 with the field errors). Anything else (an expired session, a server error)
// leaves the form as typed and says the preview is unavailable: never a whole error page inside this one.
(function () {
  "use strict";
  var form = document.getElementById("criteria-form");
  var target = document.getElementById("preview");
  if (!form || !target) { return; }
  var timer = null, sequence = 0;
  function unavailable() {
    var note = document.createElement("p");
    note.className = "flash flash-error";
    note.textContent = form.dataset.unavailable;
    var title = target.querySelector("h2");
    target.replaceChildren.apply(target, title ? [title, note] : [note]);
  }
  function refresh() {
    var mine = ++sequence;
    target.setAttribute("aria-busy", "true");
    fetch(form.dataset.previewUrl, {method: "POST", body: new FormData(form), credentials: "same-origin",
                                    headers: {"X-Requested-With": "fetch"}})
      .then(function (response) {
        if (response.status !== 200 && response.status !== 422) { return null; }
        return response.text();
      })
      .then(function (html) {
        if (mine !== sequence) { return; }
        if (html === null) { unavailable(); } else { target.innerHTML = html; }
        target.removeAttribute("aria-busy");
      })
      .catch(function () { if (mine === sequence) { unavailable(); target.removeAttribute("aria-busy"); } });
  }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
  form.addEventListener("change", later);
  form.addEventListener("input", later);
})();
