// The schedule form (templates/campaigns/editor/review.html). The zone defaults to the organisation's, as every
// page shows times in it; the browser's own zone is added to the list (not chosen) when it is missing, so a person
// may pick it. Under the zone, #schedule-relative says live how far away the chosen time is: "in 45 minutes",
// "in 3 hours", or that it has passed or does not exist in that zone (the hour skipped when clocks go forward).
// The server checks again and stores the instant in UTC (campaigns.scheduling).
(function () {
  "use strict";
  const form = document.getElementById("schedule");
  if (!form) { return; }
  const input = form.querySelector("input[type=datetime-local]");
  const select = form.querySelector("select[data-browser-timezone]");
  const out = document.getElementById("schedule-relative");
  if (!input || !select || !out) { return; }

  const browserZone = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (browserZone && ![...select.options].some((option) => option.value === browserZone)) {
    const name = interpolate(gettext("%(zone)s (this browser)"), {zone: browserZone.replaceAll("_", " ")}, true);
    select.add(new Option(name, browserZone));
  }

  // The wall-clock parts of an instant in a zone, as numbers.
  function partsIn(zone, instant) {
    const parts = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit",
    }).formatToParts(instant).forEach((part) => { parts[part.type] = Number(part.value); });
    return parts;
  }

  // The instant of a wall-clock time in a zone, or null when the zone skips that time.
  function instantOf(wall, zone) {
    const asUtc = Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute);
    let guess = asUtc;
    for (let i = 0; i < 3; i++) {
      const p = partsIn(zone, new Date(guess));
      const shown = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute);
      guess += asUtc - shown;
    }
    const back = partsIn(zone, new Date(guess));
    const same = back.year === wall.year && back.month === wall.month && back.day === wall.day &&
      back.hour === wall.hour && back.minute === wall.minute;
    return same ? guess : null;
  }

  // "in 3 hours" is one message, so that a language puts the number where its grammar wants it.
  function inCount(message, count) { return interpolate(message, {count}, true); }

  function relative(ms) {
    const minutes = Math.max(1, Math.floor(ms / 60000));
    if (minutes < 120) { return inCount(ngettext("in %(count)s minute", "in %(count)s minutes", minutes), minutes); }
    const hours = Math.floor(minutes / 60);
    if (hours < 48) { return inCount(ngettext("in %(count)s hour", "in %(count)s hours", hours), hours); }
    const days = Math.floor(hours / 24);
    if (days < 60) { return inCount(ngettext("in %(count)s day", "in %(count)s days", days), days); }
    const months = Math.floor(days / 30);
    if (days < 730) { return inCount(ngettext("in %(count)s month", "in %(count)s months", months), months); }
    const years = Math.floor(days / 365);
    return inCount(ngettext("in %(count)s year", "in %(count)s years", years), years);
  }

  function update() {
    const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(input.value || "");
    if (!match) { out.textContent = ""; return; }
    const wall = {
      year: Number(match[1]), month: Number(match[2]), day: Number(match[3]),
      hour: Number(match[4]), minute: Number(match[5]),
    };
    let instant;
    try { instant = instantOf(wall, select.value); } catch (error) { out.textContent = ""; return; }
    if (instant === null) {
      const text = gettext("That time does not exist in %(zone)s: the clocks go forward then.");
      out.textContent = interpolate(text, {zone: select.value}, true);
      return;
    }
    const ms = instant - Date.now();
    out.textContent = ms > 0
      ? interpolate(gettext("It will be sent %(when)s."), {when: relative(ms)}, true)
      : gettext("That time has already passed.");
  }

  input.addEventListener("input", update);
  select.addEventListener("change", update);
  setInterval(update, 30000);
  update();
})();
