// smtp-diag history page: the API's list of past runs as a table. Server values go in with textContent only.
"use strict";

(function () {
  const TOKEN_KEY = "smtp-diag-token";
  const $ = (id) => document.getElementById(id);
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };

  async function load() {
    const headers = {};
    const tokenInput = $("api_token");
    const token = tokenInput ? tokenInput.value.trim() : "";
    if (token) { sessionStorage.setItem(TOKEN_KEY, token); headers["Authorization"] = "Bearer " + token; }
    $("history-error").hidden = true;
    const response = await fetch("/api/diagnostics?limit=100", { headers });
    if (!response.ok) {
      let message = "The service answered " + response.status + ".";
      try { message = (await response.json()).message || message; } catch (_) { /* keep the status */ }
      $("history-error").textContent = message;
      $("history-error").hidden = false;
      return;
    }
    const items = (await response.json()).items || [];
    const rows = $("history-rows");
    rows.replaceChildren();
    for (const item of items) {
      const tr = document.createElement("tr");
      tr.dataset.verdict = item.verdict;
      const link = document.createElement("a");
      link.href = "/diagnostics/" + encodeURIComponent(item.id);
      link.textContent = "Open";
      const open = document.createElement("td");
      open.append(link);
      tr.append(cell((item.started_at || "").slice(0, 19).replace("T", " ")), cell(item.host + ":" + item.port),
        cell(item.verdict), cell(item.failed_stage || "—"), open);
      rows.append(tr);
    }
    $("history-table").hidden = items.length === 0;
    $("history-empty").hidden = items.length !== 0;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const tokenInput = $("api_token");
    if (tokenInput) {
      tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
      $("token-form").addEventListener("submit", (event) => { event.preventDefault(); load(); });
      if (!tokenInput.value) return;
    }
    load();
  });
})();
