// A confirmation shown where the action was taken (Mon espace's list row) carries autofocus: focus moves to it,
// which scrolls it into view and makes screen readers read it (a live region present at load is not announced).
// Browsers that ignore autofocus on such an element get the focus here, once the page has loaded.
(function () {
  "use strict";
  window.addEventListener("load", function () {
    var note = document.getElementById("confirmation");
    if (note && document.activeElement !== note) { note.focus(); }
  });
})();
