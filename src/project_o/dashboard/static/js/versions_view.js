/* Versions: the lineage DAG coloured by status, who proposed each and why, source and diff. */
"use strict";
(function (PO) {
  const el = PO.el, fmt = PO.fmt;
  const PAGE = 1000, TABLE_PAGE = 100;

  async function loadAll() {
    let offset = 0, all = [], total = Infinity, serving = null;
    while (offset < total) {
      const page = await PO.get(`versions?offset=${offset}&limit=${PAGE}`);
      total = page.total; serving = page.serving; all = all.concat(page.versions);
      if (!page.versions.length) break;
      offset += page.versions.length;
    }
    all.forEach((v) => { v.serving = v.id === serving; });
    return { versions: all, serving };
  }

  PO.views.versions = function (root) {
    const state = { selected: null, versions: [], digest: null, tablePage: 0 };
    const dag = el("div.dag#dag"), table = el("div#versions-table"), detail = el("div#version-detail");
    const summary = el("p.muted#versions-summary");
    root.append(el("h1", "Versions"), el("div.grid",
      el("section.card.span-12", el("h2", "Lineage"), summary, PO.dagLegend(), dag),
      el("section.card.span-5", el("h2", "All versions"), table),
      el("section.card.span-7", el("h2", "Selected version"), detail)));
    PO.clear(detail).appendChild(el("p.empty", "click a version in the lineage or the table"));

    async function refresh() {
      try {
        const { versions, serving } = await loadAll();
        state.versions = versions;
        summary.textContent = `${versions.length} version${versions.length === 1 ? "" : "s"}; serving ${fmt.short(serving)}`;
        draw();
        if (!state.selected && serving) pick(versions.find((v) => v.id === serving));
      } catch (err) {
        PO.clear(dag).appendChild(el("p.empty", String(err.message || err)));
      }
    }

    function draw() {
      PO.drawDag(dag, state.versions, { selected: state.selected, onPick: pick });
      const newest = state.versions.slice().reverse();
      const pages = Math.max(1, Math.ceil(newest.length / TABLE_PAGE));
      const start = state.tablePage * TABLE_PAGE;
      PO.clear(table).append(el("div.scroll.tall", PO.table([
        { label: "version", render: (v) => el("span.mono", fmt.short(v.id)) },
        { label: "status", render: (v) => PO.pill(v.serving ? "serving" : v.status) },
        { label: "made by", render: (v) => `${v.operator} (${v.proposer})` },
        { label: "why", render: (v) => v.hypothesis || v.reason || v.change || "" },
      ], newest.slice(start, start + TABLE_PAGE), { label: "versions", onRow: pick,
        selected: (v) => v.id === state.selected })),
      el("div.filters", el("button", { onclick: () => { state.tablePage = Math.max(0, state.tablePage - 1); draw(); } }, "newer"),
        el("span.muted", `page ${state.tablePage + 1} of ${pages}`),
        el("button", { onclick: () => { state.tablePage = Math.min(pages - 1, state.tablePage + 1); draw(); } }, "older")));
    }

    async function pick(v) {
      if (!v) return;
      state.selected = v.id; draw();
      PO.clear(detail).appendChild(el("p.muted", "loading " + v.id + "…"));
      const d = await PO.get("versions/" + v.id);
      const files = Object.entries(d.source || {});
      PO.clear(detail).append(
        PO.table([{ label: "field", key: "k" }, { label: "value", key: "v" }], [
          { k: "id", v: el("span.mono", d.id) },
          { k: "status", v: PO.pill(v.serving ? "serving" : d.status) },
          { k: "made by", v: `${d.operator} (${d.proposer})` },
          { k: "why", v: v.hypothesis || d.reason || v.change || "—" },
          { k: "parents", v: el("span.mono", (d.parents || []).map(fmt.short).join(", ") || "none") },
          { k: "created", v: fmt.datetime(d.created_at) },
        ], { label: "version details" }),
        el("div", d.diffs.length ? d.diffs.map((x) => [el("h3", "diff against parent " + fmt.short(x.parent)), PO.diff(x.diff)])
          : el("h3", "no parent: the first version"),
        files.map(([name, text]) => [el("h3", "source · " + name), el("pre.source", text)])));
    }

    const off = PO.live.on((message) => {
      const digest = message.versions && message.versions.digest;
      if (digest && digest !== state.digest) { state.digest = digest; refresh(); }
    });
    if (PO.report || !PO.live.last || !PO.live.last.versions) refresh();
    return () => off();
  };
})(window.PO);
