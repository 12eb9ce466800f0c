// The journey builder (templates/journeys/builder.html). The page works without this script: every button
// submits the form and the server draws it again. With it:
// - each add-a-step button copies an empty card from <template id="step-template-<kind>"> into the list (no round trip),
//   and every "go to step" choice gets the new step;
// - each message's preview is redrawn 300 ms after its fields change, by the campaign editor's own preview
//   endpoint (the form's data-preview-url: campaigns:campaign_preview), so it is made and scope-checked exactly
//   as a campaign's;
// - only the panel of the chosen trigger is shown, and a branch's event fields only when it waits for an event;
// - a message shows the blocks chosen and one empty choice after them.
// Its words come from the JavaScript catalogue (/i18n/js/, journeys/locale/es/LC_MESSAGES/djangojs.po), the same
// msgids as the server's, so a card added here reads as one the server drew.
(function () {
  "use strict";
  var form = document.getElementById("journey-form");
  if (!form || !form.dataset.previewUrl) { return; }
  var list = document.getElementById("step-list");
  var total = form.querySelector("input[name='steps-TOTAL_FORMS']");
  var previewUrl = form.dataset.previewUrl;
  var csrf = form.querySelector("input[name='csrfmiddlewaretoken']").value;

  function cards() { return Array.prototype.slice.call(list.querySelectorAll("[data-step]")); }

  // --- The trigger panels and the branch fields ---------------------------------------------------------
  function showTrigger() {
    var chosen = form.querySelector("input[name='trigger']:checked");
    var kind = chosen ? chosen.value : "";
    form.querySelectorAll("[data-trigger-panel]").forEach(function (panel) {
      panel.hidden = kind !== "" && panel.dataset.triggerPanel !== kind;
    });
  }
  function showBranch(card) {
    var event = card.querySelector("[data-branch-event]");
    if (!event) { return; }
    var chosen = card.querySelector("input[name$='-branch_on']:checked");
    event.hidden = chosen !== null && chosen.value === "click";
  }

  // --- Blocks: the chosen ones and one empty choice after them --------------------------------------------
  function showSlots(card) {
    var slots = Array.prototype.slice.call(card.querySelectorAll("[data-block-slot]"));
    var last = 0;
    slots.forEach(function (slot, index) { if (slot.querySelector("select").value) { last = index + 1; } });
    slots.forEach(function (slot, index) { slot.hidden = index > last; });
  }

  // --- The live preview of a message ---------------------------------------------------------------------
  function purpose() {
    var select = form.querySelector("select[name='purpose']");
    return select ? select.value : (form.dataset.purpose || "");
  }
  function previewData(card) {
    // The campaign editor's field names: purpose, subject, body_text, template, block_1 ...
    var data = new FormData();
    data.append("csrfmiddlewaretoken", csrf);
    data.append("purpose", purpose());
    card.querySelectorAll("[data-message-fields] [name]").forEach(function (field) {
      var name = field.name.replace(/^steps-[0-9]+-/, "");
      if (/^(subject|body_text|template|block_[0-9]+)$/.test(name)) { data.append(name, field.value); }
    });
    return data;
  }
  function refresh(card) {
    var panel = card.querySelector(".step-preview");
    var body = card.querySelector("[data-step-preview]");
    if (!panel || !body) { return; }
    var mine = (card.previewSequence || 0) + 1;
    card.previewSequence = mine;
    panel.setAttribute("aria-busy", "true");
    fetch(previewUrl, {method: "POST", body: previewData(card), credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (html) {
        if (mine !== card.previewSequence) { return; }
        body.innerHTML = html;
        var frame = body.querySelector("iframe");
        var number = card.querySelector("[data-step-number]");
        if (frame && number) {
          frame.title = interpolate(gettext("Step %(position)s: email preview (HTML part)"),
                                    {position: number.textContent}, true);
        }
      })
      .finally(function () { if (mine === card.previewSequence) { panel.removeAttribute("aria-busy"); } });
  }
  function changed(event) {
    var card = event.target.closest("[data-step]");
    if (event.target.name === "trigger") { showTrigger(); }
    if (event.target.name === "purpose") { cards().forEach(function (c) { if (c.dataset.kind === "send") { refresh(c); } }); }
    if (!card) { return; }
    showBranch(card);
    if (card.dataset.kind !== "send" || !event.target.closest("[data-message-fields]")) { return; }
    showSlots(card);
    window.clearTimeout(card.previewTimer);
    card.previewTimer = window.setTimeout(function () { refresh(card); }, 300);
  }

  // --- Adding a step -------------------------------------------------------------------------------------
  function targetsAdd(number) {
    // Every "go to" choice: a new "step N" before "the end".
    form.querySelectorAll("select[name$='_target']").forEach(function (select) {
      if (select.querySelector("option[value='" + number + "']")) { return; }
      var option = document.createElement("option");
      option.value = String(number);
      option.textContent = interpolate(gettext("step %(number)s"), {number: number}, true);
      select.insertBefore(option, select.querySelector("option[value='end']"));
    });
  }
  function addStep(kind) {
    var template = document.getElementById("step-template-" + kind);
    if (!template) { return false; }
    var index = parseInt(total.value, 10);
    var number = index + 1;
    var html = template.innerHTML.replace(/__prefix__/g, String(index)).replace(/__number__/g, String(number));
    var holder = document.createElement("ol");
    holder.innerHTML = html;
    var card = holder.querySelector("[data-step]");
    var empty = list.querySelector("[data-no-steps]");
    if (empty) { empty.remove(); }
    list.appendChild(card);
    total.value = String(number);
    targetsAdd(number);
    showBranch(card);
    if (kind === "send") { showSlots(card); refresh(card); }
    var heading = card.querySelector("h3");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
    return true;
  }

  form.addEventListener("click", function (event) {
    var button = event.target.closest("[data-add-step]");
    if (button && addStep(button.dataset.addStep)) { event.preventDefault(); }
  });
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  showTrigger();
  cards().forEach(function (card) { showBranch(card); showSlots(card); });
})();
