/* Experiments: stages, samples per arm, confidence-sequence bounds against the margin, decision. */
"use strict";
(function (PO) {
  const el = PO.el, fmt = PO.fmt;
  const STAGES = ["validating", "shadow", "canary-10", "canary-50", "canary-100", "validation", "done"];

  PO.views.experiments = function (root) {
    const state = { selected: null, experiments: [], points: [], charts: {} };
    const list = el("div.scroll#experiments-list"), detail = el("div#experiment-detail");
    const bandit = el("div#bandit");
    root.append(el("h1", "Experiments"), el("div.grid",
      el("section.card.span-5", el("h2", "Experiments"), list,
        el("h2.spaced", "Operator bandit"), bandit),
      el("section.card.span-7", el("h2", "Selected experiment"), detail)));
    PO.clear(detail).appendChild(el("p.empty", "no experiment selected"));

    function drawList() {
      if (!state.experiments.length) { PO.clear(list).appendChild(el("p.empty", "no experiments yet")); return; }
      PO.clear(list).appendChild(PO.table([
        { label: "experiment", render: (x) => el("span.mono", fmt.short(x.id)) },
        { label: "kind", key: "kind" },
        { label: "stage", key: "stage" },
        { label: "status", render: (x) => PO.pill(x.status) },
        { label: "candidate", render: (x) => el("span.mono", fmt.short(x.candidate_version)) },
      ], state.experiments, { label: "experiments", onRow: (x) => pick(x.id), selected: (x) => x.id === state.selected }));
    }

    function steps(x) {
      const seen = (x.timeline || []).map((e) => e.stage);
      const failed = ["rejected", "rolled_back", "aborted"].includes(x.status);
      const stages = STAGES.filter((s) => s !== "shadow" || x.kind === "shadow" || seen.includes(s))
        .concat(seen.filter((s) => !STAGES.includes(s)));
      return el("div.steps", { role: "list", "aria-label": "stage timeline" }, stages.map((s) => {
        const cls = s === x.stage ? (failed ? "failed" : "current") : seen.includes(s) ? "done" : "";
        return el("div.step" + (cls ? "." + cls : ""), { role: "listitem" }, s);
      }));
    }

    function drawDetail(x) {
      const stats = Object.entries(x.statistics || {});
      const charts = el("div");
      PO.clear(detail).append(
        el("div.stats", PO.stat("status", PO.pill(x.status)), PO.stat("stage", x.stage),
          PO.stat("decision", x.decision || "pending"),
          PO.stat("baseline samples", fmt.num((x.samples || {}).baseline || 0, 0)),
          PO.stat("candidate samples", fmt.num((x.samples || {}).candidate || 0, 0))),
        x.status === "proposed" && !PO.report ? el("p", el("button#approve", { onclick: async (e) => {
          e.target.disabled = true;
          try { await PO.post(`experiments/${x.id}/approve`); pick(x.id); }
          catch (err) { e.target.replaceWith(el("span.muted", String(err.message || err))); }
        } }, "Approve: start this experiment")) : null,
        el("p", el("strong", "Reason: "), x.reason || "—"),
        x.hypothesis ? el("p", el("strong", "Hypothesis: "), x.hypothesis) : null,
        steps(x),
        el("h3", "statistics per metric"),
        PO.table([
          { label: "metric", key: "0" },
          { label: "n (base / cand)", num: true, render: ([, s]) => `${s.n.baseline} / ${s.n.candidate}` },
          { label: "mean base", num: true, render: ([, s]) => fmt.num(s.mean.baseline, 4) },
          { label: "mean cand", num: true, render: ([, s]) => fmt.num(s.mean.candidate, 4) },
          { label: "difference", num: true, render: ([, s]) => fmt.num(s.difference, 4) },
          { label: "conf. sequence", num: true, render: ([, s]) => s.confidence_sequence ? s.confidence_sequence.map((v) => fmt.num(v, 4)).join(" … ") : "not yet" },
          { label: "margin", num: true, render: ([, s]) => fmt.pct(s.margin) + " of base" },
          { label: "decision", render: ([, s]) => s.decision || "—" },
        ], stats, { label: "experiment statistics" }),
        el("h3", "confidence-sequence bounds over time (difference candidate − baseline)"),
        el("p.muted", "better once the whole band is beyond the margin line; worse once it is past zero on the other side"),
        charts,
        el("h3", "timeline"),
        PO.table([
          { label: "time", render: (e) => el("span.mono", fmt.time(e.ts)) },
          { label: "stage", key: "stage" }, { label: "event", key: "event" }, { label: "detail", key: "detail" },
        ], (x.timeline || []).slice().reverse(), { label: "experiment timeline" }));
      state.charts = {};
      stats.forEach(([metric, summary]) => {
        if (!summary.n.candidate && !summary.n.baseline) {
          charts.append(el("div.chart-title", metric + ": no samples yet"));
          return;
        }
        const box = el("div.chart", { id: "cs-" + metric });
        charts.append(el("div.chart-title", metric), box);
        state.charts[metric] = new PO.LineChart(box, { height: 180 });
      });
      drawCharts();
    }

    function drawCharts() {
      const pts = state.points;
      Object.entries(state.charts).forEach(([metric, chart]) => {
        const xs = pts.map((p) => p.t), m = (f) => pts.map((p) => (p.metrics[metric] || {})[f] ?? null);
        chart.set([{ label: "difference" }, { label: "lower bound", dash: [4, 3], color: "#7048e8" },
          { label: "upper bound", dash: [4, 3], color: "#7048e8" },
          { label: "margin (better beyond)", color: "#2f9e44", width: 1 },
          { label: "zero", color: "#e03131", width: 1 }],
        [xs, m("difference"), m("low"), m("high"), m("better_beyond"), xs.map(() => 0)]);
      });
      const count = document.getElementById("cs-points");
      if (count) count.textContent = String(pts.length);
    }

    async function pick(id) {
      state.selected = id; drawList();
      const x = PO.report ? state.experiments.find((e) => e.id === id) : await PO.get("experiments/" + id);
      state.points = (x.points || []).slice();
      drawDetail(x);
      detail.prepend(el("p.muted", "chart points: ", el("span#cs-points", String(state.points.length))));
    }

    async function drawBandit() {
      const b = await PO.get("bandit").catch(() => ({ arms: [] }));
      if (!b.arms.length) { PO.clear(bandit).appendChild(el("p.muted", "no operator has been tried yet")); return; }
      PO.clear(bandit).append(PO.bars(b.arms.map((a) => ({ label: a.operator, value: a.mean,
        text: fmt.pct(a.mean) })), { max: 1, label: "posterior mean success per operator" }),
      PO.table([{ label: "operator", key: "operator" }, { label: "successes", key: "successes", num: true },
        { label: "failures", key: "failures", num: true }, { label: "posterior mean", num: true, render: (a) => fmt.pct(a.mean) }],
      b.arms, { label: "operator bandit" }));
    }

    const off = PO.live.on((message, full) => {
      if (message.experiments) {
        const before = state.experiments.find((e) => e.id === state.selected);
        state.experiments = message.experiments; drawList();
        const now = state.experiments.find((e) => e.id === state.selected);
        if (before && now && (before.status !== now.status || before.stage !== now.stage)) pick(now.id);
        if (!state.selected && state.experiments.length) pick(state.experiments[0].id);
      }
      const point = message.experiment_points && message.experiment_points[state.selected];
      if (point && !full) {
        state.points.push(point); drawCharts();
      }
    });
    if (PO.report) PO.get("experiments").then((xs) => { state.experiments = xs; drawList(); if (xs.length) pick(xs[0].id); });
    drawList(); drawBandit();
    return () => off();
  };
})(window.PO);
