// Live progress of a message being sent: polls the JSON endpoint until the message is finished.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box || box.dataset.finished === "true") { return; }
  var bar = box.querySelector("progress");
  function update() {
    fetch(box.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        ["recipients", "sent", "queued", "deferred", "failed"].forEach(function (name) {
          var cell = box.querySelector('[data-count="' + name + '"]');
          if (cell) { cell.textContent = data[name]; }
        });
        bar.value = data.percent;
        if (data.finished) { window.location.reload(); } else { window.setTimeout(update, 1000); }
      })
      .catch(function () { window.setTimeout(update, 3000); });
  }
  window.setTimeout(update, 1000);
})();
