// smtp-diag page: runs a diagnosis through the API's event stream and shows stages as they finish.
// Everything from the server is put on the page with textContent, never as HTML.
"use strict";

(function () {
  const STAGE_LABELS = {
    config: "Configuration", dns: "DNS", connect: "Connect", ehlo: "EHLO", tls: "TLS",
    auth: "Authentication", mail_from: "MAIL FROM", rcpt_to: "RCPT TO", send: "Send test message",
  };
  const STATUS_LABELS = { passed: "Passed", warning: "Warning", failed: "Failed", skipped: "Skipped", running: "Running" };
  // The form's fields, from the page (the server renders them from its config field table): name, control,
  // how the value is sent ("text" trimmed, "raw" as typed, "number", "integer", "flag"), whether it sits under
  // Advanced, and whether a stored report carries its value (the password and CA bundle it does not).
  // The script is deferred, so the page (and this element) is parsed when it runs.
  const FIELDS = JSON.parse(document.getElementById("form-fields").textContent);
  const TOKEN_KEY = "smtp-diag-token";

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  };

  let currentReport = null;

  // --- the request -------------------------------------------------------------------------
  function authHeaders() {
    const headers = {};
    const tokenInput = $("api_token");
    const token = tokenInput ? tokenInput.value.trim() : "";
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      headers["Authorization"] = "Bearer " + token;
    }
    return headers;
  }

  function isAdvanced(name) {
    return FIELDS.some((field) => field.name === name && field.advanced);
  }

  // A product profile has only its form's fields: the others are hidden, and not sent.
  const PROFILE_FIELD = FIELDS.find((f) => f.chooses_profile);

  function inProfile(field) {
    const profile = PROFILE_FIELD && $(PROFILE_FIELD.name);
    return !profile || !field.profiles || field.profiles.includes(profile.value);
  }

  function applyProfile() {
    for (const field of FIELDS) {
      const input = $(field.name);
      const box = input && input.closest(".field");
      if (box) box.hidden = !inProfile(field);
    }
  }

  function collectConfig() {
    const config = {};
    for (const field of FIELDS) {
      const { name, value: kind } = field;
      const input = $(name);
      if (!input || !inProfile(field)) continue;
      if (kind === "flag") {
        if (input.checked) config[name] = true;
      } else if (input.value.trim() !== "") {
        if (kind === "integer") config[name] = Number.isInteger(Number(input.value)) ? Number(input.value) : input.value;
        else if (kind === "number") config[name] = Number(input.value);
        else if (kind === "raw") config[name] = input.value;
        else config[name] = input.value.trim();
      }
    }
    return config;
  }

  function clearErrors() {
    for (const { name } of FIELDS) {
      const input = $(name);
      const error = $(name + "-error");
      if (input) input.removeAttribute("aria-invalid");
      if (error) { error.hidden = true; error.textContent = ""; }
    }
    $("form-error").hidden = true;
  }

  function showFieldErrors(errors) {
    const unplaced = [];
    let first = null;
    for (const { field, message } of errors) {
      const error = $(field + "-error");
      const input = $(field);
      if (!error || !input) { unplaced.push(field + ": " + message); continue; }
      error.textContent = (error.textContent ? error.textContent + " " : "") + message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      if (isAdvanced(field)) $("advanced").open = true;
      first = first || input;
    }
    if (unplaced.length) showFormError(unplaced.join("; "));
    if (first) first.focus();
  }

  function showFormError(message) {
    const box = $("form-error");
    box.textContent = message;
    box.hidden = false;
  }

  async function errorMessage(response) {
    let message = "The service answered " + response.status + ".";
    try {
      const body = await response.json();
      if (body.message) message = body.message;
    } catch (_) { /* not JSON: keep the status */ }
    const retry = response.headers.get("Retry-After");
    if (retry) message += " Retry in " + retry + " s.";
    return message;
  }

  // Problems the page can see before asking the server (the server checks everything again).
  function localErrors(config) {
    const errors = [];
    for (const { name, pair } of FIELDS) {
      if (pair && config[pair] && !config[name]) {
        errors.push({ field: name, message: sharedReportLoaded
          ? "type the password: a shared report does not keep it"
          : "enter the password for this username, or clear the username for anonymous SMTP" });
      }
    }
    return errors;
  }

  let running = null; // the AbortController of the run in flight
  let runTimeoutS = 10;
  let sharedReportLoaded = false;

  async function validate(event) {
    event.preventDefault();
    if (running) return;
    clearErrors();
    const config = collectConfig();
    const local = localErrors(config);
    if (local.length) { showFieldErrors(local); return; }
    runTimeoutS = typeof config.timeout_s === "number" && config.timeout_s > 0 ? config.timeout_s : 10;
    const button = $("validate");
    button.disabled = true;
    running = new AbortController();
    $("cancel").hidden = false;
    resetResults();
    setRunning(true);
    try {
      const response = await fetch("/api/diagnostics", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json", "Accept": "text/event-stream" }, authHeaders()),
        body: JSON.stringify(config),
        signal: running.signal,
      });
      if (response.status === 422) {
        const body = await response.json();
        showFieldErrors(body.errors || []);
        showIdle();
        return;
      }
      if (!response.ok) {
        showFormError(await errorMessage(response));
        showIdle();
        return;
      }
      await readEvents(response, handleEvent);
      if (!currentReport) showFormError("The run ended before its report arrived. Try again.");
    } catch (err) {
      if (err.name === "AbortError") showCancelled();
      else { showFormError("Could not reach the service: " + err.message); showIdle(); }
    } finally {
      stopClock();
      running = null;
      $("cancel").hidden = true;
      button.disabled = false;
      setRunning(false);
    }
  }

  // Aborting the request is the cancel: the service stops a run whose client left, closes its SMTP
  // connection and frees the run's slot.
  function cancelRun() {
    if (running) running.abort();
  }

  function showCancelled() {
    stopClock();
    for (const item of document.querySelectorAll('#stages [data-status="running"]')) {
      item.querySelector(".badge").textContent = "Cancelled";
      item.className = "stage stage-cancelled";
      item.dataset.status = "cancelled";
      const elapsed = item.querySelector(".stage-elapsed");
      if (elapsed) elapsed.textContent = "Stopped by you.";
    }
    const verdict = $("verdict");
    verdict.className = "verdict verdict-cancelled";
    verdict.setAttribute("data-verdict", "cancelled");
    verdict.replaceChildren(el("div", { class: "verdict-head" },
      el("span", { class: "verdict-icon", "aria-hidden": "true" }, "■"),
      el("strong", { class: "verdict-title", id: "verdict-title" }, "Cancelled")),
      el("p", { class: "verdict-summary" }, "The run was stopped and its connection closed; no report was kept."));
    verdict.hidden = false;
    verdict.focus();
  }

  // Server-sent events from a fetch body: frames end with a blank line; "event:" names, "data:" carries JSON.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  function handleEvent(name, data) {
    if (name === "stage_started") upsertStage({ name: data.name, status: "running", summary: "Running…" });
    else if (name === "stage_finished") upsertStage(data);
    else if (name === "run_finished") showReport(data, { live: true });
  }

  // --- rendering ---------------------------------------------------------------------------
  // Findings that deserve a name of their own in the verdict (the stage label says the rest).
  const FINDING_TITLES = {
    "config.anonymous": "Anonymous SMTP",
    "config.insecure_skip_verify": "Certificate verification is off",
    "tls.plaintext_credentials": "Password sent in plaintext",
  };

  function resetResults() {
    stopClock();
    currentReport = null;
    $("placeholder").hidden = true;
    $("stages").replaceChildren();
    $("verdict").hidden = true;
    $("waterfall-box").hidden = true;
    $("report-actions").hidden = true;
    $("shared-note").hidden = true;
    $("action-status").textContent = "";
  }

  function showIdle() {
    $("verdict").hidden = true;
    if (!$("stages").children.length) $("placeholder").hidden = false;
  }

  function setRunning(running) {
    $("results").setAttribute("aria-busy", running ? "true" : "false");
    if (running) {
      const verdict = $("verdict");
      verdict.className = "verdict verdict-running";
      verdict.removeAttribute("data-verdict");
      verdict.replaceChildren(el("div", { class: "verdict-head" },
        el("span", { class: "verdict-icon", "aria-hidden": "true" }, "…"),
        el("strong", { class: "verdict-title", id: "verdict-title" }, "Checking…")));
      verdict.hidden = false;
    }
  }

  function formatMs(ms) {
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    return (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + " ms";
  }

  function stageLabel(name) { return STAGE_LABELS[name] || name; }

  function findingsOf(stage) {
    return (stage.finding ? [stage.finding] : []).concat(stage.additional_findings || []);
  }

  // --- a stage that is still waiting: elapsed time against the step's timeout ---------------
  let clock = null;

  function stopClock() {
    if (clock) clearInterval(clock.timer);
    clock = null;
  }

  function startClock(item, timeoutS) {
    stopClock();
    const started = performance.now();
    const out = item.querySelector(".stage-elapsed");
    const tick = () => {
      const s = (performance.now() - started) / 1000;
      out.textContent = "Waiting " + s.toFixed(1) + " s of this step's " + timeoutS + " s timeout";
    };
    tick();
    clock = { timer: setInterval(tick, 200) };
  }

  function upsertStage(stage, { final } = { final: false }) {
    const item = document.querySelector('#stages [data-stage="' + CSS.escape(stage.name) + '"]');
    const fresh = stageItem(stage, { final });
    if (item) item.replaceWith(fresh); else $("stages").append(fresh);
    if (stage.status === "running") startClock(fresh, runTimeoutS);
    else if (item && item.dataset.status === "running") stopClock();
  }

  // One stage: a <details> whose summary line is the stage at a glance. Open while the run goes on and for
  // what needs reading (failed, warning); passed and skipped stages fold to their one line once it ends.
  // Cause and fix live in the verdict banner only, so the same words never show twice.
  function stageItem(stage, { final }) {
    const status = stage.status;
    const item = el("li", { class: "stage stage-" + status, "data-stage": stage.name, "data-status": status });
    const open = !final || status === "failed" || status === "warning";
    const details = el("details", { class: "stage-details" });
    details.open = open;
    const head = el("summary", { class: "stage-head" },
      el("span", { class: "badge" }, STATUS_LABELS[status] || status),
      el("span", { class: "stage-name" }, stageLabel(stage.name)),
      el("span", { class: "stage-brief" }, stage.summary || ""),
      status === "running" || status === "skipped" ? null
        : el("span", { class: "stage-time" }, formatMs(stage.duration_ms || 0)));
    const body = el("div", { class: "stage-body" }, el("p", { class: "stage-summary" }, stage.summary || ""));
    if (status === "running") body.append(el("p", { class: "stage-elapsed", role: "timer" }));
    const codes = findingsOf(stage).map((f) => f.code);
    if (codes.length && (status === "failed" || status === "warning")) {
      const ref = el("p", { class: "finding-ref" }, "Cause and fix: in the verdict above. ");
      for (const code of codes) ref.append(el("code", { class: "finding-code" }, code), " ");
      body.append(ref);
    }
    const facts = stage.facts ? Object.entries(stage.facts) : [];
    if (facts.length) {
      const table = el("table", { class: "facts" });
      for (const [key, value] of facts) {
        table.append(el("tr", {}, el("th", { scope: "row" }, key),
          el("td", {}, typeof value === "string" ? value : JSON.stringify(value))));
      }
      body.append(el("details", { class: "more" }, el("summary", {}, "Facts (" + facts.length + ")"),
        el("div", { class: "facts-box" }, table)));
    }
    const lines = stage.transcript || [];
    if (lines.length) {
      const pre = el("pre", { class: "transcript" });
      for (const line of lines) {
        const cls = line.dir === "C" ? "t-C" : line.dir === "S" ? "t-S" : "t-note";
        const prefix = line.dir === "*" ? "* " : line.dir + ": ";
        pre.append(el("span", { class: "t-time" }, ("+" + line.t_ms.toFixed(1) + " ms").padStart(11) + "  "),
          el("span", { class: cls }, prefix + line.text), "\n");
      }
      body.append(el("details", { class: "more" }, el("summary", {}, "Transcript (" + lines.length + " lines)"), pre));
    }
    details.append(head, body);
    item.append(details);
    return item;
  }

  // Every warning once, by its code: a warning stage's findings and the failed stage's further findings.
  function warningsOf(report) {
    const seen = new Set();
    const out = [];
    for (const stage of report.stages) {
      let findings = [];
      if (stage.status === "warning") findings = findingsOf(stage);
      else if (stage.status === "failed") findings = stage.additional_findings || [];
      for (const finding of findings) {
        if (seen.has(finding.code)) continue;
        seen.add(finding.code);
        out.push({ stage, finding });
      }
    }
    return out;
  }

  function causeAndFix(finding) {
    return el("div", { class: "verdict-finding", "data-code": finding.code },
      el("p", {}, el("span", { class: "finding-label" }, "Cause: "), finding.cause),
      el("p", {}, el("span", { class: "finding-label" }, "Fix: "), finding.fix),
      el("p", { class: "finding-code" }, finding.code));
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function formatWhen(iso) {
    const date = new Date(iso);
    if (isNaN(date.getTime())) return iso || "";
    return date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function whereItRan(origin) {
    if (!origin) return "";
    const parts = [];
    if (origin.hostname) parts.push(origin.hostname);
    if (origin.source_address) parts.push("from " + origin.source_address);
    if (origin.pod) parts.push("pod " + origin.pod);
    return parts.length ? "ran on " + parts.join(", ") : "";
  }

  // The answer first: what failed, why and the fix, then every warning, then when, where and how long.
  function renderVerdict(report) {
    const failed = report.stages.find((s) => s.status === "failed");
    const warnings = warningsOf(report);
    const kind = failed ? "invalid" : warnings.length ? "warning" : "valid";
    const verdict = $("verdict");
    verdict.className = "verdict verdict-" + kind;
    verdict.setAttribute("data-verdict", report.verdict);
    const title = failed ? "Failed at " + stageLabel(failed.name)
      : "Configuration is valid" + (warnings.length ? ", with " + plural(warnings.length, "warning") : "");
    const parts = [el("div", { class: "verdict-head" },
      el("span", { class: "verdict-icon", "aria-hidden": "true" }, failed ? "✕" : warnings.length ? "⚠" : "✓"),
      el("strong", { class: "verdict-title", id: "verdict-title" }, title))];
    if (failed) {
      parts.push(el("p", { class: "verdict-summary" }, failed.summary || ""));
      const main = failed.finding ? [failed.finding] : [];
      for (const finding of main) parts.push(causeAndFix(finding));
      // Go's own error text, as the product would log it: to match against its container logs.
      if (failed.product_log) {
        parts.push(el("p", { class: "verdict-product-log" },
          el("span", { class: "finding-label" }, "The product's logs would show something like: "),
          el("code", {}, failed.product_log)));
      }
    }
    if (warnings.length) {
      const list = el("ul", { class: "verdict-warnings" });
      for (const { stage, finding } of warnings) {
        list.append(el("li", { "data-code": finding.code },
          el("strong", {}, FINDING_TITLES[finding.code] || stageLabel(stage.name)),
          el("span", { class: "verdict-stage" }, " (" + stageLabel(stage.name) + ")"),
          causeAndFix(finding)));
      }
      parts.push(el("h3", { class: "verdict-subtitle" }, "Warnings (" + warnings.length + ")"), list);
    }
    const stagesMs = report.stages.reduce((sum, s) => sum + (s.duration_ms || 0), 0);
    const config = report.config || {};
    const meta = [(config.host || "") + ":" + (config.port || ""),
      formatMs(report.duration_ms) + (report.duration_ms - stagesMs >= 1 ? " including set-up (stages " + formatMs(stagesMs) + ")" : ""),
      formatWhen(report.started_at)];
    if (report.origin && report.origin.tool) meta.push(report.origin.tool);
    const where = whereItRan(report.origin);
    if (where) meta.push(where);
    parts.push(el("p", { class: "verdict-meta" }, meta.join(" · ")));
    verdict.replaceChildren(...parts);
    verdict.hidden = false;
  }

  function showReport(report, { live }) {
    stopClock();
    currentReport = report;
    $("placeholder").hidden = true;
    $("stages").replaceChildren();
    for (const stage of report.stages) upsertStage(stage, { final: true });
    renderVerdict(report);
    renderWaterfall(report);
    const path = "/diagnostics/" + encodeURIComponent(report.id);
    $("share-link").href = path;
    $("report-actions").hidden = false;
    // The address bar and the Shareable link are one: the report on screen.
    if (live && window.history && window.location.pathname !== path) window.history.replaceState(null, "", path);
    // Focus goes to the answer, so a screen reader reads it and a phone shows it without scrolling.
    $("verdict").focus();
  }

  // One scale for every run: the step timeout (the config's, 10 s by default). A 10 s wait fills its track
  // and a 0.1 ms check is a sliver, whatever the run's total. Skipped stages took no time: folded away.
  function renderWaterfall(report) {
    const timeoutMs = ((report.config && report.config.timeout_s) || 10) * 1000;
    const box = $("waterfall");
    box.replaceChildren();
    let skipped = 0;
    for (const stage of report.stages) {
      if (stage.status === "skipped") { skipped += 1; continue; }
      const ms = stage.duration_ms || 0;
      const bar = el("div", { class: "wf-bar wf-" + stage.status });
      bar.style.width = Math.min(100, ms / timeoutMs * 100).toFixed(3) + "%";
      box.append(el("li", { class: "wf-row" },
        el("span", { class: "wf-label" }, stageLabel(stage.name)),
        el("div", { class: "wf-track", "aria-hidden": "true" }, bar),
        el("span", { class: "wf-ms" }, formatMs(ms))));
    }
    $("waterfall-scale").textContent = "Each bar against the step timeout of " + (timeoutMs / 1000) + " s."
      + (skipped ? " " + plural(skipped, "skipped stage") + " not shown." : "");
    $("waterfall-box").hidden = false;
  }

  // --- report actions ----------------------------------------------------------------------
  function say(message) { $("action-status").textContent = message; }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      const area = el("textarea", { class: "visually-hidden", "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand && document.execCommand("copy");
      area.remove();
      return Boolean(ok);
    }
  }

  async function copyMarkdown() {
    if (!currentReport) return;
    const response = await fetch("/api/diagnostics/" + encodeURIComponent(currentReport.id) + "?format=markdown",
      { headers: authHeaders() });
    if (!response.ok) { say(await errorMessage(response)); return; }
    const markdown = await response.text();
    say(await copyText(markdown) ? "Markdown copied to the clipboard." : "Could not use the clipboard.");
  }

  function downloadJson() {
    if (!currentReport) return;
    const blob = new Blob([JSON.stringify(currentReport, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: "smtp-diag-" + currentReport.id + ".json" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    say("JSON downloaded.");
  }

  // --- presets and stored reports ------------------------------------------------------------
  function applyPreset(preset, button) {
    clearErrors();
    for (const { name, control, default: fallback } of FIELDS) {
      const input = $(name);
      if (!input) continue;
      const value = preset.config[name];
      if (control === "checkbox") input.checked = value === true;
      else if (control === "select") input.value = value || fallback;
      else input.value = value === undefined || value === null ? "" : String(value);
    }
    // A select always has a value: only a field the preset fills in opens Advanced.
    $("advanced").open = FIELDS.some((f) => f.advanced && f.control !== "select" && preset.config[f.name]);
    applyProfile();
    for (const other of document.querySelectorAll(".preset")) other.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
  }

  // Each preset is a button with its description as visible text (not a hover-only tooltip).
  function setupPresets() {
    const data = $("presets-data");
    if (!data) return;
    const presets = JSON.parse(data.textContent);
    const list = $("preset-list");
    for (const preset of presets) {
      const descId = "preset-desc-" + preset.key;
      const button = el("button", { type: "button", class: "preset", "aria-pressed": "false",
        "data-preset": preset.key, "aria-describedby": descId }, preset.label);
      button.addEventListener("click", () => applyPreset(preset, button));
      list.append(el("li", { class: "preset-item" }, button,
        el("span", { class: "preset-desc", id: descId }, preset.description)));
    }
  }

  async function loadStored(id) {
    resetResults();
    setRunning(true);
    try {
      const response = await fetch("/api/diagnostics/" + encodeURIComponent(id), { headers: authHeaders() });
      if (!response.ok) { showIdle(); showFormError(await errorMessage(response)); return; }
      const report = await response.json();
      fillFormFrom(report.config);
      showReport(report, { live: false });
      sharedReportLoaded = true;
      const note = $("shared-note");
      note.textContent = report.config.username
        ? "This is a shared report. The password is not kept: type it in the Password field to run the check again."
        : "This is a shared report. Validate runs the check again with the settings below.";
      note.hidden = false;
    } finally {
      setRunning(false);
      if (!currentReport) $("verdict").hidden = true;
    }
  }

  function fillFormFrom(config) {
    for (const { name, control, refill } of FIELDS) {
      const input = $(name);
      if (!input || !refill) continue;
      const value = config[name];
      if (control === "checkbox") input.checked = value === true;
      else if (value !== undefined && value !== null) input.value = String(value);
    }
    applyProfile();
  }

  // --- explain a log line --------------------------------------------------------------------
  // POST /api/explain; every answer is shown with textContent. "Check this configuration" fills the form
  // with what the line said (the diagnosis that would confirm it), so one click prepares the check.
  async function explainLines(event) {
    event.preventDefault();
    const box = $("explain-error");
    box.hidden = true;
    const list = $("explain-results");
    list.replaceChildren();
    const response = await fetch("/api/explain", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      // The fixes come in the words of the client chosen in the form (the product's, by default).
      body: JSON.stringify(PROFILE_FIELD && $(PROFILE_FIELD.name)
        ? { text: $("explain-text").value, [PROFILE_FIELD.name]: $(PROFILE_FIELD.name).value }
        : { text: $("explain-text").value }),
    });
    if (!response.ok) {
      let message = await errorMessage(response.clone());
      try {
        const body = await response.json();
        if (body.errors) message = body.errors.map((e) => e.message).join("; ");
      } catch (_) { /* keep the status message */ }
      box.textContent = message;
      box.hidden = false;
      return;
    }
    const body = await response.json();
    for (const answer of body.explanations) list.append(explanationItem(answer));
  }

  function explanationItem(answer) {
    const item = el("li", { class: "explain-item", "data-code": answer.code || "unknown" },
      el("p", { class: "explain-line" }, answer.line));
    if (answer.code) {
      item.append(el("p", {}, el("strong", {}, stageLabel(answer.stage)), " ",
        el("span", { class: "finding-code" }, answer.code)));
    }
    item.append(el("p", {}, el("span", { class: "finding-label" }, answer.code ? "Cause: " : ""), answer.cause));
    if (answer.fix) item.append(el("p", {}, el("span", { class: "finding-label" }, "Fix: "), answer.fix));
    const facts = Object.entries(answer.facts || {});
    if (facts.length) {
      item.append(el("p", { class: "explain-facts" }, el("span", { class: "finding-label" }, "Read from the line: "),
        facts.map(([k, v]) => k + " " + String(v)).join(", ")));
    }
    if (answer.inferences.length) {
      item.append(el("ul", { class: "explain-inferences" }, ...answer.inferences.map((text) => el("li", {}, text))));
    }
    if (answer.confirm) {
      const button = el("button", { type: "button", class: "explain-check" }, "Check this configuration");
      button.addEventListener("click", () => prefill(answer.confirm.config));
      item.append(el("p", {}, button), el("code", { class: "explain-command" }, answer.confirm.command));
    }
    return item;
  }

  // Only the fields the line gave, never a secret (refill is false for those); then the first required
  // field the line did not give takes the focus, or Validate when it gave them all.
  function prefill(config) {
    clearErrors();
    let missing = null;
    for (const { name, control, refill } of FIELDS) {
      const input = $(name);
      if (!input || !refill || control === "checkbox") continue;
      const value = config[name];
      if (value !== undefined && value !== null) input.value = String(value);
      else if (input.required && !missing) missing = input;
    }
    (missing || $("validate")).focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const tokenInput = $("api_token");
    if (tokenInput) tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
    setupPresets();
    $("config-form").addEventListener("submit", validate);
    if (PROFILE_FIELD) $(PROFILE_FIELD.name).addEventListener("change", applyProfile);
    applyProfile();
    $("copy-markdown").addEventListener("click", copyMarkdown);
    $("download-json").addEventListener("click", downloadJson);
    $("cancel").addEventListener("click", cancelRun);
    $("explain-form").addEventListener("submit", explainLines);
    const id = document.body.dataset.reportId;
    if (id) loadStored(id);
  });
})();
