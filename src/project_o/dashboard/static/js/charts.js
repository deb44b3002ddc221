/* Tables, line charts (uPlot) and bar charts (SVG). Every chart has its figures as text too. */
"use strict";
(function (PO) {
  const el = PO.el;
  PO.palette = ["#3b5bdb", "#f08c00", "#2f9e44", "#e03131", "#7048e8", "#0c8599", "#d6336c",
    "#5c940d", "#862e9c", "#495057"];

  /** A table; columns: [{key, label, num, render(row)}]; opts: {caption, onRow, selected, limit}. */
  PO.table = function (columns, rows, opts = {}) {
    const shown = opts.limit ? rows.slice(0, opts.limit) : rows;
    const head = el("tr", columns.map((c) => el("th" + (c.num ? ".num" : ""), { scope: "col" }, c.label)));
    const body = shown.map((row) => {
      const tr = el("tr", columns.map((c) => {
        const value = c.render ? c.render(row) : row[c.key];
        return el("td" + (c.num ? ".num" : "") + (c.mono ? ".mono" : ""), value === undefined || value === null ? "—" : value);
      }));
      if (opts.rowClass) opts.rowClass(row).forEach((cls) => cls && tr.classList.add(cls));
      if (opts.onRow) {
        tr.classList.add("clickable"); tr.tabIndex = 0;
        tr.addEventListener("click", () => opts.onRow(row));
        tr.addEventListener("keydown", (e) => { if (e.key === "Enter") opts.onRow(row); });
      }
      if (opts.selected && opts.selected(row)) tr.classList.add("selected");
      return tr;
    });
    return el("table", opts.label ? { "aria-label": opts.label } : null,
      opts.caption ? el("caption.sr-only", opts.caption) : null, el("thead", head), el("tbody", body));
  };

  /** A line chart over uPlot; series: [{label, color, dash}], data: [xs, ys1, ys2, ...]. */
  PO.LineChart = class {
    constructor(container, opts) {
      this.container = container; this.opts = opts; this.plot = null; this.key = "";
      this.observer = new ResizeObserver(() => this.resize());
      this.observer.observe(container);
    }
    set(series, data) {
      const key = series.map((s) => s.label).join("|");
      if (!window.uPlot) return;
      if (key !== this.key || !this.plot) {
        if (this.plot) this.plot.destroy();
        PO.clear(this.container);
        this.key = key;
        this.plot = new uPlot(this.options(series), data, this.container);
      } else {
        this.plot.setData(data);
      }
    }
    options(series) {
      const o = this.opts;
      return {
        width: Math.max(200, this.container.clientWidth || 400), height: o.height || 220,
        // time: at least the last 20 s, so one point still gets a sensible axis
        scales: { x: o.time === false ? { time: false } : { time: true, range: (u, lo, hi) => [Math.min(lo, hi - 20), hi + 1] },
          y: o.yRange ? { range: o.yRange } : {} },
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        axes: [Object.assign({ stroke: "#667085", grid: { stroke: "#eef0f4" } },
          o.time === false ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] } : {}),
          { stroke: "#667085", grid: { stroke: "#eef0f4" }, label: o.yLabel || "", size: 60 }],
        series: [{ label: o.xLabel || "time" }].concat(series.map((s, i) => ({
          label: s.label, stroke: s.color || PO.palette[i % PO.palette.length], width: s.width || 2,
          dash: s.dash, points: { show: s.points !== undefined ? s.points : o.time === false },
          spanGaps: true, fill: s.fill,
        }))),
      };
    }
    resize() {
      if (this.plot && this.container.clientWidth) {
        this.plot.setSize({ width: this.container.clientWidth, height: this.opts.height || 220 });
      }
    }
  };

  /** Horizontal SVG bars with their value written beside each: rows [{label, value, text}]. */
  PO.bars = function (rows, opts = {}) {
    const width = opts.width || 420, row = 24, labelW = opts.labelWidth || 150;
    const max = Math.max(opts.max || 0, ...rows.map((r) => r.value), 1e-9);
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${rows.length * row + 4}`);
    svg.setAttribute("width", "100%"); svg.setAttribute("class", "bars");
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", opts.label || "bar chart");
    rows.forEach((r, i) => {
      const y = i * row + 4, w = Math.max(1, (width - labelW - 70) * r.value / max);
      const t = document.createElementNS(svgNS, "text");
      t.setAttribute("x", 0); t.setAttribute("y", y + 14); t.textContent = r.label; svg.appendChild(t);
      const b = document.createElementNS(svgNS, "rect");
      b.setAttribute("x", labelW); b.setAttribute("y", y + 3); b.setAttribute("height", row - 10);
      b.setAttribute("width", w); b.setAttribute("rx", 3); b.setAttribute("class", "bar");
      if (r.color) b.setAttribute("fill", r.color);
      svg.appendChild(b);
      const v = document.createElementNS(svgNS, "text");
      v.setAttribute("x", labelW + w + 6); v.setAttribute("y", y + 14); v.textContent = r.text;
      svg.appendChild(v);
    });
    return svg;
  };

  /** A unified diff as coloured lines. */
  PO.diff = function (text) {
    if (!text) return el("p.muted", "no differences");
    return el("pre.diff", text.split("\n").map((line) => {
      const cls = line.startsWith("@@") ? ".hunk" : line.startsWith("+") && !line.startsWith("+++") ? ".add"
        : line.startsWith("-") && !line.startsWith("---") ? ".del" : "";
      return cls ? el("span" + cls, line + "\n") : line + "\n";
    }));
  };

  PO.stat = (label, value) => el("div.stat", el("div.v", value), el("div.k", label));
})(window.PO);
