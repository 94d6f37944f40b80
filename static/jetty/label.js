// The labelling form's keyboard: 1-5 score the highlighted criterion and move to the next, up/down (or j/k)
// change criterion, Enter saves, n/p go to the next/previous item. Without this script the form still posts.
(function () {
  const form = document.getElementById("rubric-form");
  if (!form) return;
  const criteria = Array.from(form.querySelectorAll(".criterion"));
  let current = 0;

  function focus(index) {
    if (!criteria.length) return;
    current = Math.max(0, Math.min(criteria.length - 1, index));
    criteria.forEach((c, i) => c.classList.toggle("focus", i === current));
    criteria[current].scrollIntoView({ block: "nearest" });
  }

  function firstUnscored() {
    const i = criteria.findIndex((c) => !c.querySelector("input[type=radio]:checked"));
    return i < 0 ? 0 : i;
  }

  criteria.forEach((c, i) => {
    c.addEventListener("click", () => focus(i));
    c.addEventListener("focus", () => focus(i));
  });

  function typing(target) {
    return target.closest("textarea, input:not([type=radio]), select, [contenteditable]");
  }

  function go(id) {
    const link = document.getElementById(id);
    if (link) window.location.href = link.href;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key;
    if (key >= "1" && key <= "5") {
      const radio = criteria[current] && criteria[current].querySelector(`input[type=radio][value="${key}"]`);
      if (radio && !radio.disabled) {
        radio.checked = true;
        event.preventDefault();
        focus(current + 1 < criteria.length ? current + 1 : current);
      }
    } else if (key === "ArrowDown" || key === "j") {
      event.preventDefault();
      focus(current + 1);
    } else if (key === "ArrowUp" || key === "k") {
      event.preventDefault();
      focus(current - 1);
    } else if (key === "Enter") {
      if (event.target.closest("a, button")) return;
      if (form.querySelector("#submit-review")) {
        event.preventDefault();
        form.requestSubmit();
      }
    } else if (key === "n") {
      go("next-item");
    } else if (key === "p") {
      go("prev-item");
    }
  });

  focus(firstUnscored());
})();
