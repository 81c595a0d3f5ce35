// The operator's page: polls the worker's /page/fleet every 2 s and draws it. No library,
// no build step: this file is served as it is (streams/web.py). Every value from the server
// goes into the page as text, never as HTML.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "smi-api-token";
// the order statuses are listed in (schemas/models.py, Status); others follow
const STATUSES = ["Pending", "Whitelisted", "InstalledNotCommissioned", "Commissioned",
                  "Suspended", "Recovery", "Recovered", "Decommissioned", "Withdrawn",
                  "NotApplicable"];
const COLOURS = ["#1f5fbf", "#d9822b", "#2e9e5b", "#b8336a", "#7b5ea7", "#3aa6b9", "#8c6d1f",
                 "#5c6b7a"];
const state = { token: sessionStorage.getItem(TOKEN_KEY), timer: null, seen: new Set(),
                causes: [] };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function td(content, cls) {
  const cell = el("td", null, cls);
  cell.append(content instanceof Node ? content : document.createTextNode(content ?? ""));
  return cell;
}

// Every request for data carries the token: the one the browser was given for the page
// (HTTP Basic, sent by the browser itself), or one typed into the form. The origin, not the
// page's address: an address that carries credentials cannot be fetched from.
async function api(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const answer = await fetch(new URL(path, location.origin), { headers, cache: "no-store" });
  if (answer.status === 401) throw Object.assign(new Error("refused"), { refused: true });
  return answer;
}

function askForToken(reason) {
  clearTimeout(state.timer);
  $("main").hidden = true;
  $("token-form").hidden = false;
  $("token-reason").textContent = reason;
  showBanner(null);
  $("token-input").focus();
}

function showBanner(text, bad) {
  const banner = $("banner");
  banner.hidden = !text;
  banner.textContent = text || "";
  banner.classList.toggle("bad", Boolean(bad));
}

async function poll() {
  try {
    const answer = await api("/page/fleet");
    if (!answer.ok) throw new Error(`the worker answered ${answer.status}`);
    draw(await answer.json());
  } catch (error) {
    if (error.refused) {
      const reason = state.token ? "That token was refused: the worker asks for its API token."
                                 : "This worker asks for its API token (SMI_API_TOKEN).";
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      return askForToken(reason);
    }
    showBanner(`No answer from the worker (${error.message}); trying again.`, true);
  }
  state.timer = setTimeout(poll, POLL_MS);
}

function draw(fleet) {
  $("token-form").hidden = true;
  $("main").hidden = false;
  $("app").textContent = `group ${fleet.app} · ${fleet.workers.length} worker(s)`;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  drawBanner(fleet);
  drawStatuses(fleet);
  drawChart(fleet.corrections_per_minute);
  drawFeed(fleet.tail);
  drawPartitions(fleet);
  drawPolicy(fleet);
}

function drawBanner(fleet) {
  const gone = fleet.workers.filter((w) => !w.ok);
  if (fleet.rebalancing) {
    showBanner("The group is rebalancing: partitions are moving between workers. "
               + "Counts come back once it is over.");
  } else if (gone.length) {
    showBanner("Not answering: " + gone.map((w) => `${w.url} (${w.error})`).join(", "), true);
  } else {
    showBanner(null);
  }
}

function drawStatuses(fleet) {
  const counts = fleet.devices_by_status;
  if (!fleet.complete && fleet.rebalancing) return; // keep the last counts under the banner
  const names = [...new Set([...STATUSES.filter((s) => s in counts), ...Object.keys(counts)])];
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const most = Math.max(1, ...Object.values(counts));
  const body = $("status-counts").tBodies[0];
  body.replaceChildren(...names.map((name) => statusRow(name, counts[name], most)));
  $("total-devices").textContent = `${total} in all`;
  $("total-devices").dataset.total = total;
  const ages = fleet.workers.map((w) => w.counted_seconds_ago).filter((a) => a !== null);
  $("status-note").textContent = (fleet.complete ? "" : "Some workers' counts are missing. ")
    + (ages.length ? `Counted ${Math.round(Math.max(...ages))} s ago at most.` : "");
}

function statusRow(name, count, most) {
  const bar = el("div", null, "bar");
  bar.style.width = `${Math.max(2, (100 * count) / most)}%`;
  const tr = row([td(name), td(count, "num count"), td(bar)]);
  tr.dataset.status = name;
  return tr;
}

function drawChart(perMinute) {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const now = Math.floor(Date.now() / 60000) * 60;
  const minutes = Array.from({ length: 30 }, (_, i) => now - (29 - i) * 60);
  for (const counts of Object.values(perMinute)) {
    for (const cause of Object.keys(counts)) {
      if (!state.causes.includes(cause)) state.causes.push(cause);
    }
  }
  const stacks = minutes.map((m) => perMinute[String(m)] || {});
  const total = stacks.reduce((sum, s) => sum + Object.values(s).reduce((a, b) => a + b, 0), 0);
  canvas.dataset.total = total;
  paintBars(ctx, canvas, minutes, stacks);
  drawLegend();
}

function paintBars(ctx, canvas, minutes, stacks) {
  const { width, height } = canvas;
  const pad = { left: 36, bottom: 22, top: 8 };
  const most = Math.max(1, ...stacks.map((s) => Object.values(s).reduce((a, b) => a + b, 0)));
  const barWidth = (width - pad.left) / minutes.length;
  const scale = (height - pad.bottom - pad.top) / most;
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7280";
  ctx.fillText(String(most), 4, pad.top + 8);
  ctx.fillText("0", 4, height - pad.bottom);
  minutes.forEach((minute, i) => {
    let y = height - pad.bottom;
    state.causes.forEach((cause, c) => {
      const h = (stacks[i][cause] || 0) * scale;
      ctx.fillStyle = COLOURS[c % COLOURS.length];
      ctx.fillRect(pad.left + i * barWidth + 1, y - h, barWidth - 2, h);
      y -= h;
    });
    if (i % 5 === 4) {
      ctx.fillStyle = "#6b7280";
      const label = new Date(minute * 1000).toLocaleTimeString([], { hour: "2-digit",
                                                                    minute: "2-digit" });
      ctx.fillText(label, pad.left + i * barWidth - 10, height - 6);
    }
  });
}

function drawLegend() {
  $("legend").replaceChildren(...state.causes.map((cause, c) => {
    const item = el("span", cause);
    const swatch = el("i");
    swatch.style.background = COLOURS[c % COLOURS.length];
    item.prepend(swatch);
    return item;
  }));
}

function drawFeed(entries) {
  const body = $("feed").tBodies[0];
  body.replaceChildren(...entries.map(feedRow));
  $("feed-empty").hidden = entries.length > 0;
}

function feedRow(entry) {
  const id = `${entry.worker}#${entry.seq}`;
  const tr = row([td(shortTime(entry.at), "mono"), td(el("span", entry.kind,
    "badge " + entry.kind.replace(" ", "-"))),
    td(entry.device_id || entry.output.key || "", "mono"),
    td(detail(entry)), td(inputCell(entry.input))]);
  tr.className = "feed-row" + (state.seen.has(id) ? "" : " new");
  tr.dataset.kind = entry.kind;
  state.seen.add(id);
  return tr;
}

function detail(entry) {
  const out = entry.output;
  if (entry.kind === "correction") {
    return `${out.from_status} ${out.from_firmware} → ${out.to_status} ${out.to_firmware}`
      + ` (${out.cause})`;
  }
  if (entry.kind === "rejection") return `SR${out.sr || "?"} ${out.reason} (${out.response_code})`;
  return out.error;
}

function inputCell(input) {
  if (!input) return "";
  const box = el("details");
  box.append(el("summary", `${input.topic}[${input.partition}]@${input.offset}`));
  box.append(el("pre", input.value));
  return box;
}

function shortTime(at) {
  return at ? at.replace("T", " ").replace(/\.\d+/, "").replace(/(Z|\+00:00)$/, "") : "";
}

function drawPartitions(fleet) {
  $("partitions").tBodies[0].replaceChildren(...fleet.partitions.map((p) => {
    const tr = row([td(p.partition, "num"), td(p.owner, "mono"),
                    td(p.lag === null ? "?" : p.lag, "num lag")]);
    tr.dataset.partition = p.partition;
    tr.title = Object.entries(p.by_topic).map(([t, n]) => `${t}: ${n}`).join("\n");
    return tr;
  }));
  $("workers").tBodies[0].replaceChildren(...fleet.workers.map((w) => row([
    td(w.url, "mono"),
    td(w.ok ? (w.rebalancing ? "rebalancing" : "answering") : "not answering",
       w.ok ? "on" : "off"),
    td(w.devices === null ? "" : `${w.devices} devices`, "num")])));
}

function drawPolicy(fleet) {
  const policy = fleet.policy || {};
  $("policy").tBodies[0].replaceChildren(...Object.entries(policy).map(([name, value]) => {
    const shown = typeof value === "boolean" ? el("span", value ? "on" : "off",
                                                  value ? "on" : "off")
                                              : Array.isArray(value) ? value.join(", ") : value;
    const tr = row([td(name, "mono"), td(shown)]);
    tr.dataset.switch = name;
    return tr;
  }));
  $("policy-note").textContent = fleet.policy_differs.length
    ? "These workers run another policy: " + fleet.policy_differs.join(", ") : "";
}

async function search(event) {
  event.preventDefault();
  const id = $("search-input").value.trim().toUpperCase();
  const view = $("device-view");
  if (!id) return;
  try {
    const answer = await api("/page/devices/" + encodeURIComponent(id));
    const body = await answer.json();
    view.replaceChildren(...(answer.ok ? deviceView(body)
                                       : [el("p", body.error || `answered ${answer.status}`)]));
  } catch (error) {
    if (error.refused) return askForToken("The worker asks for its API token again.");
    view.replaceChildren(el("p", `No answer (${error.message})`));
  }
}

function deviceView(device) {
  const record = device.record;
  const fields = el("table");
  fields.id = "device-record";
  fields.append(...Object.entries(record)
    .map(([k, v]) => row([td(k, "mono"), td(v === null ? "" : v, "mono")])));
  return [fields, el("h3", `Awaited requests (${device.awaiting.length})`),
          table(["request", "SR", "firmware hash", "retry", "since"], device.awaiting.map(
            (p) => [p.request_id, p.sr, p.firmware_hash, p.retry ? "yes" : "", epoch(p.at)]),
            "device-awaiting"),
          el("h3", `History (${device.history.length})`),
          table(["at", "change", "cause", "topic", "partition", "offset", "input id"],
                device.history.map(historyCells), "device-history")];
}

function historyCells(change) {
  const source = change.source || {};
  return [shortTime(change.at), `${change.from_status} ${change.from_firmware} → `
          + `${change.to_status} ${change.to_firmware}`, change.cause,
          source.topic ?? change.source_text, source.partition, source.offset, source.id];
}

function table(headings, rows, id) {
  const node = el("table");
  node.id = id;
  const head = node.createTHead().insertRow();
  for (const h of headings) head.append(el("th", h));
  const body = node.createTBody();
  for (const cells of rows) body.append(row(cells.map((c) => td(c ?? "", "mono"))));
  return node;
}

function epoch(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z") : "";
}

function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token-input").value = "";
    poll();
  });
  $("search-form").addEventListener("submit", search);
  poll();
}

document.addEventListener("DOMContentLoaded", start);
