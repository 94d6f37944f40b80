// Behaviour every page shares, kept out of the markup so pages run under a CSP without inline script:
// selects marked data-autosubmit submit their form when changed, and Enter in a field fires an "enterkey" event
// that hx-trigger can name (htmx's own [key=='Enter'] filters would need eval).
(function () {
  "use strict";
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (field instanceof HTMLSelectElement && field.dataset.autosubmit !== undefined && field.form) {
      field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === "Enter" && event.target instanceof HTMLInputElement) {
      event.target.dispatchEvent(new CustomEvent("enterkey", { bubbles: true }));
    }
  });
})();
