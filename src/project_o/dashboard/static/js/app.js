/* The page: one view at a time, chosen by the URL's #fragment; one live connection for all. */
"use strict";
(function (PO) {
  let leave = null;
  function show() {
    const views = PO.report ? PO.report.views : ["live", "versions", "experiments", "runs"];
    let name = location.hash.slice(1) || views[0];
    if (!views.includes(name)) name = views[0];
    document.querySelectorAll("nav a").forEach((a) => {
      a.classList.toggle("active", a.dataset.view === name);
      a.hidden = !views.includes(a.dataset.view);
      if (a.dataset.view === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    if (leave) leave();
    const main = PO.clear(document.getElementById("main"));
    main.dataset.view = name;
    leave = PO.views[name](main);
  }
  window.addEventListener("hashchange", show);
  PO.live.connect();
  show();
})(window.PO);
