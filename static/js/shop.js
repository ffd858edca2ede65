// Progressive enhancement only: every page works without this file.
// Listing sort menus apply as soon as a new order is picked.
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});

// Carousels: previous/next buttons that page the row sideways, shown only
// while part of it is out of view (the row itself scrolls without them).
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
document.querySelectorAll(".carousel").forEach((carousel) => {
  const track = carousel.querySelector(".carousel-track");
  const controls = carousel.querySelector(".carousel-controls");
  if (!track || !controls) return;
  const buttons = controls.querySelectorAll("button[data-direction]");
  const update = () => {
    const hiddenWidth = track.scrollWidth - track.clientWidth;
    controls.hidden = hiddenWidth <= 1;
    buttons.forEach((button) => {
      const forward = button.dataset.direction === "1";
      button.disabled = forward ? track.scrollLeft >= hiddenWidth - 1 : track.scrollLeft <= 1;
    });
  };
  buttons.forEach((button) => {
    button.addEventListener("click", () => {
      track.scrollBy({
        left: Number(button.dataset.direction) * track.clientWidth * 0.9,
        behavior: reducedMotion.matches ? "auto" : "smooth",
      });
    });
  });
  track.addEventListener("scroll", update, { passive: true });
  window.addEventListener("resize", update);
  update();
});
