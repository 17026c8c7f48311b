// The leaderboard page's behaviour: sort, filter, details on demand, the Pareto scatter.
// Data from records is only ever written with textContent or as attribute values.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";

  // ---- tables: a row and its details row move together ----
  function groups(tbody) {
    const out = [];
    for (const tr of Array.from(tbody.rows)) {
      if (tr.classList.contains("details") && out.length) out[out.length - 1].push(tr);
      else out.push([tr]);
    }
    return out;
  }

  function sortKey(td) {
    if (!td) return null;
    if (td.dataset.value !== undefined) return parseFloat(td.dataset.value);
    const text = td.textContent.replace("details", "").trim();
    return text === "-" || text === "" ? null : text.toLowerCase();
  }

  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function sortTable(table, th) {
    const col = Array.from(th.parentNode.children).indexOf(th);
    const direction = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", direction);
    const sign = direction === "ascending" ? 1 : -1;
    const tbody = table.tBodies[0];
    const all = groups(tbody);
    // rows that are no method (the detectable-effect row) and reported numbers stay below
    const ranked = all.filter((g) => g[0].dataset.method !== undefined);
    const rest = all.filter((g) => g[0].dataset.method === undefined);
    ranked.sort((a, b) => {
      const x = sortKey(a[0].cells[col]), y = sortKey(b[0].cells[col]);
      if (x === null || y === null) return (x === null) - (y === null); // missing values last
      return sign * compare(x, y);
    });
    for (const g of ranked.concat(rest)) for (const tr of g) tbody.appendChild(tr);
  }

  document.querySelectorAll("table.board").forEach((table) => {
    table.querySelectorAll("th button.sort").forEach((button) =>
      button.addEventListener("click", () => sortTable(table, button.closest("th"))));
  });

  document.querySelectorAll("button.provenance").forEach((button) =>
    button.addEventListener("click", () => {
      const details = button.closest("tr").nextElementSibling;
      details.hidden = !details.hidden;
      button.setAttribute("aria-expanded", String(!details.hidden));
    }));

  // ---- filters: per section, by method, budget and task ----
  function chosen(section) {
    const form = section.querySelector("form.filters");
    if (!form) return null;
    return {
      methods: new Set(Array.from(form.querySelectorAll("input.method:checked")).map((i) => i.value)),
      budget: form.querySelector("select.budget").value,
      task: form.querySelector("select.task").value,
    };
  }

  function shown(choice, method, budget) {
    return !choice || (choice.methods.has(method) && (!choice.budget || choice.budget === budget));
  }

  function applyFilters(section) {
    const choice = chosen(section);
    section.querySelectorAll("table.board").forEach((table) => {
      for (const g of groups(table.tBodies[0])) {
        const row = g[0];
        if (row.dataset.method === undefined) continue;
        const visible = shown(choice, row.dataset.method, row.dataset.budget);
        row.hidden = !visible;
        if (!visible && g[1]) g[1].hidden = true;
      }
      // one task chosen: its column only, no other task's and no mean over tasks
      Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
        const hide = Boolean(choice && choice.task) && th.dataset.task !== undefined && th.dataset.task !== choice.task;
        th.hidden = hide;
        for (const tr of table.tBodies[0].rows) {
          if (!tr.classList.contains("details") && tr.cells[col]) tr.cells[col].hidden = hide;
        }
      });
    });
    section.querySelectorAll("div.scatter").forEach((div) => drawScatter(div, choice));
  }

  document.querySelectorAll("section.suite").forEach((section) => {
    const form = section.querySelector("form.filters");
    if (!form) return;
    form.addEventListener("change", () => applyFilters(section));
    form.addEventListener("submit", (event) => event.preventDefault());
  });

  // ---- the Pareto scatter ----
  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function scale(values, lo, hi, log) {
    const f = log ? Math.log10 : (v) => v;
    let min = Math.min(...values.map(f)), max = Math.max(...values.map(f));
    if (min === max) { min -= 1; max += 1; }
    const pad = (max - min) * 0.08;
    min -= pad; max += pad;
    const map = (v) => lo + (f(v) - min) / (max - min) * (hi - lo);
    map.ticks = () => Array.from({ length: 5 }, (_, i) => {
      const t = min + (max - min) * (i + 0.5) / 5;
      return log ? Math.pow(10, t) : t;
    });
    return map;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return (v / 1e3).toPrecision(3) + "k";
    return Number(v.toPrecision(3)).toString();
  }

  function front(points, lowerX, higherY) {
    const sorted = points.slice().sort((a, b) => (lowerX ? a.xv - b.xv : b.xv - a.xv));
    const out = [];
    let best = null;
    for (const p of sorted) {
      if (best === null || (higherY ? p.y > best : p.y < best)) { out.push(p); best = p.y; }
    }
    return out;
  }

  function drawScatter(div, choice) {
    const data = JSON.parse(div.querySelector("script.scatter-data").textContent);
    const axis = div.querySelector("select.axis").value;
    const svg = div.querySelector("svg.plot");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const points = data.points.filter((p) => shown(choice, p.method, p.budget) && p.x[axis] > 0)
      .map((p) => Object.assign({ xv: p.x[axis] }, p));
    svg.dataset.axis = axis;
    if (!points.length) return;
    const [left, right, top, bottom] = [70, 700, 20, 370];
    const xs = points.map((p) => p.xv);
    const log = Math.max(...xs) / Math.min(...xs) > 20;
    const ys = points.flatMap((p) => [p.y, p.low ?? p.y, p.high ?? p.y]);
    // a lower-is-better score (an error) spans decades: log-scaled, as in the PNG figures
    const x = scale(xs, left, right, log), y = scale(ys, bottom, top, !data.y_higher && Math.min(...ys) > 0);
    el("line", { x1: left, y1: bottom, x2: right, y2: bottom, class: "axis" }, svg);
    el("line", { x1: left, y1: bottom, x2: left, y2: top, class: "axis" }, svg);
    for (const t of x.ticks()) el("text", { x: x(t), y: bottom + 16, "text-anchor": "middle", class: "tick" }, svg).textContent = fmt(t);
    for (const t of y.ticks()) el("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end", class: "tick" }, svg).textContent = fmt(t * data.scale);
    const lowerX = data.axes[axis];
    el("text", { x: (left + right) / 2, y: 405, "text-anchor": "middle", class: "label" }, svg).textContent =
      axis + (log ? " (log scale)" : "") + (lowerX ? ", lower is better" : ", higher is better");
    el("text", { x: 14, y: (top + bottom) / 2, transform: `rotate(-90 14 ${(top + bottom) / 2})`, "text-anchor": "middle", class: "label" }, svg).textContent = data.y_label;
    const best = front(points, lowerX, data.y_higher);
    el("polyline", { class: "front", points: best.map((p) => `${x(p.xv)},${y(p.y)}`).join(" ") }, svg);
    for (const p of points) {
      if (p.low !== null && p.high !== null) {
        el("line", { class: "error", x1: x(p.xv), x2: x(p.xv), y1: y(p.low), y2: y(p.high), stroke: p.color }, svg);
      }
      const dot = el("circle", { class: "point", cx: x(p.xv), cy: y(p.y), r: 5, fill: p.color, "data-method": p.method, "data-budget": p.budget, "data-x": p.xv, "data-y": p.y, "data-front": best.includes(p) }, svg);
      el("title", {}, dot).textContent = `${p.label}: ${fmt(p.y * data.scale)} at ${fmt(p.xv)} ${axis}`;
      el("text", { x: x(p.xv) + 7, y: y(p.y) - 6, class: "name" }, svg).textContent = p.label;
    }
  }

  document.querySelectorAll("div.scatter").forEach((div) => {
    const section = div.closest("section.suite");
    div.querySelector("select.axis").addEventListener("change", () => drawScatter(div, section ? chosen(section) : null));
    drawScatter(div, section ? chosen(section) : null);
  });
})();
