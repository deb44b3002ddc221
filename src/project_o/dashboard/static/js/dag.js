/* The version lineage as a layered DAG in SVG: generations left to right, coloured by status. */
"use strict";
(function (PO) {
  PO.statusColors = {
    serving: "#2f9e44", promoted: "#1c7ed6", active: "#2f9e44", rolled_back: "#e03131",
    rejected: "#c92a2a", shadow: "#7048e8", canary: "#f59f00", candidate: "#adb5bd",
    proposed: "#fab005", retired: "#868e96", good: "#37b24d", aborted: "#e8590c",
  };
  const color = (status) => PO.statusColors[status] || "#868e96";

  /** Layers: a version sits one column right of its deepest parent. */
  PO.layout = function (versions) {
    const byId = new Map(versions.map((v) => [v.id, v]));
    const depth = new Map();
    versions.forEach((v) => {   // oldest first, so parents are placed before children
      const parents = (v.parents || []).filter((p) => depth.has(p));
      depth.set(v.id, parents.length ? 1 + Math.max(...parents.map((p) => depth.get(p))) : 0);
    });
    const columns = [];
    versions.forEach((v) => { (columns[depth.get(v.id)] = columns[depth.get(v.id)] || []).push(v); });
    const row = new Map();
    columns.forEach((column, c) => {
      if (c > 0) {   // order by the parents' rows (barycentre), so edges cross less
        const key = (v) => {
          const rows = (v.parents || []).filter((p) => row.has(p)).map((p) => row.get(p));
          return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 1e9;
        };
        column.sort((a, b) => key(a) - key(b));
      }
      column.forEach((v, i) => row.set(v.id, i));
    });
    return { byId, depth, row, columns };
  };

  /** Draw ``versions`` into ``container``; ``onPick(version)`` on click or Enter. */
  PO.drawDag = function (container, versions, opts) {
    const svgNS = "http://www.w3.org/2000/svg";
    const { byId, depth, row, columns } = PO.layout(versions);
    const labels = versions.length <= 60;
    const dx = labels ? 220 : 46, dy = labels ? 34 : 16, r = labels ? 7 : 5, pad = 20;
    const height = Math.max(...columns.map((c) => c.length), 1) * dy + 2 * pad;
    const width = columns.length * dx + 2 * pad + (labels ? 110 : 0);
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `version lineage: ${versions.length} versions in ${columns.length} generations`);
    const at = (id) => [pad + depth.get(id) * dx, pad + row.get(id) * dy + dy / 2];
    const edges = document.createElementNS(svgNS, "g");
    versions.forEach((v) => (v.parents || []).forEach((p) => {
      if (!byId.has(p)) return;
      const [x1, y1] = at(p), [x2, y2] = at(v.id), mid = (x1 + x2) / 2;
      const path = document.createElementNS(svgNS, "path");
      path.setAttribute("d", `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
      path.setAttribute("class", "edge"); edges.appendChild(path);
    }));
    svg.appendChild(edges);
    versions.forEach((v) => {
      const [x, y] = at(v.id);
      const node = document.createElementNS(svgNS, "circle");
      node.setAttribute("cx", x); node.setAttribute("cy", y);
      node.setAttribute("r", v.serving ? r + 3 : r);
      node.setAttribute("fill", color(v.serving ? "serving" : v.status));
      node.setAttribute("class", "node" + (opts.selected === v.id ? " selected" : ""));
      node.setAttribute("tabindex", "0"); node.setAttribute("data-id", v.id);
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `${v.id} · ${v.status} · ${v.operator}`; node.appendChild(title);
      node.addEventListener("click", () => opts.onPick(v));
      node.addEventListener("keydown", (e) => { if (e.key === "Enter") opts.onPick(v); });
      svg.appendChild(node);
      if (labels) {
        const text = document.createElementNS(svgNS, "text");
        text.setAttribute("x", x + r + 5); text.setAttribute("y", y + 4);
        text.textContent = PO.fmt.short(v.id).slice(0, 8) + " " + (v.operator || "");
        svg.appendChild(text);
      }
    });
    PO.clear(container).appendChild(svg);
  };

  PO.dagLegend = function () {
    return PO.el("div.legend", Object.entries(PO.statusColors).map(([status, c]) => {
      const span = PO.el("span", status.replace("_", " "));
      span.style.setProperty("--c", c);
      return span;
    }));
  };
})(window.PO);
