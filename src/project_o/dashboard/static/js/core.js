/* Shared helpers: DOM building, formatting, data access (live server or embedded report). */
"use strict";
window.PO = window.PO || {};
(function (PO) {
  PO.report = window.PROJECT_O_REPORT || null;   // set by `project-o report`: no server

  /** el("div.card#id", {attr: v, onclick: f}, child, "text", [children]) */
  PO.el = function (spec, attrs, ...children) {
    const m = spec.match(/^([a-z0-9]+)([.#][^ ]*)?$/i);
    const node = document.createElement(m[1]);
    (m[2] || "").split(/(?=[.#])/).forEach((part) => {
      if (part.startsWith(".")) node.classList.add(part.slice(1));
      else if (part.startsWith("#")) node.id = part.slice(1);
    });
    if (attrs !== null && attrs !== undefined && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
      children.unshift(attrs); attrs = null;
    }
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    const add = (child) => {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) child.forEach(add);
      else node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    };
    children.forEach(add);
    return node;
  };

  PO.clear = function (node) { while (node.firstChild) node.removeChild(node.firstChild); return node; };

  PO.pill = (text) => PO.el("span.pill." + String(text || "none").replace(/[^a-z_]/gi, "_"), text || "—");

  PO.fmt = {
    num(v, digits = 2) {
      if (v === null || v === undefined || Number.isNaN(v)) return "—";
      if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
      return Number(v).toFixed(digits).replace(/\.?0+$/, "") || "0";
    },
    pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1) + " %"; },
    ms(v) { return v === null || v === undefined ? "—" : PO.fmt.num(v, 2) + " ms"; },
    bytes(v) {
      if (v === null || v === undefined) return "—";
      const mib = v / 1048576;
      return mib >= 1024 ? (mib / 1024).toFixed(2) + " GiB" : mib.toFixed(1) + " MiB";
    },
    time(ts) {
      if (!ts) return "—";
      const d = new Date(ts * 1000);
      return d.toLocaleTimeString("en-GB", { hour12: false }) + "." +
        String(d.getMilliseconds()).padStart(3, "0");
    },
    datetime(ts) { return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "—"; },
    short(id) { return id ? String(id).slice(0, 12) : "—"; },
  };

  /** GET a dashboard API path (relative to /ui/); in a report, the embedded answer. */
  PO.get = async function (path) {
    if (PO.report) {
      const found = PO.report.api[path.split("?")[0]];
      if (found === undefined) throw new Error("not in this report: " + path);
      return found;
    }
    const response = await fetch("api/" + path, { credentials: "same-origin" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  };

  /** POST a state-changing call, with the header only our own pages can send. */
  PO.post = async function (path) {
    const response = await fetch("api/" + path, { method: "POST", credentials: "same-origin",
      headers: { "X-Project-O-UI": "1" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((body.error && body.error.message) || "HTTP " + response.status);
    return body;
  };

  /** The live feed: calls every listener with each message; reconnects on loss. */
  PO.live = {
    listeners: new Set(), last: null, socket: null,
    on(fn) { this.listeners.add(fn); if (this.last) fn(this.last, true); return () => this.listeners.delete(fn); },
    emit(message) {
      if (message.type === "snapshot") this.last = message;
      else if (this.last) this.merge(message);
      this.listeners.forEach((fn) => fn(message, message.type === "snapshot"));
    },
    merge(tick) {   // keep a snapshot-shaped state for views opened later
      const s = this.last;
      ["tree", "vault", "serving", "experiments", "versions", "runs", "events_total"].forEach((k) => {
        if (tick[k] !== undefined) s[k] = tick[k];
      });
      if (tick.events) s.events = s.events.concat(tick.events).slice(-10000);
      if (tick.traffic_point) s.traffic = s.traffic.concat([tick.traffic_point]).slice(-600);
      for (const [id, point] of Object.entries(tick.experiment_points || {})) {
        s.experiment_points[id] = (s.experiment_points[id] || []).concat([point]).slice(-600);
      }
    },
    connect() {
      const conn = document.getElementById("conn");
      if (PO.report) {
        conn.textContent = "report · " + PO.report.title;
        this.emit(PO.report.snapshot);
        return;
      }
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ui/live";
      const socket = new WebSocket(url);
      this.socket = socket;
      socket.onopen = () => { conn.textContent = "live"; conn.className = "conn up"; };
      socket.onmessage = (event) => this.emit(JSON.parse(event.data));
      socket.onclose = () => {
        conn.textContent = "reconnecting…"; conn.className = "conn down";
        setTimeout(() => this.connect(), 1000);
      };
    },
  };
})(window.PO);
