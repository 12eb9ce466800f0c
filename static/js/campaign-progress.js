// A campaign's live sending progress (templates/campaigns/campaign_detail.html). While the campaign sends (or
// waits, paused), the bar #progress follows the deliveries; the page reloads once when the status changes (paused,
// resumed, cancelled, sent) to show it. A paused campaign is polled less often. The bar names the progress URL and
// the status the page was drawn with in data-progress-url and data-status.
(function () {
  const bar = document.getElementById("progress");
  if (!bar || !bar.dataset.progressUrl) { return; }
  const progressUrl = bar.dataset.progressUrl;
  const shownStatus = bar.dataset.status;
  (function poll() {
    fetch(progressUrl, {credentials: "same-origin"})
      .then((response) => response.json())
      .then((data) => {
        bar.setAttribute("aria-valuenow", data.percent);
        bar.firstElementChild.style.width = data.percent + "%";
        document.getElementById("progress-percent").textContent = data.percent;
        if (data.status === shownStatus) {
          setTimeout(poll, data.status === "sending" ? 1500 : 5000);
        } else { window.location.reload(); }
      })
      .catch(() => setTimeout(poll, 5000));
  })();
})();
