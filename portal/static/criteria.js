// Live preview of a list's criteria (a script file: the Content-Security-Policy allows no inline script).
(function () {
  // Post the criteria form (with its CSRF token) as it changes, show the returned fragment.
  var form = document.getElementById("criteria-form");
  var target = document.getElementById("preview");
  var timer = null, sequence = 0;
  function refresh() {
    var mine = ++sequence;
    target.setAttribute("aria-busy", "true");
    fetch(form.dataset.previewUrl, {method: "POST", body: new FormData(form), credentials: "same-origin",
                                    headers: {"X-Requested-With": "fetch"}})
      .then(function (response) { return response.text(); })
      .then(function (html) { if (mine === sequence) { target.innerHTML = html; target.removeAttribute("aria-busy"); } })
      .catch(function () { target.removeAttribute("aria-busy"); });
  }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
  form.addEventListener("change", later);
  form.addEventListener("input", later);
})();
