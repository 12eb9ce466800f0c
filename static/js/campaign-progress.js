// A campaign's live sending progress (templates/campaigns/campaign_detail.html). While the campaign sends (or
// waits, paused), the bar #progress and its legend #progress-legend follow the deliveries: sent, blocked (never
// sent, never counted as progress), refused by the mail server, and remaining, each with its number as this
// viewer may read it (campaigns.selectors.progress). The page reloads once when the status changes (paused,
// resumed, cancelled, sent) to show it. A paused campaign is polled less often. The bar names the progress URL
// and the status the page was drawn with in data-progress-url and data-status. No markup from the server is
// inserted: every text goes in as text.
(function () {
  "use strict";
  const bar = document.getElementById("progress");
  if (!bar || !bar.dataset.progressUrl) { return; }
  const legend = document.getElementById("progress-legend");
  const percent = document.getElementById("progress-percent");
  const progressUrl = bar.dataset.progressUrl;
  const shownStatus = bar.dataset.status;

  function draw(data) {
    bar.setAttribute("aria-valuenow", data.percent);
    bar.setAttribute("aria-valuetext", data.summary);
    const segments = data.segments.map((segment) => {
      const span = document.createElement("span");
      span.className = "segment segment-" + segment.key;
      span.dataset.segment = segment.key;
      span.style.width = segment.width + "%";
      return span;
    });
    bar.replaceChildren(...segments);
    if (legend) {
      legend.replaceChildren(...data.segments.map((segment) => {
        const item = document.createElement("li");
        item.dataset.legend = segment.key;
        const swatch = document.createElement("span");
        swatch.className = "swatch segment-" + segment.key;
        swatch.setAttribute("aria-hidden", "true");
        const text = document.createElement("span");
        const number = document.createElement("strong");
        number.textContent = segment.text;
        text.append(segment.label + ": ", number);
        item.append(swatch, text);
        return item;
      }));
    }
    if (percent) { percent.textContent = data.percent; }
  }

  (function poll() {
    fetch(progressUrl, {credentials: "same-origin"})
      .then((response) => response.json())
      .then((data) => {
        draw(data);
        if (data.status === shownStatus) {
          setTimeout(poll, data.status === "sending" ? 1500 : 5000);
        } else { window.location.reload(); }
      })
      .catch(() => setTimeout(poll, 5000));
  })();
})();
