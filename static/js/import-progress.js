// A patient import's live progress bar (templates/consent/imports/detail.html): polls the progress URL named in
// data-progress-url on #import-progress every second while the import runs, and reloads the page once it ends.
(function () {
  var box = document.getElementById("import-progress");
  if (!box) { return; }
  var bar = box.querySelector(".progress");
  var progressUrl = box.dataset.progressUrl;
  function poll() {
    fetch(progressUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.status !== "importing") { window.location.reload(); return; }
        bar.setAttribute("aria-valuenow", data.percent);
        bar.firstElementChild.style.width = data.percent + "%";
        box.querySelector("[data-processed]").textContent = data.processed_rows;
        box.querySelector("[data-percent]").textContent = data.percent;
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
})();
