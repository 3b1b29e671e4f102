// Keeps the accounts page current from /ws/live/ and drives its buttons through the REST API.
// Figures are updated in place (elements carry data-field); when orders or the set of
// positions change, the account's activity fragment is re-fetched from the server, so all
// markup is rendered by Django templates.
(function () {
  "use strict";

  const statusEl = document.getElementById("live-status");
  const csrfToken = (document.querySelector("[name=csrfmiddlewaretoken]") || {}).value;
  const refreshTimers = {};
  const refreshSeq = {};
  let socket = null;
  let attempts = 0;
  let everConnected = false;

  function card(accountId) {
    return document.querySelector(`[data-account="${accountId}"]`);
  }

  function groupThousands(text) {
    const [whole, fraction] = String(text).split(".");
    const sign = whole.startsWith("-") ? "-" : "";
    const digits = whole.replace("-", "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return sign + digits + (fraction !== undefined ? "." + fraction : "");
  }

  function show(el, value) {
    if (value === null || value === undefined) {
      el.textContent = "—";
      return;
    }
    el.textContent = el.hasAttribute("data-money") ? groupThousands(value) : value;
    if (el.hasAttribute("data-signed")) {
      el.classList.toggle("up", Number(value) > 0);
      el.classList.toggle("down", Number(value) < 0);
    }
  }

  // Server-rendered money figures get the same grouping and up/down colour as live ones.
  function decorate(scope) {
    scope.querySelectorAll("[data-money]").forEach((el) => {
      const text = el.textContent.trim();
      if (text && text !== "—") show(el, text.replace(/,/g, ""));
    });
  }

  function fill(scope, data) {
    scope.querySelectorAll("[data-field]").forEach((el) => {
      const name = el.getAttribute("data-field");
      if (name in data) show(el, data[name]);
    });
  }

  function refreshActivity(accountId) {
    const section = card(accountId);
    if (!section) return;
    clearTimeout(refreshTimers[accountId]);
    refreshTimers[accountId] = setTimeout(async () => {
      // Fetches may overlap and answer out of order: only the newest one may paint.
      const seq = (refreshSeq[accountId] = (refreshSeq[accountId] || 0) + 1);
      const box = section.querySelector("[data-activity-url]");
      const response = await fetch(box.dataset.activityUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const html = await response.text();
      if (seq !== refreshSeq[accountId]) return;
      box.innerHTML = html;
      decorate(box);
      subscribeQuotes();
    }, 50);
  }

  function onPosition(accountId, position) {
    const row = document.querySelector(`[data-position="${position.id}"]`);
    if (row && position.quantity !== 0) {
      fill(row, position);
    } else {
      refreshActivity(accountId); // a position opened or went flat: re-render the list
    }
  }

  function onQuote(quote) {
    document.querySelectorAll(`[data-quote="${quote.symbol}"]`).forEach((el) => show(el, quote.price));
  }

  function handle(message) {
    switch (message.type) {
      case "account.updated": {
        const section = card(message.account);
        if (section) {
          fill(section.querySelector("header"), message.data);
          fill(section.querySelector(".figures"), message.data);
        }
        break;
      }
      case "position.updated":
        onPosition(message.account, message.data);
        break;
      case "order.updated":
        refreshActivity(message.account);
        break;
      case "quote":
        onQuote(message.data);
        break;
    }
  }

  // After a reconnect, events sent while we were away are lost: read every card afresh.
  async function resync() {
    for (const section of document.querySelectorAll("[data-account]")) {
      const accountId = section.dataset.account;
      const response = await fetch(`/api/v1/accounts/${accountId}/`, { credentials: "same-origin" });
      if (response.ok) {
        const account = await response.json();
        fill(section.querySelector("header"), account);
        fill(section.querySelector(".figures"), account);
      }
      refreshActivity(accountId);
    }
  }

  function subscribeQuotes() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const symbols = [...new Set([...document.querySelectorAll("[data-quote]")].map((el) => el.dataset.quote))];
    if (symbols.length) socket.send(JSON.stringify({ action: "subscribe_quotes", symbols }));
  }

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/live/`);
    socket.addEventListener("open", () => {
      const reconnected = everConnected;
      everConnected = true;
      attempts = 0;
      setStatus("live", "live");
      subscribeQuotes();
      if (reconnected) resync();
    });
    socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      setStatus("down", "reconnecting…");
      setTimeout(connect, Math.min(500 * 2 ** attempts++, 10000));
    });
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return { ok: response.ok, status: response.status, data };
  }

  function say(form, text, ok) {
    const out = form.querySelector(".ticket-result");
    out.textContent = text;
    out.classList.toggle("error", !ok);
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("[data-ticket]");
    if (!form) return;
    event.preventDefault();
    const fields = new FormData(form);
    const body = {
      account: Number(fields.get("account")),
      symbol: fields.get("symbol"),
      side: event.submitter ? event.submitter.value : "buy",
      quantity: fields.get("quantity"),
      type: fields.get("type"),
      source: "ticket",
    };
    if (fields.get("limit_price")) body.limit_price = fields.get("limit_price");
    if (fields.get("stop_price")) body.stop_price = fields.get("stop_price");
    if (fields.get("trail_amount")) body.trail_amount = fields.get("trail_amount");
    // A bracket: the stop loss and take profit go out when the entry fills, in ticks from its fill.
    if (fields.get("stop_loss_ticks")) body.stop_loss = { ticks: Number(fields.get("stop_loss_ticks")) };
    if (fields.get("take_profit_ticks")) body.take_profit = { ticks: Number(fields.get("take_profit_ticks")) };
    // Manage: the default plan (partial exits at R multiples) plus breakeven once 1R is reached.
    if (fields.get("plan") && body.stop_loss) body.plan = { breakeven_after_ticks: body.stop_loss.ticks };
    else if (fields.get("plan")) body.plan = {};
    const result = await api("POST", "/api/v1/orders/", body);
    say(form, result.ok ? `Order ${result.data.id} ${result.data.status}` : result.data.detail || `Error ${result.status}`, result.ok);
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-close],[data-cancel],[data-flatten]");
    if (!button) return;
    const section = button.closest("[data-account]");
    const form = section.querySelector("[data-ticket]");
    let result;
    if (button.dataset.close) {
      result = await api("POST", `/api/v1/positions/${button.dataset.close}/close/`, {});
    } else if (button.dataset.cancel) {
      result = await api("POST", `/api/v1/orders/${button.dataset.cancel}/cancel/`);
    } else {
      if (!window.confirm("Cancel every working order and close every position of this account?")) return;
      result = await api("POST", `/api/v1/accounts/${button.dataset.flatten}/flatten/`);
    }
    say(form, result.ok ? "Sent." : result.data.detail || `Error ${result.status}`, result.ok);
  });

  decorate(document);
  connect();
})();
