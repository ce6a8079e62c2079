// The usage dashboard: reads api/usage (the same report as
// conference.reports.usage_report) and draws it with Chart.js (vendored).
"use strict";

const FIGURES = [
  ["meetings_started", "Meetings started"],
  ["participant_sessions", "Participant sessions"],
  ["participant_minutes", "Participant-minutes"],
  ["peak_participants", "Peak concurrent participants"],
  ["recording_hours", "Recording hours"],
];
const COLOURS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
                 "#db2777", "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];

const form = document.getElementById("filters");
const status = document.getElementById("status");
const charts = {};
window.dashboard = { charts, report: null };

function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

function query() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (value !== "") params.set(name, value);
  }
  return params;
}

function label(bucket, grain) {
  return grain === "hour" ? bucket.start.slice(0, 16).replace("T", " ") : bucket.start.slice(0, 10);
}

function draw(id, type, labels, datasets, stacked) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), {
    type,
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { stacked }, y: { beginAtZero: true, stacked } },
    },
  });
}

function series(report, key, index, type) {
  return {
    label: FIGURES.find(([name]) => name === key)[1],
    data: report.buckets.map((bucket) => bucket[key]),
    backgroundColor: COLOURS[index], borderColor: COLOURS[index], type,
  };
}

function render(report) {
  const labels = report.buckets.map((bucket) => label(bucket, report.grain));
  draw("chart-sessions", "bar", labels, [
    series(report, "meetings_started", 0), series(report, "participant_sessions", 1),
  ], false);
  draw("chart-minutes", "line", labels, [series(report, "participant_minutes", 2)], false);
  draw("chart-peak", "line", labels, [series(report, "peak_participants", 3)], false);
  draw("chart-recording", "bar", labels, [series(report, "recording_hours", 4)], false);
  const types = [...new Set(report.buckets.flatMap((bucket) => Object.keys(bucket.events)))].sort();
  draw("chart-events", "bar", labels, types.map((type, index) => ({
    label: type,
    data: report.buckets.map((bucket) => bucket.events[type] || 0),
    backgroundColor: COLOURS[index % COLOURS.length],
  })), true);

  const head = ["start", ...FIGURES.map(([, title]) => title), ...types];
  document.querySelector("#numbers thead").innerHTML = "";
  const headRow = document.querySelector("#numbers thead").insertRow();
  for (const title of head) headRow.appendChild(document.createElement("th")).textContent = title;
  const body = document.querySelector("#numbers tbody");
  body.innerHTML = "";
  for (const bucket of report.buckets) {
    const row = body.insertRow();
    const cells = [label(bucket, report.grain), ...FIGURES.map(([key]) => bucket[key]),
                   ...types.map((type) => bucket.events[type] || 0)];
    for (const value of cells) row.insertCell().textContent = value;
  }
}

async function load() {
  const params = query();
  history.replaceState(null, "", "?" + params);
  document.getElementById("csv").href = "usage.csv?" + params;
  document.body.dataset.ready = "false";
  status.className = "";
  status.textContent = "Loading…";
  const response = await fetch("api/usage?" + params, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) {
    status.className = "error";
    status.textContent = body.error || response.statusText;
    return;
  }
  window.dashboard.report = body;
  render(body);
  status.textContent = body.as_of
    ? `Numbers as of ${body.as_of.replace("T", " ").slice(0, 19)} UTC (rollups refresh on a timer or with \`piccolo conference rollup\`).`
    : "The rollups have not been built yet: run `piccolo conference rollup`.";
  document.body.dataset.ready = "true";
}

async function loadRooms() {
  const params = query();
  const response = await fetch("api/rooms?" + params, { credentials: "same-origin" });
  if (!response.ok) return;
  const list = document.getElementById("rooms");
  list.innerHTML = "";
  for (const room of await response.json()) list.appendChild(new Option(room));
}

function start() {
  const given = new URLSearchParams(location.search);
  const today = new Date();
  const end = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate()));
  const begin = new Date(end.getTime() - 29 * 86400000);
  form.start.value = given.get("start") || isoDate(begin);
  form.end.value = given.get("end") || isoDate(end);
  for (const name of ["grain", "room", "tz"]) if (given.get(name)) form[name].value = given.get(name);
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  loadRooms();
  load();
}

start();
