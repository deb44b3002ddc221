/* Evolution runs: score per generation, failures by kind, operators, the winner's lineage and diff. */
"use strict";
(function (PO) {
  const el = PO.el, fmt = PO.fmt;
  const KIND_COLORS = { crash: "#e03131", timeout: "#f08c00", gamed: "#7048e8", error: "#868e96", memory: "#0c8599" };

  PO.views.runs = function (root) {
    const state = { selected: null, runs: [], done: {} };
    const list = el("div.scroll#runs-list"), detail = el("div#run-detail");
    const redteam = el("section.card.span-12#redteam");
    redteam.hidden = true;
    root.append(el("h1", "Evolution runs"), el("div.grid",
      el("section.card.span-12", el("h2", "Runs"), list),
      el("section.span-12", detail), redteam));

    async function drawRedTeam() {
      const r = await PO.get("redteam").catch(() => ({ rounds: [], matches: [], findings: [] }));
      const matches = r.matches || [];
      if (!r.rounds.length && !matches.length) return;
      redteam.hidden = false;
      const chart = el("div.chart#chart-matches");
      PO.clear(redteam).append(el("h2", "Red vs blue"),
        matches.length ? el("div",
          el("h3", "matches per round"),
          el("p.muted", "red's proposals, how many broke blue's champion, and the champion's score against the suite"),
          chart,
          el("div.scroll", PO.table([{ label: "run", render: (m) => el("span.mono", fmt.short(m.run)) },
            { label: "round", key: "round", num: true },
            { label: "red proposed", key: "proposed", num: true },
            { label: "broke champion", key: "broke", num: true },
            { label: "new findings", key: "new_findings", num: true },
            { label: "blue passed", num: true, render: (m) => `${m.passed} / ${m.suite}` },
            { label: "blue score", num: true, render: (m) => fmt.num(m.score, 4) },
            { label: "champion", render: (m) => el("span.mono", fmt.short(m.champion)) },
            { label: "red's proposals", render: (m) => el("span.mono", (m.inputs || []).join(" · ")) }],
          matches.slice().reverse(), { label: "red vs blue matches" }))) : null,
        el("p.muted", "each round: the blue champion, and the inputs red found that broke it"),
        el("div.split",
          PO.table([{ label: "round", key: "round", num: true },
            { label: "blue champion", render: (m) => el("span.mono", fmt.short(m.blue)) },
            { label: "inputs that broke it", key: "findings", num: true },
            { label: "kinds", render: (m) => Object.entries(m.kinds).map(([k, n]) => [PO.pill(k), ` ${n} `]) }],
          r.rounds, { label: "red vs blue rounds" }),
          el("div.scroll", PO.table([{ label: "round", key: "round", num: true },
            { label: "kind", render: (f) => PO.pill(f.kind) },
            { label: "input", render: (f) => el("span.mono", f.input) }, { label: "detail", key: "detail" }],
          r.findings.slice().reverse(), { label: "red team findings" }))));
      if (matches.length) {
        const last = matches[matches.length - 1].run, own = matches.filter((m) => m.run === last);
        new PO.LineChart(chart, { time: false, xLabel: "round", yLabel: "inputs / score", height: 200 }).set([
          { label: "red proposed", color: "#868e96", width: 1 }, { label: "broke champion", color: "#e03131" },
          { label: "blue passed", color: "#3b5bdb" }, { label: "blue score", color: "#2f9e44" },
        ], [own.map((m) => m.round), own.map((m) => m.proposed), own.map((m) => m.broke),
          own.map((m) => m.passed), own.map((m) => m.score)]);
      }
      redteam.setAttribute("data-matches", String(matches.length));
    }
    const UNIVERSE_COLORS = ["#3b5bdb", "#2f9e44", "#e03131", "#f08c00", "#7048e8", "#0c8599", "#c2255c", "#5c940d"];

    function universesSection(u) {
      const chart = el("div.chart#chart-universes");
      const section = el("section.card.span-12#universes", el("h2", "Universes side by side"),
        el("p.muted", `each universe starts from the main agent (generation 0, score ${fmt.num(u.main.score, 4)}); run seed ${u.run_seed}`),
        chart,
        PO.table([{ label: "universe", key: "id", num: true }, { label: "operator", key: "operator" },
          { label: "version", render: (x) => el("span.mono", fmt.short(x.version)) },
          { label: "outcome", render: (x) => PO.pill(x.kind) },
          { label: "best per generation", render: (x) => x.scores.map((v) => fmt.num(v, 4)).join(" → ") },
          { label: "winner", render: (x) => (x.version === u.winner ? "winner" : "") }],
        u.universes, { label: "universes side by side" }));
      section.setAttribute("data-universes", String(u.universes.length));
      return [section, () => {
        const gens = Math.max(...u.universes.map((x) => x.scores.length), 1);
        new PO.LineChart(chart, { time: false, xLabel: "generation", yLabel: "best score" }).set(
          u.universes.map((x, i) => ({ label: `${x.id} ${x.operator}`, color: UNIVERSE_COLORS[i % UNIVERSE_COLORS.length] })),
          [Array.from({ length: gens }, (_, g) => g), ...u.universes.map((x) => x.scores)]);
      }];
    }
    PO.clear(detail).appendChild(el("p.empty", "no run selected"));

    function drawList() {
      if (!state.runs.length) {
        PO.clear(list).appendChild(el("p.empty", "no evolution run is watched: `project-o dashboard --run-dir DIR`"));
        return;
      }
      PO.clear(list).appendChild(PO.table([
        { label: "run", render: (r) => el("span.mono", r.id) },
        { label: "started", render: (r) => fmt.datetime(r.started) },
        { label: "generations done", num: true, render: (r) => `${r.generations_done} / ${(r.config.generations ?? "?") + 1}` },
        { label: "population", num: true, render: (r) => r.config.population },
        { label: "seed", render: (r) => el("span.mono", fmt.short(r.seed)) },
        { label: "directory", render: (r) => el("span.mono", r.dir || "") },
      ], state.runs, { label: "evolution runs", onRow: (r) => pick(r.id), selected: (r) => r.id === state.selected }));
    }

    async function pick(id) {
      state.selected = id; drawList();
      const run = await PO.get("runs/" + id);
      draw(run);
    }

    function draw(run) {
      const gens = run.generations;
      const score = el("div.chart#chart-score"), fails = el("div.chart#chart-failures");
      const kinds = Object.keys(KIND_COLORS);
      const [universes, drawUniverses] = run.universes ? universesSection(run.universes) : [null, null];
      PO.clear(detail).append(el("div.grid", universes,
        el("section.card.span-12", el("div.stats",
          PO.stat("run", el("span.mono", run.id)), PO.stat("generations", gens.length),
          PO.stat("evaluations", run.evaluations),
          PO.stat("best score", fmt.num(gens.length ? gens[gens.length - 1].best : null, 4)),
          PO.stat("winner", el("span.mono", fmt.short(run.winner))))),
        el("section.card.span-7", el("h2", "Score per generation"),
          el("p.muted", "best, median, and the population's spread (min, quartiles, max)"), score,
          el("div.scroll", PO.table([
            { label: "gen", key: "generation", num: true },
            { label: "best", num: true, render: (g) => fmt.num(g.best, 4) },
            { label: "median", num: true, render: (g) => fmt.num(g.median, 4) },
            { label: "min", num: true, render: (g) => fmt.num(g.distribution && g.distribution.min, 4) },
            { label: "q1", num: true, render: (g) => fmt.num(g.distribution && g.distribution.q1, 4) },
            { label: "q3", num: true, render: (g) => fmt.num(g.distribution && g.distribution.q3, 4) },
            { label: "max", num: true, render: (g) => fmt.num(g.distribution && g.distribution.max, 4) },
            { label: "evaluated", key: "evaluated", num: true },
            { label: "seconds", num: true, render: (g) => fmt.num(g.seconds, 2) },
          ], gens.slice().reverse(), { label: "score per generation" }))),
        el("section.card.span-5", el("h2", "Failures by kind per generation"), fails,
          PO.table([{ label: "gen", key: "generation", num: true }].concat(kinds.filter((k) => k !== "memory").map((k) => ({
            label: k, num: true, render: (g) => g.failures[k] ?? 0 }))), gens.slice().reverse().slice(0, 12),
          { label: "failures per generation" }),
          el("h3", "all failures, by kind"),
          PO.table([{ label: "kind", render: (r) => PO.pill(r[0]) }, { label: "candidates", key: "1", num: true }],
            Object.entries(run.failure_kinds), { label: "failures by kind" })),
        el("section.card.span-5", el("h2", "Operators"),
          el("p.muted", "success: a child that scores above its best parent"),
          run.operators.length ? PO.bars(run.operators.map((o) => ({ label: o.operator, value: o.success_rate,
            text: `${fmt.pct(o.success_rate)} of ${o.children}` })), { max: 1, label: "operator success rates", labelWidth: 170 }) : null,
          PO.table([{ label: "operator", key: "operator" }, { label: "children", key: "children", num: true },
            { label: "failed", key: "failed", num: true }, { label: "better", key: "better", num: true },
            { label: "success rate", num: true, render: (o) => fmt.pct(o.success_rate) }], run.operators,
          { label: "operator success rates" })),
        el("section.card.span-7", el("h2", "Winner's lineage"),
          PO.table([{ label: "version", render: (v) => el("span.mono", fmt.short(v.id)) },
            { label: "operator", key: "operator" }, { label: "change", render: (v) => el("span.mono", v.change || "") },
            { label: "score", num: true, render: (v) => fmt.num(v.score, 4) }], run.lineage, { label: "winner lineage" }),
          el("h3", "winner against the seed"), PO.diff(run.winner_diff))));
      const xs = gens.map((g) => g.generation), d = (f) => gens.map((g) => (g.distribution ? g.distribution[f] : null));
      new PO.LineChart(score, { time: false, xLabel: "generation", yLabel: "score" }).set([
        { label: "best", color: "#2f9e44" }, { label: "median", color: "#3b5bdb" },
        { label: "q1", color: "#91a7ff", dash: [4, 3], width: 1 }, { label: "q3", color: "#91a7ff", dash: [4, 3], width: 1 },
        { label: "min", color: "#ced4da", width: 1 }, { label: "max", color: "#ced4da", width: 1 },
      ], [xs, gens.map((g) => g.best), gens.map((g) => g.median), d("q1"), d("q3"), d("min"), d("max")]);
      new PO.LineChart(fails, { time: false, xLabel: "generation", yLabel: "candidates", height: 180 }).set(
        kinds.filter((k) => k !== "memory").map((k) => ({ label: k, color: KIND_COLORS[k] })),
        [xs, ...kinds.filter((k) => k !== "memory").map((k) => gens.map((g) => g.failures[k] ?? 0))]);
      if (drawUniverses) drawUniverses();
      detail.setAttribute("data-generations", String(gens.length));
    }

    let redteamBusy = false;
    const off = PO.live.on((message) => {
      if (!message.runs) return;
      state.runs = message.runs; drawList();
      const current = state.runs.find((r) => r.id === state.selected);
      if (!state.selected && state.runs.length) pick(state.runs[0].id);
      else if (current && current.generations_done !== state.done[current.id]) pick(current.id);
      state.runs.forEach((r) => { state.done[r.id] = r.generations_done; });
      if (!redteamBusy) { redteamBusy = true; drawRedTeam().finally(() => { redteamBusy = false; }); }
    });
    if (PO.report) PO.get("runs").then((runs) => { state.runs = runs; drawList(); if (runs.length) pick(runs[0].id); });
    drawList(); drawRedTeam();
    return () => off();
  };
})(window.PO);
