// The inbox page: every value from a message goes into the DOM through textContent (never innerHTML);
// the HTML body goes into a sandboxed iframe (no scripts, unique origin) under a CSP with no remote content.
"use strict";

const FRAME_POLICY = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:\">";
const POLL_MS = 3000;
let selected = null;
let shownTab = "text";

function token() {
  return sessionStorage.getItem("fake-smtp-token") || "";
}

async function api(path, options = {}) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (response.status === 401) {
    document.getElementById("token-label").hidden = false;
    throw new Error("This inbox needs its token: enter it above.");
  }
  if (!response.ok) {
    throw new Error("The inbox answered " + response.status + ".");
  }
  return response;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function loadList() {
  try {
    const data = await (await api("/messages?meta=1")).json();
    const body = document.querySelector("#messages tbody");
    const rows = data.messages.slice().reverse().map((message) => {
      const row = document.createElement("tr");
      row.dataset.id = String(message.id);
      row.setAttribute("aria-selected", String(message.id === selected));
      cell(row, String(message.id));
      cell(row, message.mail_from);
      cell(row, message.rcpt_tos.join(", "));
      cell(row, message.subject === null ? "(no subject)" : message.subject);
      cell(row, new Date(message.received_at).toLocaleTimeString());
      row.addEventListener("click", () => openMessage(message.id));
      return row;
    });
    body.replaceChildren(...rows);
    document.getElementById("counts").textContent =
      data.messages.length + " message(s)" + (data.dropped ? ", " + data.dropped + " dropped" : "");
    setStatus(data.messages.length ? "" : "No messages yet.");
  } catch (error) {
    setStatus(error.message);
  }
}

function showTab(name) {
  shownTab = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-pressed", String(button.dataset.tab === name));
  }
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("shown", tab.id === "tab-" + name);
  }
}

async function openMessage(id) {
  selected = id;
  for (const row of document.querySelectorAll("#messages tbody tr")) {
    row.setAttribute("aria-selected", String(row.dataset.id === String(id)));
  }
  try {
    const message = await (await api("/messages/" + id)).json();
    document.getElementById("message-pane").hidden = false;
    document.getElementById("subject").textContent = message.subject === null ? "(no subject)" : message.subject;
    document.getElementById("tab-text").textContent = message.text === null ? "(no text part)" : message.text;
    document.getElementById("html-frame").srcdoc =
      message.html === null ? FRAME_POLICY + "<p>(no HTML part)</p>" : FRAME_POLICY + message.html;
    const headers = message.headers.map(([name, value]) => {
      const row = document.createElement("tr");
      cell(row, name);
      cell(row, value);
      return row;
    });
    document.querySelector("#tab-headers tbody").replaceChildren(...headers);
    document.getElementById("tab-raw").textContent = message.raw;
    showTab(message.text === null && message.html !== null ? "html" : shownTab);
  } catch (error) {
    setStatus(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("refresh").addEventListener("click", loadList);
  document.getElementById("delete-all").addEventListener("click", async () => {
    try {
      await api("/messages", { method: "DELETE" });
      selected = null;
      document.getElementById("message-pane").hidden = true;
      await loadList();
    } catch (error) {
      setStatus(error.message);
    }
  });
  document.getElementById("token").addEventListener("change", (event) => {
    sessionStorage.setItem("fake-smtp-token", event.target.value);
    loadList();
  });
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  showTab("text");
  loadList();
  setInterval(loadList, POLL_MS);
});
