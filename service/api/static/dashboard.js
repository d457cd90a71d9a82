// sru-hpo dashboard: plain JavaScript over the public REST API, charts by plotly.js (served
// from the plotly wheel, no CDN). Views by query string: / (studies), ?study=ID, ?view=compare
// [&ids=a,b], ?view=comparisons, ?comparison=ID, ?view=workers. Every piece of text from the API is inserted as text, never HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = $("#main");
const state = { timer: null, curves: new Map(), cursor: null, sid: null, sort: null };
const ACTIVE = new Set(["queued", "running", "retraining"]);
const PLOT = { displaylogo: false, responsive: true };
// t: 40 keeps plotly's toolbar (top right, about 30 px) above the plotting area and its titles
const LAYOUT = { margin: { l: 56, r: 16, t: 40, b: 44 }, font: { size: 12 },
                 legend: { orientation: "h", y: -0.25 } };
const RIGHT_AXIS = { l: 56, r: 64, t: 40, b: 44 }; // room for a right-hand axis and its title
// an epoch axis: whole numbers only, about ten ticks, every epoch from 1 shown even for 3 epochs
const epochAxis = (maxEpoch, title = "epoch") => {
  const top = Math.max(1, maxEpoch || 1);
  return { title: { text: title }, tickformat: "d", tickmode: "linear", tick0: 0,
           dtick: Math.max(1, Math.ceil(top / 10)), range: [top > 1 ? 0.8 : 0.5, top + (top > 1 ? 0.2 : 0.5)] };
};
// an accuracy axis: never beyond [0, 1], a little room around the data
function accAxis(title, values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x));
  const lo = v.length ? Math.min(...v) : 0, hi = v.length ? Math.max(...v) : 1;
  const pad = Math.max(0.01, (hi - lo) * 0.08);
  return { title: { text: title }, range: [Math.max(0, lo - pad), Math.min(1, hi + pad)] };
}
// markers where a curve has few points: a 1-epoch trial is otherwise not drawn at all
const modeFor = (n) => (n <= 5 ? "lines+markers" : "lines");

// Plotly's "responsive" follows the window only; a card that narrows when a scrollbar appears
// (or the layout reflows) would leave its chart wider than the card. Follow each chart's box.
const resizer = new ResizeObserver((entries) => {
  for (const e of entries) if (e.target.data) Plotly.Plots.resize(e.target);
});
function plot(target, traces, layout) {
  const node = typeof target === "string" ? document.getElementById(target) : target;
  resizer.observe(node);
  return Plotly.react(node, traces, layout, PLOT);
}
// replaceChildren without the text "null" for the parts that are absent
const show = (node, ...parts) => node.replaceChildren(...parts.flat().filter((p) => p !== null && p !== undefined));

// -- plumbing ----------------------------------------------------------------------------------
function token() { return sessionStorage.getItem("sru-hpo-token") || ""; }

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (opts.method && opts.method !== "GET") headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...opts, headers });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = (v, d = 4) => (v === null || v === undefined ? "–"
  : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d)) : String(v));
const badge = (s) => el("span", { class: `badge ${s || ""}` }, s || "–");
const link = (href, text) => el("a", { href }, text);

function schedule(fn, ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(fn, ms);
}

function fail(err) {
  show(main, el("div", { class: "error-box" }, String(err.message || err)));
}

// A sortable table: columns [{key, label, num, render}], rows of objects.
function table(columns, rows, { onRow, sortKey = null, desc = true, id } = {}) {
  let key = sortKey, descending = desc;
  const wrap = el("div", { class: "table-wrap" });
  const draw = () => {
    const sorted = [...rows];
    if (key) {
      sorted.sort((a, b) => {
        const x = a[key], y = b[key];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (descending ? -1 : 1);
      });
    }
    const head = el("tr", {}, columns.map((c) => el("th", {
      class: c.key === key ? `sorted ${descending ? "" : "asc"}` : "",
      onclick: () => { descending = c.key === key ? !descending : true; key = c.key; draw(); },
    }, c.label)));
    const body = sorted.map((r) => el("tr", onRow ? { class: "clickable", onclick: () => onRow(r) } : {},
      columns.map((c) => el("td", { class: c.num ? "num" : "" },
        c.render ? c.render(r) : fmt(r[c.key])))));
    wrap.replaceChildren(el("table", id ? { id } : {}, el("thead", {}, head), el("tbody", {}, body)));
  };
  draw();
  return wrap;
}

// -- studies ------------------------------------------------------------------------------------
async function viewStudies() {
  const params = new URLSearchParams(location.search);
  const { studies } = await api("/studies?limit=1000");
  const pick = (name) => params.get(name) || "";
  const filters = el("div", { class: "filters" },
    ...["state", "model", "dataset"].map((name) => {
      const values = [...new Set(studies.map((s) => s[name]))].sort();
      return el("label", {}, `${name} `, el("select", {
        onchange: (e) => { params.set(name, e.target.value); if (!e.target.value) params.delete(name);
                           history.replaceState(null, "", `/?${params}`); render(); },
      }, el("option", { value: "" }, "all"), values.map((v) => {
        const o = el("option", { value: v }, v); if (v === pick(name)) o.selected = true; return o;
      })));
    }),
    el("button", { onclick: compareSelected }, "compare selected"));
  const shown = studies.filter((s) => ["state", "model", "dataset"].every((n) => !pick(n) || s[n] === pick(n)));
  const rows = shown.map((s) => ({ ...s, ...s.counts, bestv: s.best ? s.best.best_val_acc : null }));
  const cols = [
    { key: "sel", label: "", render: (s) => el("input", { type: "checkbox", class: "pick", value: s.id }) },
    { key: "id", label: "id", render: (s) => link(`/?study=${encodeURIComponent(s.id)}`, s.id) },
    { key: "name", label: "name" }, { key: "model", label: "model" },
    { key: "dataset", label: "dataset" },
    { key: "state", label: "state", render: (s) => badge(s.state) },
    { key: "finished", label: "finished / n", num: true, render: (s) => s.budget_epochs != null
      ? `${s.finished} · ${s.epochs_spent}/${Math.round(s.budget_epochs)} ep` : `${s.finished} / ${s.n_trials}` },
    { key: "running", label: "running", num: true }, { key: "pruned", label: "pruned", num: true },
    { key: "diverged", label: "diverged", num: true }, { key: "error", label: "error", num: true },
    { key: "bestv", label: "best val acc", num: true },
    { key: "test_acc", label: "test acc", num: true },
    { key: "elapsed", label: "elapsed s", num: true, render: (s) => fmt(Math.round(s.elapsed)) },
    { key: "actions", label: "", render: studyActions },
  ];
  show(main, el("h1", {}, "Studies"), filters,
    table(cols, rows, { sortKey: "created", id: "studies" }),
    shown.length ? null : el("p", { class: "muted" }, "no studies yet: POST /studies or sru-hpo submit"));
  if (studies.some((s) => ACTIVE.has(s.state))) schedule(render, 3000);
}

// Shown whether or not a token is set: a server without one takes the write as it is; one that
// wants a token answers 401, and the message says where to type it.
function studyActions(s) {
  const act = async (what) => {
    if (what === "delete" && !confirm(`delete study ${s.id} and everything it made?`)) return;
    try {
      await api(what === "cancel" ? `/studies/${s.id}/cancel` : `/studies/${s.id}`,
                { method: what === "cancel" ? "POST" : "DELETE", body: what === "cancel" ? "{}" : undefined });
      render();
    } catch (e) {
      alert(e.message.startsWith("401") ? `${e.message}\nthis server needs a token: type it in the box at the top` : e.message);
    }
  };
  return el("span", {}, ACTIVE.has(s.state) ? el("button", { onclick: () => act("cancel") }, "cancel") : null,
    " ", el("button", { class: "danger", onclick: () => act("delete") }, "delete"));
}

function compareSelected() {
  const ids = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
  location.href = `/?view=compare&ids=${ids.map(encodeURIComponent).join(",")}`;
}

// -- one study ----------------------------------------------------------------------------------
async function allTrials(sid) {
  const out = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api(`/studies/${sid}/trials?limit=1000&offset=${offset}`);
    out.push(...page.trials);
    if (page.trials.length < 1000) return out;
  }
}

async function fetchCurves(sid) {
  // incremental: only curves changed since the last cursor come back
  if (state.sid !== sid) { state.sid = sid; state.curves = new Map(); state.cursor = null; }
  for (;;) {
    const q = state.cursor === null ? "limit=1000" : `limit=1000&updated_after=${state.cursor}`;
    const page = await api(`/studies/${sid}/curves?${q}`);
    for (const c of page.curves) state.curves.set(c.tid, c);
    state.cursor = page.cursor;
    if (!page.more) return state.curves;
  }
}

async function viewStudy(sid) {
  const [study, trials, curves, retrain] = await Promise.all([
    api(`/studies/${sid}`), allTrials(sid), fetchCurves(sid), api(`/studies/${sid}/retrain`)]);
  const imp = await api(`/studies/${sid}/importance`).catch(() => null);
  const c = study.counts;
  const head = el("div", {},
    el("h1", {}, `${study.name} `, badge(study.state)),
    el("p", { class: "muted" }, `${study.id} · ${study.model} on ${study.dataset} · ` +
      `${study.algorithm} · scheduler ${study.scheduler.rule} · ${Math.round(study.elapsed)} s`,
      study.comparison ? el("span", {}, " · a variant of ", link(`/?comparison=${study.comparison}`,
        `comparison ${study.comparison}`)) : null),
    el("p", {}, `finished ${c.finished}${study.n_trials ? " / " + study.n_trials : ""} · ` +
      `running ${c.running} · new ${c.new} · ` +
      `pruned ${c.pruned} · diverged ${c.diverged} · infeasible ${c.infeasible} · ` +
      `timeout ${c.timeout} · error ${c.error} · paused ${c.paused} · ` +
      `stopped at rung ${c.stopped_at_rung} · ${study.epochs_spent} epochs spent, ` +
      `${study.epochs_saved} saved · ${study.promotions} promotions`),
    budgetBar(study), fidelityBox(study), failureBox(study));
  const charts = el("div", { class: "row" },
    card("Validation accuracy per epoch", "chart-val"), card("Train loss (log)", "chart-train"),
    card("Validation loss (log)", "chart-vloss"), card("Best so far", "chart-best"),
    card("Parameters against result (parallel coordinates)", "chart-parcoords", "tall"),
    card("Parameter importance", "chart-importance"),
    card("Retrain of the best configuration", "chart-retrain"));
  const slices = el("div", { class: "row", id: "slices" });
  const detail = el("div", { class: "card", id: "trial-detail" },
    el("p", { class: "muted" }, "click a trial to see its curve and JSON"));
  show(main, head, bestBox(study, retrain), charts, el("h2", {}, "Each parameter (slices)"),
    slices, el("h2", {}, `Trials (${trials.length})`), trialsTable(study, trials, curves), detail);
  drawCurves(study, trials, curves);
  drawBestSoFar(study, trials);
  drawParams(study, trials, slices);
  drawImportance(imp);
  drawRetrain(retrain);
  if (ACTIVE.has(study.state) || c.running) schedule(render, 3000);
}

function card(title, id, cls = "") {
  return el("div", { class: "card grow" }, el("h2", {}, title), el("div", { id, class: `chart ${cls}` }));
}

function budgetBar(study) {
  if (study.budget_epochs == null) return null;
  const total = Math.round(study.budget_epochs);
  return el("div", { class: "budget", id: "budget" },
    el("progress", { id: "budget-bar", max: String(total), value: String(study.epochs_spent) }),
    el("span", {}, ` ${study.epochs_spent} of ${total} budget epochs spent · ` +
      `${Math.round(study.epochs_left)} not yet committed`));
}

function fidelityBox(study) {
  const rows = (study.fidelity || []).filter((f) => f.pairs > 0);
  if (!rows.length && !(study.advice || []).length) return null;
  return el("div", { class: "card", id: "fidelity" },
    el("h2", {}, "Rungs: how well each ranks trials by their top score"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "rung epoch"),
      el("th", {}, "trials at rung and top"), el("th", {}, "Spearman"))),
    el("tbody", {}, rows.map((f) => el("tr", {}, el("td", {}, String(f.epoch)),
      el("td", {}, String(f.pairs)), el("td", {}, fmt(f.spearman, 2)))))),
    (study.advice || []).map((a) => el("p", { class: "advice" }, a)));
}

function failureLine(f) {
  if (!f || (!f.infrastructure && !f.configuration)) return null;
  const kinds = Object.entries(f.by_kind || {}).map(([k, n]) => `${k} ${n}`).join(", ");
  return el("div", { id: "failure-classes" },
    `failures: infrastructure ${f.infrastructure} (retried), configuration ` +
    `${f.configuration} (never retried)` + (kinds ? ` · ${kinds}` : ""));
}

function failureBox(study) {
  const classes = failureLine(study.failures);
  if (!study.error && !study.error_groups.length && !classes) return null;
  return el("div", { class: "error-box", id: "study-error" },
    study.error ? el("div", {}, el("b", {}, "why it failed: "), study.error) : null, classes,
    study.error_groups.length ? el("div", {}, "errors by message:") : null,
    study.error_groups.map((g) => el("div", {}, `${g.count} trial(s), e.g. ${g.tids.join(", ")}: ${g.error}`)));
}

function bestBox(study, retrain) {
  if (!study.best) return null;
  const json = JSON.stringify(study.best.params, null, 2);
  return el("div", { class: "row" },
    el("div", { class: "card grow" }, el("h2", {}, `Best configuration (trial ${study.best.tid}, ` +
      `val acc ${fmt(study.best.best_val_acc)})`),
      el("pre", { class: "json", id: "best-json" }, json),
      el("button", { onclick: () => navigator.clipboard && navigator.clipboard.writeText(json) }, "copy JSON")),
    el("div", { class: "card grow" }, el("h2", {}, "Retrain and test"),
      el("dl", { class: "kv" },
        el("dt", {}, "state"), el("dd", {}, retrain.state),
        el("dt", {}, "retrains"), el("dd", {}, String(retrain.candidates.length)),
        el("dt", {}, "retrain best val acc"), el("dd", {}, fmt(retrain.best_val_acc)),
        el("dt", {}, retrain.seeds > 1 ? `test accuracy (mean of ${retrain.seeds} seeds)` : "test accuracy (once)"),
        el("dd", { id: "test-acc" }, fmt(retrain.test_acc),
          retrain.test_acc_sd === null ? null : ` ± ${fmt(retrain.test_acc_sd)}`),
        retrain.evaluations.length > 1 ? [el("dt", {}, "each seed (test once)"), el("dd", { id: "seed-evals" },
          retrain.evaluations.map((e, i) => el("span", {}, i ? ", " : "", `seed ${e.seed}: ${fmt(e.test_acc)} `,
            link(`/studies/${study.id}/checkpoint?tid=${e.retrain_tid}`, "(checkpoint)"))))] : null,
        el("dt", {}, "search/retrain rank corr."), el("dd", {}, fmt(study.rank_correlation, 2)),
        el("dt", {}, "checkpoint"), el("dd", {}, retrain.checkpoint
          ? link(`/studies/${study.id}/checkpoint`, "download (torch, weights_only)") : "–"))));
}

const STYLE = {
  pruned: { dash: "dash", color: "#9ca3af" }, stopped_at_rung: { dash: "dash", color: "#f59e0b" },
  paused: { dash: "dot", color: "#f59e0b" }, diverged: { dash: "dot", color: "#dc2626" },
  error: { dash: "dot", color: "#dc2626" }, cancelled: { dash: "dashdot", color: "#6b7280" },
};

function drawCurves(study, trials, curves) {
  const bestTid = study.best ? study.best.tid : null;
  const byTid = new Map(trials.map((t) => [t.tid, t]));
  const traces = { val: [], train: [], vloss: [] };
  for (const cv of curves.values()) {
    if (cv.kind !== "trial") continue;
    const t = byTid.get(cv.tid) || {};
    const best = cv.tid === bestTid;
    const style = STYLE[t.outcome] || STYLE[t.state] || {};
    const line = { width: best ? 3.5 : 1.2, color: best ? "#2563eb" : style.color, dash: style.dash };
    const base = { x: cv.points.map((p) => p.epoch), mode: modeFor(cv.points.length), line,
                   marker: { size: best ? 7 : 5, color: line.color }, opacity: best ? 1 : 0.75,
                   name: `trial ${cv.tid}${best ? " (best)" : ""} ${t.outcome || t.state || ""}`,
                   legendgroup: String(cv.tid), showlegend: false };
    traces.val.push({ ...base, y: cv.points.map((p) => p.val_acc), showlegend: best });
    traces.train.push({ ...base, y: cv.points.map((p) => p.train_loss) });
    traces.vloss.push({ ...base, y: cv.points.map((p) => p.val_loss) });
  }
  const maxEpoch = Math.max(1, ...traces.val.flatMap((t) => t.x)); // the trials' epochs only
  const axes = (yaxis) => ({ ...LAYOUT, xaxis: epochAxis(maxEpoch), yaxis });
  plot("chart-val", traces.val, axes(accAxis("validation accuracy", traces.val.flatMap((t) => t.y))));
  plot("chart-train", traces.train, axes({ title: { text: "train loss" }, type: "log" }));
  plot("chart-vloss", traces.vloss, axes({ title: { text: "validation loss" }, type: "log" }));
}

// The anytime curve: best validation accuracy against the compute spent (cumulative epochs of
// the trials in the order they were made); each step's hover names its trial.
function drawBestSoFar(study, trials) {
  const done = trials.filter((t) => t.best_val_acc !== null).sort((a, b) => a.tid - b.tid);
  let best = 0, epochs = 0;
  const pts = [];
  for (const t of done) {
    best = Math.max(best, t.best_val_acc); epochs += t.epochs_run || 0;
    pts.push({ epochs, best, tid: t.tid });
  }
  const y = pts.map((p) => p.best);
  plot("chart-best", [{ x: pts.map((p) => p.epochs), y, mode: "lines+markers",
    line: { shape: "hv" }, text: pts.map((p) => `after trial ${p.tid}`), name: "best so far" }],
  { ...LAYOUT, xaxis: { title: { text: "cumulative epochs (compute)" }, tickformat: "d",
                        rangemode: "tozero" },
    yaxis: accAxis("best validation accuracy so far", y) });
}

// searched parameters from the stored space: name -> {type, options?, log}
function searched(space) {
  const out = {};
  const walk = (params) => {
    for (const [name, spec] of Object.entries(params || {})) {
      if (!spec || typeof spec !== "object" || Array.isArray(spec) || !spec.type) continue;
      if (spec.type === "choice" && spec.options.some((o) => o && typeof o === "object" && !Array.isArray(o))) {
        spec.options.forEach(walk);
      } else {
        out[name] = { ...spec, log: spec.type === "loguniform" || spec.type === "qloguniform" };
      }
    }
  };
  walk(space.params);
  return out;
}

function encode(spec, v) {
  if (v === undefined || v === null) return null;
  if (spec.type === "choice") return spec.options.findIndex((o) => JSON.stringify(o) === JSON.stringify(v));
  return spec.log ? Math.log10(v) : v;
}

function drawParams(study, trials, slices) {
  const params = searched(study.space);
  const done = trials.filter((t) => t.best_val_acc !== null);
  const dims = Object.entries(params).map(([name, spec]) => {
    const values = done.map((t) => encode(spec, t.params[name]));
    const dim = { label: spec.log ? `log10 ${name}` : name, tickformat: ".3~g",
                  values: values.map((v) => (v === null ? -1 : v)) };
    if (spec.type === "choice") {
      dim.tickvals = spec.options.map((_, i) => i);
      dim.ticktext = spec.options.map((o) => JSON.stringify(o).slice(0, 24));
    }
    return dim;
  });
  dims.push({ label: "best val acc", tickformat: ".3~g", values: done.map((t) => t.best_val_acc) });
  // labels slanted so neighbours never run together; range numbers short and small
  plot("chart-parcoords", [{ type: "parcoords", dimensions: dims, labelangle: -20,
    labelfont: { size: 11 }, rangefont: { size: 9 }, tickfont: { size: 10 },
    line: { color: done.map((t) => t.best_val_acc), colorscale: "Viridis", showscale: true } }],
  { ...LAYOUT, margin: { l: 60, r: 70, t: 90, b: 30 } });
  slices.replaceChildren();
  for (const [name, spec] of Object.entries(params)) {
    const id = `slice-${name}`;
    slices.append(el("div", { class: "card grow", style: "flex-basis:300px" }, el("h2", {}, name),
      el("div", { id, class: "chart" })));
    const isChoice = spec.type === "choice";
    const y = done.map((t) => t.best_val_acc);
    plot(id, [{ type: "scatter", mode: "markers",
      x: done.map((t) => (isChoice ? JSON.stringify(t.params[name]) : t.params[name])),
      y, text: done.map((t) => `trial ${t.tid}`),
      marker: { color: done.map((t) => t.tid), colorscale: "Blues", size: 8 } }],
    { ...LAYOUT, xaxis: { title: { text: name }, automargin: true,
                          type: spec.log ? "log" : isChoice ? "category" : "linear" },
      yaxis: accAxis("best val acc", y) });
  }
}

function drawImportance(imp) {
  const node = $("#chart-importance");
  if (!imp || !imp.importances.length) {
    node.replaceChildren(el("p", { class: "muted", id: "importance-message" },
      imp ? `${imp.message} (${imp.method})` : "no importance yet"));
    return;
  }
  const rows = [...imp.importances].reverse();
  // the method as a caption above the chart, where no toolbar can cover it
  node.before(el("p", { class: "muted caption", id: "importance-method" },
    `${imp.method}; ${imp.n_trials} trials`));
  plot(node, [{ type: "bar", orientation: "h", x: rows.map((r) => r.importance),
    y: rows.map((r) => r.param) }], { ...LAYOUT, margin: { l: 110, r: 16, t: 40, b: 40 },
    xaxis: { title: { text: "importance (sums to 1)" } } });
}

function drawRetrain(retrain) {
  if (!retrain.curve.length) {
    $("#chart-retrain").replaceChildren(el("p", { class: "muted" }, `retrain ${retrain.state}`));
    return;
  }
  const x = retrain.curve.map((p) => p.epoch);
  const y = retrain.curve.map((p) => p.val_acc);
  plot("chart-retrain", [
    { x, y, name: "validation accuracy", mode: modeFor(x.length) },
    { x, y: retrain.curve.map((p) => p.train_loss), name: "train loss", yaxis: "y2", mode: modeFor(x.length) },
  ], { ...LAYOUT, margin: RIGHT_AXIS, xaxis: epochAxis(x[x.length - 1]), yaxis: accAxis("val acc", y),
       yaxis2: { title: { text: "train loss" }, overlaying: "y", side: "right", type: "log", automargin: true } });
}

function trialsTable(study, trials, curves) {
  const names = Object.keys(searched(study.space));
  const rows = trials.map((t) => ({ ...t, worker: t.owner || (t.previous_owners || []).slice(-1)[0],
    ...Object.fromEntries(names.map((n) => [`p_${n}`, t.params[n]])) }));
  const filter = el("input", { placeholder: "filter: state, outcome or error text", size: 40 });
  const holder = el("div");
  const cols = [
    { key: "tid", label: "tid", num: true }, { key: "state", label: "state", render: (t) => badge(t.state) },
    { key: "outcome", label: "outcome", render: (t) => badge(t.outcome) },
    ...names.map((n) => ({ key: `p_${n}`, label: n, num: true,
      render: (t) => (Array.isArray(t[`p_${n}`]) ? JSON.stringify(t[`p_${n}`]) : fmt(t[`p_${n}`])) })),
    { key: "best_val_acc", label: "best val acc", num: true },
    { key: "epochs_run", label: "epochs", num: true }, { key: "rung", label: "rung", num: true },
    { key: "retries", label: "retries", num: true },
    { key: "peak_rss_mb", label: "peak MiB", num: true }, { key: "worker", label: "worker" },
    { key: "seconds", label: "seconds", num: true, render: (t) => fmt(t.seconds, 1) },
    { key: "error", label: "error", render: (t) => (t.error || "").slice(0, 80) },
  ];
  const draw = () => {
    const q = filter.value.toLowerCase();
    const shown = rows.filter((t) => !q || [t.state, t.outcome, t.error].some((v) => (v || "").toLowerCase().includes(q)));
    holder.replaceChildren(table(cols, shown, { sortKey: "tid", desc: false, id: "trials",
      onRow: (t) => showTrial(study, t, curves) }));
  };
  filter.addEventListener("input", draw);
  draw();
  return el("div", {}, el("div", { class: "filters" }, filter), holder);
}

function showTrial(study, t, curves) {
  const cv = curves.get(t.tid);
  const box = $("#trial-detail");
  show(box, el("h2", {}, `Trial ${t.tid} `, badge(t.outcome || t.state)),
    el("div", { class: "row" }, el("div", { id: "chart-trial", class: "chart grow" }),
      el("pre", { class: "json grow" }, JSON.stringify(t, null, 2))));
  if (cv && cv.points.length) {
    const x = cv.points.map((p) => p.epoch);
    const y = cv.points.map((p) => p.val_acc);
    plot("chart-trial", [
      { x, y, name: "val acc", mode: modeFor(x.length) },
      { x, y: cv.points.map((p) => p.train_loss), name: "train loss", yaxis: "y2", mode: modeFor(x.length) }],
    { ...LAYOUT, margin: RIGHT_AXIS, xaxis: epochAxis(x[x.length - 1]), yaxis: accAxis("val acc", y),
      yaxis2: { overlaying: "y", side: "right", type: "log", title: { text: "train loss" }, automargin: true } });
  }
  box.scrollIntoView({ behavior: "smooth" });
}

// -- compare ------------------------------------------------------------------------------------
async function viewCompare() {
  const params = new URLSearchParams(location.search);
  let ids = (params.get("ids") || "").split(",").filter(Boolean);
  if (!ids.length) ids = (await api("/studies?limit=20")).studies.map((s) => s.id);
  const data = await Promise.all(ids.map(async (id) => {
    const [study, trials, retrain] = await Promise.all([api(`/studies/${id}`), allTrials(id),
      api(`/studies/${id}/retrain`)]);
    const curve = study.best ? await api(`/studies/${id}/trials/${study.best.tid}`) : null;
    return { study, trials, retrain, curve };
  }));
  const bestSoFar = data.map(({ study, trials }) => {
    let best = 0;
    const pts = trials.filter((t) => t.best_val_acc !== null).sort((a, b) => a.tid - b.tid)
      .map((t) => { best = Math.max(best, t.best_val_acc); return [t.tid, best]; });
    return { x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), mode: modeFor(pts.length), line: { shape: "hv" },
             name: `${study.name} (${study.model}, ${study.id})` };
  });
  const overlays = data.filter((d) => d.curve && d.curve.curve).map(({ study, curve }) => ({
    x: curve.curve.map((p) => p.epoch), y: curve.curve.map((p) => p.val_acc), mode: modeFor(curve.curve.length),
    name: `${study.name}: trial ${curve.tid}` }));
  const rows = data.map(({ study, trials, retrain }) => {
    const seconds = trials.reduce((s, t) => s + (t.seconds || 0), 0);
    return { id: study.id, name: study.name, model: study.model, dataset: study.dataset,
             state: study.state, best: study.best ? study.best.best_val_acc : null,
             test: retrain.test_acc, trials: study.counts.finished, hours: seconds / 3600 };
  });
  show(main, el("h1", {}, `Compare ${ids.length} studies`),
    el("div", { class: "row" }, card("Best so far against trial number", "cmp-best"),
      card("The best trials' learning curves (validation accuracy)", "cmp-curves")),
    el("h2", {}, "Summary"),
    table([{ key: "id", label: "id", render: (r) => link(`/?study=${r.id}`, r.id) },
      { key: "name", label: "name" }, { key: "model", label: "model" }, { key: "dataset", label: "dataset" },
      { key: "state", label: "state", render: (r) => badge(r.state) },
      { key: "best", label: "best val acc", num: true }, { key: "test", label: "retrain test acc", num: true },
      { key: "trials", label: "trials", num: true },
      { key: "hours", label: "CPU/GPU-hours (trials)", num: true, render: (r) => fmt(r.hours, 3) }],
    rows, { sortKey: "best", id: "compare" }));
  plot("cmp-best", bestSoFar, { ...LAYOUT, showlegend: true,
    xaxis: { title: { text: "trial number" }, tickformat: "d" },
    yaxis: accAxis("best validation accuracy so far", bestSoFar.flatMap((t) => t.y)) });
  plot("cmp-curves", overlays, { ...LAYOUT, showlegend: true,
    xaxis: epochAxis(Math.max(1, ...overlays.flatMap((o) => o.x))),
    yaxis: accAxis("validation accuracy", overlays.flatMap((o) => o.y)) });
}

// -- comparisons: variants tuned at one budget (POST /comparisons) --------------------------------
const pm = (r) => (r.test_acc === null ? "–"
  : `${(100 * r.test_acc).toFixed(1)}${r.test_acc_sd === null ? "" : ` ± ${(100 * r.test_acc_sd).toFixed(1)}`}`);
const budgetText = (b) => (b.epochs !== null && b.epochs !== undefined ? `${b.epochs} epochs` : `${b.hours} h`);

async function viewComparisons() {
  const page = await api("/comparisons?limit=200");
  show(main, el("h1", {}, `Comparisons (${page.total})`),
    page.comparisons.length ? null : el("p", { class: "muted" },
      "none yet: POST /comparisons or sru-hpo compare submit FILE"),
    table([{ key: "id", label: "id", render: (c) => link(`/?comparison=${c.id}`, c.id) },
      { key: "name", label: "name" }, { key: "dataset", label: "dataset" },
      { key: "state", label: "state", render: (c) => badge(c.state) },
      { key: "variants", label: "variants", render: (c) => c.variants.join(", ") },
      { key: "budget", label: "budget per variant", render: (c) => budgetText(c.budget) }],
    page.comparisons, { id: "comparisons" }));
  if (page.comparisons.some((c) => c.state === "running")) schedule(render, 5000);
}

async function viewComparison(cid) {
  const c = await api(`/comparisons/${cid}`);
  const anytime = c.rows.filter((r) => r.anytime.length).map((r) => ({
    x: r.anytime.map((p) => p[0]), y: r.anytime.map((p) => p[1]), mode: modeFor(r.anytime.length),
    line: { shape: "hv" }, name: r.variant }));
  const tested = c.rows.filter((r) => r.test_acc !== null);
  const bars = [{ type: "bar", x: tested.map((r) => r.variant), y: tested.map((r) => r.test_acc),
    error_y: { type: "data", array: tested.map((r) => r.test_acc_sd || 0), visible: true },
    hovertemplate: "%{x}: %{y:.4f}<extra></extra>" }];
  const spans = tested.flatMap((r) => [r.test_acc - (r.test_acc_sd || 0), r.test_acc + (r.test_acc_sd || 0)]);
  show(main, el("h1", {}, `Comparison ${c.name} `, badge(c.state)),
    el("p", { class: "muted", id: "comparison-protocol" },
      `${c.dataset} · budget ${budgetText(c.budget)} per variant of ${c.trial_epochs}-epoch trials ` +
      `(scheduler ${c.scheduler.rule}, seed ${c.seed}) · epochs spent differ by ${c.epochs_spread} · ` +
      `the winner of each retrained ${c.retrain_epochs} epochs with ${c.retrain_seeds} seed(s), each seed tested once`),
    el("div", { class: "row" },
      card("Anytime: best validation accuracy against cumulative epochs", "cmpx-anytime"),
      card(`Test accuracy, mean ± sd over ${c.retrain_seeds} seed(s)`, "cmpx-test")),
    el("h2", {}, "Variants"),
    table([{ key: "variant", label: "variant", render: (r) => link(`/?study=${r.study_id}`, r.variant) },
      { key: "state", label: "state", render: (r) => badge(r.state) },
      { key: "trials", label: "trials", num: true }, { key: "epochs_spent", label: "epochs", num: true },
      { key: "trial_hours", label: "hours", num: true, render: (r) => fmt(r.trial_hours, 3) },
      { key: "best_val_acc", label: "best val acc", num: true },
      { key: "test_acc", label: "test acc % ± sd", num: true, render: pm },
      { key: "n_params", label: "parameters", num: true,
        render: (r) => (r.n_params === null ? "–" : r.n_params.toLocaleString("en")) },
      { key: "epochs_to_95", label: "epochs to 95%", num: true }],
    c.rows, { sortKey: "test_acc", id: "comparison" }));
  plot("cmpx-anytime", anytime, { ...LAYOUT, showlegend: true,
    xaxis: { title: { text: "cumulative epochs" }, tickformat: "d", rangemode: "tozero" },
    yaxis: accAxis("best validation accuracy so far", anytime.flatMap((t) => t.y)) });
  plot("cmpx-test", bars, { ...LAYOUT, showlegend: false, xaxis: { title: { text: "variant" } },
    // bars start at 0, so their heights compare; never past 1
    yaxis: { title: { text: "test accuracy" }, range: [0, Math.min(1, 1.1 * Math.max(0.1, ...spans))] } });
  if (c.state === "running") schedule(render, 5000);
}

// -- workers ------------------------------------------------------------------------------------
const STUCK_SECONDS = 60; // a trainer this long without a step is shown as stuck

function progressCell(w) {
  const j = w.job;
  if (!j || j.steps === undefined) return "–";
  const stuck = j.idle_seconds >= STUCK_SECONDS;
  return el("span", { class: stuck ? "stuck" : "" }, `${j.steps} steps, last ${Math.round(j.idle_seconds)} s ago` +
    (stuck ? ` · stuck (killed and retried at ${j.stall_after} s)` : ""));
}

async function viewWorkers() {
  const ws = await api("/workers");
  const now = Date.now() / 1000;
  show(main, el("h1", {}, `Live workers (${ws.length})`), table([
    { key: "id", label: "id" }, { key: "host", label: "host" }, { key: "device", label: "device" },
    { key: "job", label: "study / trial / epoch", render: (w) => (w.job
      ? el("span", {}, link(`/?study=${w.job.exp_key}`, w.job.exp_key), ` / ${w.job.tid} (${w.job.kind}) / ${w.job.epoch ?? "–"}`)
      : "idle") },
    { key: "progress", label: "training progress", render: progressCell },
    { key: "jobs_done", label: "jobs done", num: true },
    { key: "last_seen", label: "last heartbeat", num: true,
      render: (w) => `${Math.max(0, Math.round(now - w.last_seen))} s ago` }],
  ws, { sortKey: "id", desc: false, id: "workers" }));
  schedule(render, 3000);
}

// -- routing ------------------------------------------------------------------------------------
async function render() {
  const params = new URLSearchParams(location.search);
  const view = params.get("study") ? "study" : params.get("comparison") ? "comparison"
    : params.get("view") || "studies";
  const tab = view === "comparison" ? "comparisons" : view;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === tab));
  resizer.disconnect(); // the charts of the last render are gone; this one observes its own
  try {
    if (view === "study") await viewStudy(params.get("study"));
    else if (view === "compare") await viewCompare();
    else if (view === "comparison") await viewComparison(params.get("comparison"));
    else if (view === "comparisons") await viewComparisons();
    else if (view === "workers") await viewWorkers();
    else await viewStudies();
  } catch (err) { fail(err); }
}

$("#token").value = token();
$("#token-state").textContent = token() ? "token set" : "";
$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("sru-hpo-token", $("#token").value);
  $("#token-state").textContent = $("#token").value ? "token set" : "";
  render();
});
render();
