// The audit log's "Verify the chain now": while the walk runs (one request; a long trail takes a while), the
// button says so and cannot be pressed twice. Under the Content-Security-Policy: no inline script.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-verify-now]");
  if (!form) return;
  form.addEventListener("submit", () => {
    const button = form.querySelector("button");
    const progress = form.querySelector("[data-verify-progress]");
    button.disabled = true;
    button.textContent = gettext("Verifying…");
    form.setAttribute("aria-busy", "true");
    if (progress) {
      progress.classList.add("working");
      progress.textContent = gettext(
        "Reading every entry and recomputing its hash. Keep this page open: the result appears here.");
    }
  });
});
