// spotflow dashboard: replaces the live part of the page with the figures the
// server sends every two seconds, and applies the filter without a reload.
"use strict";
(function () {
  const live = document.getElementById("live");
  const form = document.getElementById("filter");
  if (!live || !window.EventSource) return;
  let source = null;
  let updates = 0;

  function connect(query) {
    if (source) source.close();
    source = new EventSource(live.dataset.liveSrc + query);
    source.addEventListener("figures", function (e) {
      // Keep open whatever tables the reader opened.
      const open = Array.from(live.querySelectorAll("details[open]")).map(function (d) { return d.id; });
      live.innerHTML = JSON.parse(e.data);
      open.forEach(function (id) {
        const d = document.getElementById(id);
        if (d) d.open = true;
      });
      updates++;
      live.dataset.updates = String(updates);
    });
    source.addEventListener("stale", function () {
      live.dataset.stale = "true";
    });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const query = "?" + new URLSearchParams(new FormData(form)).toString();
    history.replaceState(null, "", "/dashboard" + query);
    connect(query);
  });
  connect(window.location.search);
})();
