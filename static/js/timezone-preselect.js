// A first schedule (templates/campaigns/editor/review.html): preselect the browser's own time zone in
// <select data-browser-timezone="preselect">; without script the site's zone stays the default.
(function () {
  const select = document.querySelector("select[data-browser-timezone=preselect]");
  const zone = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!select || !zone) { return; }
  if (![...select.options].some((option) => option.value === zone)) {
    select.add(new Option(zone.replaceAll("_", " "), zone));
  }
  select.value = zone;
})();
