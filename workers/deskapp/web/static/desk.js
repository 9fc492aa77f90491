// The desk application's enhancements; every page works without them.
// - An error summary takes the focus, so the mediator hears it first.
// - Finding a service filters as the mediator types.
// - A request under way refreshes its progress every few seconds.
// - A form that submits a request cannot be sent twice by a double click.
(function () {
  "use strict";

  var summary = document.querySelector("[data-focus]");
  if (summary) {
    summary.focus();
    // A link of the summary takes the focus to its field, whatever its
    // kind (browsers focus a text field they scroll to, not a checkbox),
    // with the field's question in view.
    summary.addEventListener("click", function (e) {
      var link = e.target.closest("a[href^='#']");
      var field = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!field) { return; }
      e.preventDefault();
      var question = field.closest("fieldset") || field.closest(".field") || field;
      question.scrollIntoView();
      field.focus({ preventScroll: true });
    });
  }

  var search = document.querySelector("[data-live-search]");
  var results = document.getElementById("results");
  if (search && results) {
    var timer = null, asked = 0;
    var refresh = function () {
      var form = search.form, params = new URLSearchParams(new FormData(form));
      params.set("partial", "results");
      var n = ++asked;
      fetch(form.action + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          if (n !== asked) { return; }
          results.innerHTML = html;
          // The count is told in a live region that stays put, so that
          // screen readers hear it.
          var count = results.querySelector("[data-count]"), status = document.getElementById("results-status");
          if (count && status) { status.textContent = count.textContent; }
        })
        .catch(function () { /* the form still works */ });
    };
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    var group = search.form.querySelector("select[name=group]");
    if (group) { group.addEventListener("change", refresh); }
  }

  var live = document.querySelector("[data-live]");
  if (live) {
    var poll = function () {
      fetch(live.getAttribute("data-live"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          // Replace only what changed, so that a screen reader is not
          // read the whole page again.
          var before = live.querySelector("[data-status]");
          before = before ? before.textContent : "";
          if (live.innerHTML !== html) { live.innerHTML = html; }
          var now = live.querySelector("[data-status]"), said = document.getElementById("live-status");
          if (now && said && now.textContent !== before) { said.textContent = now.textContent; }
          // An open request's progress carries a mark; a finished one's
          // does not, and needs no more asking.
          if (live.querySelector("[data-open]")) { setTimeout(poll, 3000); }
        })
        .catch(function () { setTimeout(poll, 10000); });
    };
    setTimeout(poll, 3000);
  }

  // The citizen's screen follows the visit through server-sent events;
  // EventSource reconnects by itself, and the server sends the current
  // step first.
  var screen = document.querySelector("[data-screen]");
  if (screen && window.EventSource) {
    var said = document.getElementById("screen-status");
    var follow = function () {
      var source = new EventSource(screen.getAttribute("data-screen"));
      source.addEventListener("step", function (e) {
        var step = JSON.parse(e.data);
        document.documentElement.lang = step.lang;
        screen.innerHTML = step.html;
        // The new step's heading is told, not the whole screen again.
        var heading = screen.querySelector("h1");
        if (said && heading) { said.textContent = heading.textContent; }
        if (step.ended) { source.close(); }
      });
      source.addEventListener("error", function () {
        // The browser retries by itself unless the answer told it to stop
        // (a 503); then ask again a little later.
        if (source.readyState === EventSource.CLOSED) { setTimeout(follow, 5000); }
      });
    };
    follow();
  }

  // The mediator's answers reach the citizen's screen as they are typed:
  // the form is kept as a draft a moment after each change.
  var form = document.querySelector("form[data-draft]");
  if (form) {
    var pending = null;
    var keep = function () {
      var body = new URLSearchParams(new FormData(form));
      fetch(form.getAttribute("data-draft"), { method: "POST", body: body, credentials: "same-origin" }).catch(function () {});
    };
    var later = function () { clearTimeout(pending); pending = setTimeout(keep, 400); };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
  }

  document.querySelectorAll("form[data-submit-once]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (form.dataset.sent) { e.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  });
})();
