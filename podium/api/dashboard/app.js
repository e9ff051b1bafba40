// The dashboard: reads /admin/stats/... and draws it. No data lives in this file.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { by: "worker", baseline: null, key: sessionStorage.getItem("podium-admin-key") };
  const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

  const usd = (v) => {
    if (v === null || v === undefined) return "–";
    if (Math.abs(v) >= 100) return "$" + v.toFixed(0);
    if (Math.abs(v) >= 1) return "$" + v.toFixed(2);
    if (v === 0) return "$0";
    return "$" + v.toPrecision(2);
  };
  const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms");
  const int = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"));
  const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(0) + "%");
  const text = (v) => (v === null || v === undefined ? "" : String(v));
  // A step's input tokens the upstream read from or wrote to its prompt cache (part of them).
  const cacheNote = (s) => {
    const parts = [];
    if (s.cache_read_tokens) parts.push(`${int(s.cache_read_tokens)} cached`);
    if (s.cache_write_tokens) parts.push(`${int(s.cache_write_tokens)} written`);
    return parts.length ? ` (${parts.join(", ")})` : "";
  };

  function timeLabel(seconds) {
    const span = RANGES[$("range").value];
    const d = new Date(seconds * 1000);
    return span > 2 * 86400 ? `${d.getMonth() + 1}/${d.getDate()}` : d.toTimeString().slice(0, 5);
  }

  async function get(path, params) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    const headers = state.key ? { Authorization: "Bearer " + state.key } : {};
    const response = await fetch(url, { headers });
    if (response.status === 401) {
      $("login").hidden = false;
      throw new Error("the admin key is needed");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    return body;
  }

  function range() {
    const until = Date.now() / 1000;
    return { since: (until - RANGES[$("range").value]).toFixed(0), until: until.toFixed(0) };
  }

  function tile(label, value, title) {
    return `<div class="tile" title="${title || ""}"><div class="label">${label}</div><div class="value">${value}</div></div>`;
  }

  async function loadMeta() {
    const meta = await get("/admin/stats/meta");
    const select = $("baseline");
    select.innerHTML = "";
    for (const worker of meta.workers) {
      const option = document.createElement("option");
      option.value = worker.name;
      option.textContent = `${worker.name} ($${worker.price.input}/$${worker.price.output} per 1M)`;
      select.appendChild(option);
    }
    state.baseline = state.baseline || meta.baseline;
    select.value = state.baseline;
  }

  async function loadOverview(r) {
    const [overview, savings, latency] = await Promise.all([
      get("/admin/stats/overview", r),
      get("/admin/stats/savings", { ...r, baseline: state.baseline }),
      get("/admin/stats/latency", r),
    ]);
    const o = overview.data, s = savings.data;
    const all = latency.data.reduce((acc, row) => acc + row.requests, 0);
    const p50 = all ? latency.data.reduce((acc, row) => acc + (row.p50_ms || 0) * row.requests, 0) / all : null;
    $("tiles").innerHTML = [
      tile("Requests", int(o.requests)),
      tile("Spend", usd(o.cost_usd)),
      tile("Saved vs " + s.baseline, usd(s.saved_usd) + (s.saved_ratio !== null ? ` (${pct(s.saved_ratio)})` : ""), "what the same tokens would have cost on the baseline worker"),
      tile("Error rate", o.requests ? pct(o.errors / o.requests) : "–"),
      tile("Latency p50", ms(p50), "request-weighted across workers"),
      tile("Quality", o.avg_quality === null ? "–" : pct(o.avg_quality), `${int(o.signals)} signals`),
    ].join("");
    $("note").textContent = overview.window.clamped ? "The range was shortened to the longest allowed." : "";
    Charts.stackedBars(
      $("savings-chart"),
      [
        { key: "actual", points: s.points.map((p) => ({ t: p.t, value: p.actual_usd })) },
        { key: "saved vs " + s.baseline, points: s.points.map((p) => ({ t: p.t, value: Math.max(0, p.baseline_usd - p.actual_usd) })) },
      ],
      { format: usd, time: timeLabel, width: 440, height: 220 }
    );
    Charts.groupedBars(
      $("latency-chart"),
      latency.data.map((row) => ({ label: row.worker, values: [row.p50_ms, row.p90_ms, row.p99_ms] })),
      ["p50", "p90", "p99"],
      { format: ms }
    );
  }

  async function loadSpend(r) {
    const spend = await get("/admin/stats/spend", { ...r, by: state.by });
    Charts.stackedBars(
      $("spend-chart"),
      spend.data.series.map((s) => ({ key: s.key, points: s.points.map((p) => ({ t: p.t, value: p.cost_usd })) })),
      { format: usd, time: timeLabel }
    );
  }

  async function loadMix(r) {
    const [routing, quality] = await Promise.all([get("/admin/stats/routing", r), get("/admin/stats/quality", r)]);
    const total = routing.data.reduce((a, row) => a + row.requests, 0);
    Charts.hbars(
      $("routing-chart"),
      routing.data.slice(0, 12).map((row) => ({ label: `${row.route} → ${row.worker}`, value: row.requests, text: `${int(row.requests)} (${pct(row.requests / total)})` }))
    );
    const merged = {};
    for (const row of quality.data) {
      const key = `${row.worker} · ${row.route}`;
      const m = (merged[key] = merged[key] || { n: 0, sum: 0 });
      m.n += row.signals;
      m.sum += row.avg_score * row.signals;
    }
    Charts.hbars(
      $("quality-chart"),
      Object.entries(merged)
        .sort((a, b) => b[1].n - a[1].n)
        .slice(0, 12)
        .map(([label, m]) => ({ label, value: m.sum / m.n, text: `${pct(m.sum / m.n)} of ${int(m.n)}`, color: m.sum / m.n >= 0.7 ? "#2e9e6a" : m.sum / m.n >= 0.4 ? "#c9a227" : "#c2417a" })),
      { max: 1, empty: "No feedback in this range yet: POST /v1/feedback." }
    );
  }

  async function loadTraces(r) {
    const traces = await get("/admin/stats/traces", { ...r, limit: 50 });
    const body = $("traces").querySelector("tbody");
    body.innerHTML = "";
    for (const t of traces.data) {
      const row = document.createElement("tr");
      row.dataset.trace = t.trace_id;
      const cells = [
        new Date(t.created_at * 1000).toLocaleTimeString(), t.caller, t.route, text(t.worker), text(t.contract),
        t.status, `${int(t.input_tokens)} / ${int(t.output_tokens)}`, usd(t.cost_usd), ms(t.latency_ms),
      ];
      cells.forEach((value, i) => {
        const cell = document.createElement("td");
        cell.textContent = value;
        if (i >= 6) cell.className = "num";
        if (i === 5) cell.className = "status-" + t.status;
        row.appendChild(cell);
      });
      row.addEventListener("click", () => openTrace(t.trace_id));
      body.appendChild(row);
    }
    if (!traces.data.length) body.innerHTML = '<tr><td colspan="9" class="empty">No traces in this range.</td></tr>';
  }

  function table(headers, rows, numeric) {
    const head = headers.map((h, i) => `<th class="${numeric.includes(i) ? "num" : ""}">${h}</th>`).join("");
    const tableEl = document.createElement("table");
    tableEl.innerHTML = `<thead><tr>${head}</tr></thead><tbody></tbody>`;
    for (const row of rows) {
      const tr = document.createElement("tr");
      row.forEach((value, i) => {
        const td = document.createElement("td");
        td.textContent = value;
        if (numeric.includes(i)) td.className = "num";
        tr.appendChild(td);
      });
      tableEl.tBodies[0].appendChild(tr);
    }
    return tableEl;
  }

  async function openTrace(id) {
    const { trace, signals } = await get("/admin/stats/traces/" + encodeURIComponent(id));
    const detail = $("detail");
    detail.hidden = false;
    detail.innerHTML = `<h2>Trace ${trace.trace_id}</h2>`;
    const facts = [
      ["when", new Date(trace.created_at * 1000).toLocaleString()], ["caller", trace.caller],
      ["model asked", trace.requested_model], ["route", trace.route], ["router", text(trace.router)],
      ["rule", text(trace.rule)], ["reason", text(trace.reason)], ["worker", text(trace.worker)],
      ["workflow", text(trace.workflow)],
      ["status", `${trace.status} (${trace.http_status})${trace.error ? ": " + trace.error : ""}`],
      ["data class", trace.data_class], ["contract", text(trace.contract)],
      ["policy actions", trace.policy_actions.join(", ")],
      ["cost", usd(trace.cost_usd)], ["latency", ms(trace.latency_ms)],
    ];
    const dl = document.createElement("dl");
    dl.className = "kv";
    for (const [k, v] of facts) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v || "–";
      dl.append(dt, dd);
    }
    detail.appendChild(dl);
    const h3 = (t) => Object.assign(document.createElement("h3"), { textContent: t });
    detail.appendChild(h3("Decision: candidates"));
    detail.appendChild(table(["worker", "score", "predicted quality", "predicted cost"],
      trace.candidates.map((c) => [c.worker + (c.worker === trace.worker ? " ✓" : ""), c.score.toFixed(3), c.quality === null ? "–" : pct(c.quality), c.cost_usd === null ? "–" : usd(c.cost_usd)]), [1, 2, 3]));
    detail.appendChild(h3("Workflow steps"));
    detail.appendChild(table(["step", "role", "worker", "outcome", "tokens in", "tokens out", "cost", "latency"],
      trace.steps.map((s) => [s.step + 1, s.role, s.worker, s.status + (s.error ? ": " + s.error : ""), int(s.input_tokens) + cacheNote(s), int(s.output_tokens), usd(s.cost_usd), ms(s.latency_ms) + (s.queued_ms ? ` (after ${ms(s.queued_ms)} waiting for room)` : "")]), [4, 5, 6, 7]));
    detail.appendChild(h3("Quality signals"));
    detail.appendChild(signals.length
      ? table(["source", "name", "value", "score", "comment"], signals.map((s) => [s.source, s.name, s.label ?? text(s.value), s.score === null ? "–" : pct(s.score), text(s.comment)]), [3])
      : Object.assign(document.createElement("div"), { className: "empty", textContent: "No feedback for this trace." }));
    if (trace.prompt || trace.answer) {
      detail.appendChild(h3("Content"));
      const pre = document.createElement("pre");
      pre.textContent = `${trace.prompt || ""}\n\n→ ${trace.answer || ""}`;
      detail.appendChild(pre);
    }
    detail.scrollIntoView({ behavior: "instant", block: "start" });
  }

  // The pool as it stands (not the range): state, load against its limits, the calls turned away.
  async function loadWorkers() {
    const { workers } = await get("/admin/workers");
    const limits = (l) => [
      l.concurrency ? `${l.concurrency} at once` : "",
      l.adaptive ? `${l.adaptive.min} to ${l.adaptive.max} at once, learned` : "",
      l.rpm ? `${int(l.rpm)} rpm` : "",
      l.tpm ? `${int(l.tpm)} tpm` : "",
    ].filter(Boolean).join(", ") || "none";
    const rows = workers.map((w) => {
      const h = w.health;
      let state = h.draining ? "draining" : "serving";
      if (h.resting_seconds) state += `, resting ${h.resting_seconds} s (upstream 429)`;
      const load = h.slots ? `${h.in_flight} / ${h.slots}` + (h.background_in_use ? ` (${h.background_in_use} background)` : "") : String(h.in_flight);
      const q = h.vendor_quota;
      const vendor = q ? `; the vendor says ${int(q.requests_remaining)} requests, ${int(q.tokens_remaining)} tokens left` : "";
      return [w.name, w.role === "answer" ? w.provider : `${w.provider} (${w.role})`, state, h.circuit, load, limits(w.limits) + vendor, `${int(h.waited)} / ${int(h.turned_away)}`];
    });
    const holder = $("workers");
    holder.innerHTML = "";
    holder.appendChild(table(["worker", "provider", "state", "circuit", "in flight", "limits", "waited / turned away"], rows, [4, 6]));
  }

  async function refresh() {
    const r = range();
    try {
      if (!state.baseline) await loadMeta();
      await Promise.all([loadOverview(r), loadSpend(r), loadMix(r), loadTraces(r), loadWorkers()]);
      $("login").hidden = true;
    } catch (error) {
      $("note").textContent = error.message;
    }
  }

  $("range").addEventListener("change", refresh);
  $("baseline").addEventListener("change", (event) => { state.baseline = event.target.value; refresh(); });
  $("spend-tabs").addEventListener("click", (event) => {
    const by = event.target.dataset && event.target.dataset.by;
    if (!by) return;
    state.by = by;
    for (const b of $("spend-tabs").children) b.classList.toggle("on", b.dataset.by === by);
    loadSpend(range()).catch((error) => { $("note").textContent = error.message; });
  });
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value;
    sessionStorage.setItem("podium-admin-key", state.key);
    refresh();
  });
  refresh();
})();
