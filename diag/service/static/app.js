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

  function collectConfig() {
    const config = {};
    for (const { name, value: kind } of FIELDS) {
      const input = $(name);
      if (!input) continue;
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

  async function validate(event) {
    event.preventDefault();
    clearErrors();
    const button = $("validate");
    button.disabled = true;
    resetResults();
    setRunning(true);
    try {
      const response = await fetch("/api/diagnostics", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json", "Accept": "text/event-stream" }, authHeaders()),
        body: JSON.stringify(collectConfig()),
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
      showFormError("Could not reach the service: " + err.message);
      showIdle();
    } finally {
      button.disabled = false;
      setRunning(false);
    }
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
  function resetResults() {
    currentReport = null;
    $("placeholder").hidden = true;
    $("stages").replaceChildren();
    $("verdict").hidden = true;
    $("anonymous-warning").hidden = true;
    $("waterfall-box").hidden = true;
    $("report-actions").hidden = true;
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
      verdict.replaceChildren(el("span", { class: "verdict-icon", "aria-hidden": "true" }, "…"),
        el("strong", {}, "Checking…"));
      verdict.hidden = false;
    }
  }

  function formatMs(ms) {
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    return (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + " ms";
  }

  function upsertStage(stage) {
    let item = document.querySelector('#stages [data-stage="' + CSS.escape(stage.name) + '"]');
    const fresh = stageItem(stage);
    if (item) item.replaceWith(fresh); else $("stages").append(fresh);
    for (const finding of findingsOf(stage)) {
      if (finding.code === "config.anonymous") showAnonymous(finding);
    }
  }

  function findingsOf(stage) {
    return (stage.finding ? [stage.finding] : []).concat(stage.additional_findings || []);
  }

  function stageItem(stage) {
    const status = stage.status;
    const item = el("li", { class: "stage stage-" + status, "data-stage": stage.name, "data-status": status });
    const head = el("div", { class: "stage-head" },
      el("span", { class: "badge" }, STATUS_LABELS[status] || status),
      el("span", { class: "stage-name" }, STAGE_LABELS[stage.name] || stage.name),
      status === "running" || status === "skipped" ? null
        : el("span", { class: "stage-time" }, formatMs(stage.duration_ms || 0)));
    item.append(head, el("p", { class: "stage-summary" }, stage.summary || ""));
    if (status === "failed" || status === "warning") {
      for (const finding of findingsOf(stage)) {
        item.append(el("div", { class: "finding", "data-code": finding.code },
          el("p", {}, el("span", { class: "finding-label" }, "Cause: "), finding.cause),
          el("p", {}, el("span", { class: "finding-label" }, "Fix: "), finding.fix),
          el("p", { class: "finding-code" }, finding.code)));
      }
    }
    const facts = stage.facts ? Object.entries(stage.facts) : [];
    if (facts.length) {
      const list = el("dl", { class: "facts" });
      for (const [key, value] of facts) {
        list.append(el("dt", {}, key), el("dd", {}, typeof value === "string" ? value : JSON.stringify(value)));
      }
      item.append(el("details", { class: "more" }, el("summary", {}, "Facts (" + facts.length + ")"), list));
    }
    const lines = stage.transcript || [];
    if (lines.length) {
      const pre = el("pre", { class: "transcript" });
      for (const line of lines) {
        const cls = line.dir === "C" ? "t-C" : line.dir === "S" ? "t-S" : "t-note";
        const prefix = line.dir === "*" ? "* " : line.dir + ": ";
        pre.append(el("span", { class: "t-time" }, line.t_ms.toFixed(1).padStart(8) + "  "),
          el("span", { class: cls }, prefix + line.text), "\n");
      }
      item.append(el("details", { class: "more" }, el("summary", {}, "Transcript (" + lines.length + " lines)"), pre));
    }
    return item;
  }

  function showAnonymous(finding) {
    $("anonymous-text").textContent = finding.cause;
    $("anonymous-warning").hidden = false;
  }

  function showReport(report, { live }) {
    currentReport = report;
    $("placeholder").hidden = true;
    if (!live) {
      $("stages").replaceChildren();
      for (const stage of report.stages) upsertStage(stage);
    }
    const valid = report.verdict === "valid";
    const failed = report.stages.find((s) => s.status === "failed");
    const warnings = report.stages.filter((s) => s.status === "warning").length;
    const verdict = $("verdict");
    verdict.className = "verdict " + (valid ? "verdict-valid" : "verdict-invalid");
    verdict.setAttribute("data-verdict", report.verdict);
    const text = valid
      ? "Configuration is valid" + (warnings ? " (" + warnings + " warning" + (warnings > 1 ? "s" : "") + ")" : "")
      : "Configuration failed at " + (STAGE_LABELS[failed.name] || failed.name);
    verdict.replaceChildren(
      el("span", { class: "verdict-icon", "aria-hidden": "true" }, valid ? "✓" : "✕"),
      el("strong", {}, text),
      el("span", { class: "verdict-meta" },
        (report.config.host || "") + ":" + (report.config.port || "") + " · " + formatMs(report.duration_ms)));
    verdict.hidden = false;
    renderWaterfall(report.stages);
    const link = $("share-link");
    link.href = "/diagnostics/" + encodeURIComponent(report.id);
    $("report-actions").hidden = false;
    if (live && window.history && window.location.pathname === "/") {
      window.history.replaceState(null, "", "/diagnostics/" + encodeURIComponent(report.id));
    }
  }

  function renderWaterfall(stages) {
    const total = stages.reduce((sum, s) => sum + (s.duration_ms || 0), 0) || 1;
    const box = $("waterfall");
    box.replaceChildren();
    let offset = 0;
    for (const stage of stages) {
      const ms = stage.duration_ms || 0;
      const bar = el("div", { class: "wf-bar wf-" + stage.status });
      bar.style.left = (offset / total * 100).toFixed(3) + "%";
      bar.style.width = (ms / total * 100).toFixed(3) + "%";
      box.append(el("span", { class: "wf-label" }, STAGE_LABELS[stage.name] || stage.name),
        el("div", { class: "wf-track", title: stage.status }, bar),
        el("span", { class: "wf-ms" }, stage.status === "skipped" ? "—" : formatMs(ms)));
      offset += ms;
    }
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
    for (const other of document.querySelectorAll(".preset")) other.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
  }

  function setupPresets() {
    const data = $("presets-data");
    if (!data) return;
    const presets = JSON.parse(data.textContent);
    const list = $("preset-list");
    for (const preset of presets) {
      const button = el("button", { type: "button", class: "preset", "aria-pressed": "false",
        "data-preset": preset.key, title: preset.description }, preset.label);
      button.addEventListener("click", () => applyPreset(preset, button));
      list.append(button);
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
  }

  document.addEventListener("DOMContentLoaded", () => {
    const tokenInput = $("api_token");
    if (tokenInput) tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
    setupPresets();
    $("config-form").addEventListener("submit", validate);
    $("copy-markdown").addEventListener("click", copyMarkdown);
    $("download-json").addEventListener("click", downloadJson);
    const id = document.body.dataset.reportId;
    if (id) loadStored(id);
  });
})();
