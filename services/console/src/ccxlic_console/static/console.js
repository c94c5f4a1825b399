// ccx-licensing console: the only script. It refreshes the parts of a page marked data-refresh="URL" (the server
// renders them; this swaps them in), pausing while the tab is hidden. Everything else works without it.
(function () {
  "use strict";
  var every = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 1000;
  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    if (!url || document.hidden || el.contains(document.activeElement)) { return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401 || r.redirected) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined && el.innerHTML !== html) {
          el.innerHTML = html;
          el.setAttribute("data-refreshed", new Date().toISOString());
        }
      })
      .catch(function () { /* the next round tries again */ });
  }
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    window.setInterval(function () { refresh(el); }, every);
  });
})();
