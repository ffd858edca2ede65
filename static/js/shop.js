// Progressive enhancement only: every page works without this file.
// Listing sort menus apply as soon as a new order is picked.
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});
