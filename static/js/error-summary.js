// The GOV.UK error summary on patient pages (issue 17, item 5): after a failed submission the page opens with a
// box titled "There is a problem" at the top. This moves the focus to it (a screen reader reads it, a phone shows
// it), and makes each of its links focus its field, with the field's label in view. Without JavaScript the box is
// still first on the page, its autofocus attribute focuses it, and its links jump to the fields.
(function () {
  "use strict";
  function focusSummary() {
    var summary = document.querySelector("[data-error-summary]");
    if (!summary) {
      return;
    }
    summary.scrollIntoView({ block: "start" });
    summary.focus({ preventScroll: true });
    summary.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      if (!link) {
        return;
      }
      var field = document.getElementById(link.getAttribute("href").slice(1));
      if (!field) {
        return;
      }
      event.preventDefault();
      var label = document.querySelector("label[for='" + field.id + "']");
      var fieldset = field.closest("fieldset");
      var legend = fieldset ? fieldset.querySelector("legend") : null;
      (legend || label || field).scrollIntoView({ block: "start" });
      field.focus({ preventScroll: true });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", focusSummary);
  } else {
    focusSummary();
  }
})();
