// Small hand-written SVG charts for the dashboard: stacked bars over time and horizontal bars.
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#3b6fd8", "#e07b39", "#2e9e6a", "#c2417a", "#8a63d2", "#c9a227", "#3aa6b9", "#7a7f87", "#b0b5bd"];

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(width, height) {
    return el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function legend(container, keys) {
    const box = document.createElement("div");
    box.className = "legend";
    keys.forEach((key, i) => {
      const item = document.createElement("span");
      item.innerHTML = `<i style="background:${PALETTE[i % PALETTE.length]}"></i>`;
      item.appendChild(document.createTextNode(key));
      box.appendChild(item);
    });
    container.appendChild(box);
  }

  function empty(container, message) {
    container.innerHTML = `<div class="empty">${message || "No data in this range yet."}</div>`;
  }

  // series: [{key, points: [{t, value}]}]; one stacked bar per time bucket.
  function stackedBars(container, series, opts) {
    container.innerHTML = "";
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p.t)))].sort((a, b) => a - b);
    if (!times.length) return empty(container);
    const W = opts.width || 900, H = opts.height || 260, left = 64, right = 12, top = 12, bottom = 28;
    const totals = times.map((t) => series.reduce((sum, s) => sum + (s.points.find((p) => p.t === t)?.value || 0), 0));
    const max = niceMax(Math.max(...totals));
    const chart = svg(W, H);
    const plotW = W - left - right, plotH = H - top - bottom;
    for (let i = 0; i <= 5; i++) {
      const y = top + plotH - (plotH * i) / 5;
      chart.appendChild(el("line", { x1: left, x2: W - right, y1: y, y2: y, class: "axis" }));
      chart.appendChild(el("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "muted" }, opts.format((max * i) / 5)));
    }
    const slot = plotW / times.length;
    const barW = Math.max(2, Math.min(40, slot * 0.8));
    times.forEach((t, i) => {
      let y = top + plotH;
      series.forEach((s, k) => {
        const value = s.points.find((p) => p.t === t)?.value || 0;
        if (!value) return;
        const h = (plotH * value) / max;
        y -= h;
        const rect = el("rect", { x: left + i * slot + (slot - barW) / 2, y, width: barW, height: Math.max(h, 0.5), fill: PALETTE[k % PALETTE.length], "data-key": s.key });
        rect.appendChild(el("title", {}, `${s.key}: ${opts.format(value)} at ${new Date(t * 1000).toLocaleString()}`));
        chart.appendChild(rect);
      });
    });
    const labels = Math.min(6, times.length);
    for (let j = 0; j < labels; j++) {
      const i = Math.round((j * (times.length - 1)) / Math.max(1, labels - 1));
      chart.appendChild(el("text", { x: left + i * slot + slot / 2, y: H - 8, "text-anchor": "middle", class: "muted" }, opts.time(times[i])));
    }
    container.appendChild(chart);
    legend(container, series.map((s) => `${s.key} (${opts.format(s.points.reduce((a, p) => a + p.value, 0))})`));
  }

  // rows: [{label, value, text, color?}] as horizontal bars, largest first.
  function hbars(container, rows, opts) {
    container.innerHTML = "";
    if (!rows.length) return empty(container, opts && opts.empty);
    const W = 440, rowH = 24, labelW = 170, valueW = 110, top = 4;
    const H = top * 2 + rows.length * rowH;
    const max = opts && opts.max ? opts.max : Math.max(...rows.map((r) => r.value)) || 1;
    const chart = svg(W, H);
    rows.forEach((row, i) => {
      const y = top + i * rowH;
      chart.appendChild(el("text", { x: labelW - 6, y: y + 15, "text-anchor": "end", class: "bar-label" }, row.label));
      const w = Math.max(1, ((W - labelW - valueW) * row.value) / max);
      chart.appendChild(el("rect", { x: labelW, y: y + 4, width: w, height: rowH - 8, rx: 2, fill: row.color || PALETTE[i % PALETTE.length] }));
      chart.appendChild(el("text", { x: labelW + w + 6, y: y + 15, class: "bar-value" }, row.text));
    });
    container.appendChild(chart);
  }

  // groups: [{label, values: [number|null]}], names: the series per group (p50, p90, p99).
  function groupedBars(container, groups, names, opts) {
    container.innerHTML = "";
    if (!groups.length) return empty(container);
    const W = 440, rowH = 18 * names.length + 10, labelW = 120, valueW = 110;
    const H = groups.length * rowH + 6;
    const max = Math.max(...groups.flatMap((g) => g.values.filter((v) => v !== null))) || 1;
    const chart = svg(W, H);
    groups.forEach((group, i) => {
      const y0 = i * rowH + 4;
      chart.appendChild(el("text", { x: labelW - 6, y: y0 + (rowH - 10) / 2 + 4, "text-anchor": "end" }, group.label));
      group.values.forEach((value, k) => {
        if (value === null) return;
        const y = y0 + k * 18;
        const w = Math.max(1, ((W - labelW - valueW) * value) / max);
        chart.appendChild(el("rect", { x: labelW, y, width: w, height: 14, rx: 2, fill: PALETTE[k % PALETTE.length] }));
        chart.appendChild(el("text", { x: labelW + w + 6, y: y + 11 }, `${names[k]} ${opts.format(value)}`));
      });
    });
    container.appendChild(chart);
  }

  return { stackedBars, hbars, groupedBars, empty, PALETTE };
})();
