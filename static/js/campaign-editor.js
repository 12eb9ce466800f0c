// The campaign editor (templates/campaigns/editor/edit.html): shows the chosen content blocks and one empty choice
// after them, and redraws the live preview from the form 300 ms after the last change. The form #campaign-form
// names the preview URL in data-preview-url.
(function () {
  var form = document.getElementById("campaign-form");
  if (!form || !form.dataset.previewUrl) { return; }
  var panel = document.getElementById("preview");
  var body = document.getElementById("preview-body");
  var previewUrl = form.dataset.previewUrl;
  var slots = Array.prototype.slice.call(form.querySelectorAll("[data-block-slot]"));
  function showSlots() {
    // The chosen blocks, and one empty choice after the last of them.
    var last = 0;
    slots.forEach(function (slot, index) { if (slot.querySelector("select").value) { last = index + 1; } });
    slots.forEach(function (slot, index) { slot.hidden = index > last; });
  }
  var timer = null;
  var sequence = 0;
  function refresh() {
    var mine = ++sequence;
    panel.setAttribute("aria-busy", "true");
    fetch(previewUrl, {method: "POST", body: new FormData(form), credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (html) { if (mine === sequence) { body.innerHTML = html; } })
      .finally(function () { if (mine === sequence) { panel.removeAttribute("aria-busy"); } });
  }
  function changed() {
    showSlots();
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  showSlots();
})();
