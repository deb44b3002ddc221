/* Live: the process tree, traffic per version and role, the vault, and the event timeline. */
"use strict";
(function (PO) {
  const el = PO.el, fmt = PO.fmt;
  const EVENT_PAGE = 200;

  PO.views = PO.views || {};
  PO.views.live = function (root) {
    const state = { kinds: new Set(), hidden: new Set(), text: "", limit: EVENT_PAGE };
    const stats = el("div.stats#live-stats");
    const tree = el("div#process-tree");
    const vault = el("div#vault-info");
    const rps = el("div.chart#chart-rps"), latency = el("div.chart#chart-latency"),
      errors = el("div.chart#chart-errors");
    const trafficTable = el("div.scroll#traffic-table");
    const kindFilters = el("span.filters"), events = el("div.scroll#events");
    const search = el("input", { type: "search", placeholder: "filter events…", "aria-label": "filter events",
      oninput: (e) => { state.text = e.target.value.toLowerCase(); drawEvents(); } });
    const more = el("button", { onclick: () => { state.limit += EVENT_PAGE; drawEvents(); } }, "show older");
    root.append(el("h1", "Live"), el("div.grid",
      el("section.card.span-12", { "aria-label": "summary" }, stats),
      el("section.card.span-7", el("h2", "Process tree"), tree),
      el("section.card.span-5", el("h2", "Vault"), vault),
      el("section.card.span-4", el("h2", "Requests / s"), rps),
      el("section.card.span-4", el("h2", "Latency p50 / p99 (ms)"), latency),
      el("section.card.span-4", el("h2", "Error rate"), errors),
      el("section.card.span-12", el("h2", "Traffic by version and role (last second)"), trafficTable),
      el("section.card.span-12", el("h2", "Events"),
        el("div.filters", search, kindFilters, el("span.muted#events-count")), events, more)));
    const charts = { rps: new PO.LineChart(rps, { yLabel: "req/s" }),
      latency: new PO.LineChart(latency, { yLabel: "ms" }),
      errors: new PO.LineChart(errors, { yLabel: "share", yRange: [0, 1] }) };

    function drawStats(s) {
      const v = s.vault || {}, t = s.tree || {};
      PO.clear(stats).append(
        PO.stat("serving version", el("span.mono", fmt.short(s.serving))),
        PO.stat("supervisor pid", t.supervisor ? t.supervisor.pid : "—"),
        PO.stat("heart pid", t.heart && t.heart.pid ? t.heart.pid : "—"),
        PO.stat("instance restarts", t.supervisor ? t.supervisor.restarts : "—"),
        PO.stat("WAL sequence", fmt.num(v.last_sequence, 0)),
        PO.stat("WAL append p99", fmt.ms(v.append_p99_ms)),
        PO.stat("events", fmt.num(s.events_total || 0, 0)));
    }

    function drawTree(t) {
      if (!t) return;
      const rows = [
        { depth: 0, ...t.heart }, { depth: 1, ...t.supervisor },
      ];
      (t.zygotes || []).forEach((z) => {
        rows.push({ depth: 2, ...z });
        z.instances.forEach((i) => rows.push({ depth: 3, ...i }));
      });
      PO.clear(tree).appendChild(PO.table([
        { label: "role", render: (r) => el("span.tree-role.indent-" + r.depth, r.role) },
        { label: "pid", key: "pid", num: true },
        { label: "version", render: (r) => el("span.mono", r.version ? fmt.short(r.version) : "") },
        { label: "restarts", key: "restarts", num: true },
        { label: "heartbeat age", num: true, render: (r) => r.heartbeat_age_s === undefined || r.heartbeat_age_s === null ? "" : fmt.num(r.heartbeat_age_s) + " s" },
        { label: "RSS", num: true, render: (r) => r.rss_bytes ? fmt.bytes(r.rss_bytes) : "" },
        { label: "in flight", key: "in_flight", num: true },
      ], rows, { label: "process tree", rowClass: (r) => ["depth-" + r.depth] }));
    }

    function checkpoint(c) {
      if (c === null || c === undefined) return "—";
      if (typeof c !== "object") return el("span.mono", String(c));
      const at = c.timestamp_ns ? fmt.time(c.timestamp_ns / 1e9) : "";
      return `at sequence ${fmt.num(c.last_sequence, 0)}${at ? ", " + at : ""}`;
    }

    function drawVault(v) {
      v = v || {};
      PO.clear(vault).appendChild(PO.table([{ label: "figure", key: "k" }, { label: "value", key: "v", num: true }], [
        { k: "path", v: el("span.mono", v.path || "—") },
        { k: "WAL last sequence", v: fmt.num(v.last_sequence, 0) },
        { k: "WAL durable sequence", v: fmt.num(v.durable_sequence, 0) },
        { k: "WAL append + fsync p50", v: fmt.ms(v.append_p50_ms) },
        { k: "WAL append + fsync p99", v: fmt.ms(v.append_p99_ms) },
        { k: "checkpoints written", v: fmt.num(v.checkpoints, 0) },
        { k: "last checkpoint", v: checkpoint(v.last_checkpoint) },
      ], { label: "vault" }));
    }

    function drawTraffic(points) {
      const keys = new Set();
      points.forEach((p) => p.series.forEach((s) => keys.add(s.version + " · " + s.role)));
      const xs = points.map((p) => p.t);
      const pick = (key, field) => points.map((p) => {
        const s = p.series.find((x) => x.version + " · " + x.role === key); return s ? s[field] : null;
      });
      const k = [...keys].sort();
      const label = (key) => key.replace(/^(\w{8})\w*/, "$1");
      charts.rps.set(k.map((x) => ({ label: label(x) })), [xs, ...k.map((x) => pick(x, "rps"))]);
      charts.errors.set(k.map((x) => ({ label: label(x) })), [xs, ...k.map((x) => pick(x, "error_rate"))]);
      const lat = [];
      k.forEach((key, i) => {  // per version and role: a canary's latency is not its main's
        lat.push({ label: label(key) + " p50", color: PO.palette[i % 10] });
        lat.push({ label: label(key) + " p99", color: PO.palette[i % 10], dash: [5, 4] });
      });
      charts.latency.set(lat, [xs, ...k.flatMap((key) => [pick(key, "p50_ms"), pick(key, "p99_ms")])]);
      const last = points.length ? points[points.length - 1].series : [];
      PO.clear(trafficTable).appendChild(PO.table([
        { label: "version", render: (r) => el("span.mono", fmt.short(r.version)) },
        { label: "role", key: "role" },
        { label: "requests / s", num: true, render: (r) => fmt.num(r.rps) },
        { label: "error rate", num: true, render: (r) => fmt.pct(r.error_rate) },
        { label: "p50", num: true, render: (r) => fmt.ms(r.p50_ms) },
        { label: "p99", num: true, render: (r) => fmt.ms(r.p99_ms) },
        { label: "requests (total)", num: true, render: (r) => fmt.num(r.requests, 0) },
      ], last, { label: "traffic by version and role", caption: `${points.length} points` }));
    }

    function drawKinds(all) {
      all.forEach((e) => state.kinds.add(e.kind));
      if (kindFilters.childElementCount === state.kinds.size) return;
      PO.clear(kindFilters).append(...[...state.kinds].sort().map((kind) => el("label",
        el("input", { type: "checkbox", checked: !state.hidden.has(kind), "data-kind": kind,
          onchange: (e) => { if (e.target.checked) state.hidden.delete(kind); else state.hidden.add(kind); drawEvents(); } }),
        PO.pill(kind))));
    }

    function drawEvents() {
      const all = (PO.live.last && PO.live.last.events) || [];
      drawKinds(all);
      const shown = [];
      for (let i = all.length - 1; i >= 0 && shown.length < state.limit; i--) {
        const e = all[i];
        if (state.hidden.has(e.kind)) continue;
        if (state.text && !(e.kind + " " + e.subject + " " + e.reason).toLowerCase().includes(state.text)) continue;
        shown.push(e);
      }
      document.getElementById("events-count").textContent = `${shown.length} shown of ${all.length}`;
      PO.clear(events).appendChild(PO.table([
        { label: "time", render: (e) => el("span.mono", fmt.time(e.ts)) },
        { label: "kind", render: (e) => PO.pill(e.kind) },
        { label: "subject", render: (e) => el("span.mono", String(e.subject || "")) },
        { label: "reason", key: "reason" },
      ], shown, { label: "event timeline" }));
    }

    const off = PO.live.on((message, full) => {
      const s = PO.live.last;
      if (!s) return;
      drawStats(s); drawTree(s.tree); drawVault(s.vault);
      if (full || message.traffic_point) drawTraffic(s.traffic || []);
      if (full || (message.events && message.events.length)) drawEvents();
    });
    if (!PO.live.last) PO.clear(tree).appendChild(el("p.empty", "waiting for the first sample…"));
    return () => off();
  };
})(window.PO);
