// The segment builder (templates/campaigns/segments/builder.html): shows each rule's inputs for its kind, one
// empty rule after the chosen ones, and redraws the live counts 300 ms after the last change. The form
// #segment-form names the counts URL in data-counts-url.
(function () {
  var form = document.getElementById("segment-form");
  if (!form || !form.dataset.countsUrl) { return; }
  var panel = document.getElementById("counts");
  var countsUrl = form.dataset.countsUrl;
  var uses = {age: ["low", "high"], last_visit: ["low", "high"], sex: ["values"], postal_prefix: ["values"],
              postal_in: ["values"], state: ["values"], condition: ["values"]};
  function example(codes) { return interpolate(gettext("e.g. %(example)s"), {example: codes}, true); }
  var hints = {age: [gettext("lowest age"), gettext("highest age")],
               last_visit: [gettext("from YYYY-MM-DD"), gettext("before YYYY-MM-DD")],
               sex: gettext("F, M or X"), postal_prefix: example("627"), postal_in: example("62701, 62702"),
               state: example("IL, WI"), condition: example("E11, G47.33")};
  function showRow(row) {
    var kind = row.querySelector("select").value;
    ["low", "high", "values"].forEach(function (part, index) {
      var input = row.querySelector("[data-part=" + part + "]");
      var used = (uses[kind] || []).indexOf(part) >= 0;
      input.closest("td").style.visibility = used ? "visible" : "hidden";
      var hint = hints[kind];
      input.placeholder = used && hint ? (Array.isArray(hint) ? hint[index] : hint) : "";
    });
    row.querySelector("td.negate").style.visibility = kind ? "visible" : "hidden";
  }
  function showRows() {
    form.querySelectorAll("tbody[data-rows]").forEach(function (body) {
      var emptyShown = false;
      body.querySelectorAll("tr").forEach(function (row, index) {
        var chosen = row.querySelector("select").value !== "";
        row.hidden = !chosen && emptyShown && index > 0;
        if (!chosen && !row.hidden) { emptyShown = true; }
        showRow(row);
      });
    });
  }
  var timer = null;
  var sequence = 0;
  function refreshCounts() {
    var mine = ++sequence;
    panel.setAttribute("aria-busy", "true");
    fetch(countsUrl, {method: "POST", body: new FormData(form), credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (html) { if (mine === sequence) { panel.innerHTML = html; } })
      .finally(function () { if (mine === sequence) { panel.removeAttribute("aria-busy"); } });
  }
  function changed() {
    showRows();
    window.clearTimeout(timer);
    timer = window.setTimeout(refreshCounts, 300);
  }
  // The purpose chosen for the counts is kept in the address (?purpose=<id>), never in the session: a reload, the
  // browser's history, the saved segment's page and the link back to the list all keep it.
  var purpose = form.querySelector("select[name=purpose]");
  function rememberPurpose() {
    if (!purpose || !window.history || !window.URL) { return; }
    var url = new URL(window.location.href);
    if (purpose.value) { url.searchParams.set("purpose", purpose.value); } else { url.searchParams.delete("purpose"); }
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    form.setAttribute("action", url.pathname + url.search);
    document.querySelectorAll("[data-segment-list-link]").forEach(function (link) {
      var list = new URL(link.href);
      if (purpose.value) { list.searchParams.set("purpose", purpose.value); } else { list.searchParams.delete("purpose"); }
      link.href = list.pathname + list.search;
    });
  }
  if (purpose) { purpose.addEventListener("change", rememberPurpose); }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  showRows();
})();
