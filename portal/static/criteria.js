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
  // The preview answers at once with a sample and an estimate; a fragment marked data-exact-url is followed by
  // a second request for the exact count (the database counts it), unless the criteria changed meanwhile.
  // The exact figures' request leaves the preview as it is (readable, not dimmed): it says itself that the exact
  // count is on its way.
  function ask(url, mine, busy) {
    if (busy) { target.setAttribute("aria-busy", "true"); }
    fetch(url, {method: "POST", body: new FormData(form), credentials: "same-origin",
                headers: {"X-Requested-With": "fetch"}})
      .then(function (response) {
        if (response.status !== 200 && response.status !== 422) { return null; }
        return response.text();
      })
      .then(function (html) {
        if (mine !== sequence) { return; }
        if (html === null) { unavailable(); } else { target.innerHTML = html; }
        target.removeAttribute("aria-busy");
        if (html !== null) { exact(mine); }
      })
      .catch(function () { if (mine === sequence) { unavailable(); target.removeAttribute("aria-busy"); } });
  }
  function exact(mine) {
    var marker = target.querySelector("[data-exact-url]");
    if (marker && mine === sequence) { ask(marker.dataset.exactUrl, mine, false); }
  }
  function refresh() { ask(form.dataset.previewUrl, ++sequence, true); }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
  exact(sequence);  // the page itself came with the estimate of the saved criteria
  form.addEventListener("change", later);
  form.addEventListener("input", later);
})();
