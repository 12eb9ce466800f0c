// The staff navigation on a narrow screen: one "Menu" button that shows and hides the links (templates/base.html).
// Without this script the links wrap under the brand, which also works.
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.querySelector(".topbar");
  const button = bar && bar.querySelector(".menu-toggle");
  if (!button) return;
  bar.classList.add("has-menu");
  button.hidden = false;
  button.addEventListener("click", () => {
    const open = bar.classList.toggle("open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
});
