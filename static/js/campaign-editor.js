// The campaign editor (templates/campaigns/editor/edit.html) and the wizard's content step
// (templates/campaigns/wizard/content.html): shows the chosen content blocks and one empty choice after them,
// offers in each block choice only the blocks approved for the chosen purpose (each option's data-purposes: purpose
// ids, or "all"; the server refuses any other), lets the block library's "Add" buttons fill the next empty choice,
// and redraws the live preview from the form 300 ms after the last change. The form #campaign-form names the
// preview URL in data-preview-url.
(function () {
  var form = document.getElementById("campaign-form");
  if (!form || !form.dataset.previewUrl) { return; }
  var panel = document.getElementById("preview");
  var body = document.getElementById("preview-body");
  var previewUrl = form.dataset.previewUrl;
  var slots = Array.prototype.slice.call(form.querySelectorAll("[data-block-slot]"));
  var purpose = form.querySelector("[name=purpose]");
  function showSlots() {
    // The chosen blocks, and one empty choice after the last of them.
    var last = 0;
    slots.forEach(function (slot, index) { if (slot.querySelector("select").value) { last = index + 1; } });
    slots.forEach(function (slot, index) { slot.hidden = index > last; });
  }
  function allowed(option) {
    var purposes = option.dataset.purposes;
    if (!purposes || purposes === "all" || !purpose || !purpose.value) { return true; }
    return purposes.split(" ").indexOf(purpose.value) >= 0;
  }
  function offerForPurpose() {
    slots.forEach(function (slot) {
      Array.prototype.forEach.call(slot.querySelectorAll("option"), function (option) {
        var ok = allowed(option);
        option.hidden = !ok;
        // A chosen block that the purpose does not allow stays chosen, so that the preview says why it is refused.
        option.disabled = !ok && !option.selected;
      });
    });
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
  // The one-page editor's segment picker: each choice named with how many the new purpose covers in it.
  var segment = form.querySelector("select[name=segment]");
  var audienceUrl = form.dataset.audienceUrl;
  function audienceForPurpose() {
    if (!segment || !audienceUrl || !purpose || !purpose.value) { return; }
    fetch(audienceUrl + "?purpose=" + encodeURIComponent(purpose.value), {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        data.options.forEach(function (option) {
          var element = segment.querySelector('option[value="' + option.value + '"]');
          if (element) { element.textContent = option.label; }
        });
      });
  }
  function changed(event) {
    if (event && event.target === purpose) { offerForPurpose(); audienceForPurpose(); }
    showSlots();
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  }
  // The block library (wizard): "Add to the message" puts the block in the first empty choice.
  document.querySelectorAll("[data-block-add]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var empty = slots.map(function (slot) { return slot.querySelector("select"); })
        .filter(function (select) { return !select.value; })[0];
      if (!empty) {
        button.textContent = button.dataset.fullText || gettext("Every block choice is taken");
        return;
      }
      empty.value = button.dataset.blockAdd;
      empty.dispatchEvent(new Event("change", {bubbles: true}));
      empty.focus();
    });
  });
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  offerForPurpose();
  showSlots();
})();
