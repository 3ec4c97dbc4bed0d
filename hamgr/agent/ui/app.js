// hamgr's status page: reads this agent's REST API every second and shows it.
// Read-only (GET only). Everything from the API is written with textContent, never as markup.
"use strict";

(function () {
  const REFRESH_MS = 1000;
  const TIMEOUT_MS = 2500;
  const EVENTS_SHOWN = 60;
  const state = { lastSeq: 0, events: [], sigs: {}, updated: null, self: null };

  // -- formatting ---------------------------------------------------------------------------

  function lsn(n) {
    if (typeof n !== "number") return "–";
    const hi = Math.floor(n / 4294967296);
    const lo = n - hi * 4294967296;
    return hi.toString(16).toUpperCase() + "/" + lo.toString(16).toUpperCase();
  }

  function bytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let v = n;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function clock(seconds) {
    if (typeof seconds !== "number") return "–";
    const d = new Date(seconds * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function dateTime(seconds) {
    if (typeof seconds !== "number" || seconds <= 0) return "–";
    const d = new Date(seconds * 1000);
    const day = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    return day + " " + clock(seconds);
  }

  // A CSS class from data: only letters, digits, '-' and '_' survive.
  function token(text) {
    return String(text == null ? "none" : text).replace(/[^A-Za-z0-9_-]/g, "_");
  }

  // -- DOM helpers (text only) --------------------------------------------------------------

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text != null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function cell(field, text, cls) {
    const td = el("td", text, cls);
    td.dataset.field = field;
    return td;
  }

  function setText(id, text, cls) {
    const node = document.getElementById(id);
    node.textContent = String(text);
    if (cls !== undefined) node.className = cls;
  }

  // Replace a table body's rows only when what they show changed (keeps selections).
  function fillRows(id, key, rows) {
    const sig = JSON.stringify(key);
    if (state.sigs[id] === sig) return;
    state.sigs[id] = sig;
    document.querySelector("#" + id + " tbody").replaceChildren(...rows);
  }

  // -- the API ------------------------------------------------------------------------------

  async function get(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch(path, {
        method: "GET",
        cache: "no-store",
        credentials: "omit",
        headers: { Accept: "application/json" },
        signal: ctl.signal,
      });
      const body = await resp.json().catch(() => null);
      if (!resp.ok) {
        const why = body && typeof body.error === "string" ? body.error : "HTTP " + resp.status;
        throw new Error(path + ": " + why);
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // -- sections -----------------------------------------------------------------------------

  function describeRequest(req) {
    if (!req) return "none";
    let text = req.kind;
    if (req.leader) text += " from " + req.leader;
    if (req.candidate) text += " to " + req.candidate;
    if (typeof req.scheduled_at === "number") text += " at " + dateTime(req.scheduled_at);
    return text;
  }

  function showCluster(c) {
    setText("scope", c.scope);
    document.title = "hamgr " + c.scope;
    setText("leader", c.leader || "none", c.leader ? "big" : "big bad");
    setText("timeline", c.timeline);
    setText("request", describeRequest(c.switchover), c.switchover ? "warn" : "");
    const sync = c.synchronous_mode && c.synchronous_mode !== "off" ? c.synchronous_mode : "";
    const mode = c.pause ? "paused (no automatic failover)" : "automatic failover";
    setText("mode", mode + (sync ? ", synchronous " + sync : ""), c.pause ? "warn" : "");
    const rows = c.members.map((m) => {
      const tr = el("tr");
      tr.dataset.member = m.name;
      tr.className = "role-" + token(m.role);
      const me = m.name === state.self ? " (this agent)" : "";
      tr.append(
        cell("name", m.name + me),
        cell("role", m.role, "badge role-" + token(m.role)),
        cell("state", m.state),
        cell("timeline", m.timeline == null ? "–" : m.timeline),
        cell("lag", m.role === "leader" || m.role === "standby_leader" ? "–" : bytes(m.lag)),
        cell("lsn", lsn(m.received_lsn) + " / " + lsn(m.replayed_lsn), "mono"),
        cell("fencer", m.fencer || "–", "fencer-" + token(m.fencer)),
        cell("reason", m.reason || "–", "reason"),
      );
      return tr;
    });
    fillRows("members", c.members, rows);
  }

  function showStore(s) {
    if (s.backend !== "raft") {
      setText("raft-leader", "etcd", "big");
      setText("store-summary", "etcd at " + (s.endpoints || []).join(", "));
      fillRows("store", [], []);
      return;
    }
    const leader = s.leader_name || (s.leader ? "member " + s.leader : "none");
    setText("raft-leader", leader, s.leader ? "big" : "big bad");
    const me = "this agent's store member " + s.id + (s.name ? " (" + s.name + ")" : "");
    const facts = [s.role, "term " + s.term, "commit " + s.commit, "applied " + s.applied];
    setText("store-summary", me + ": " + facts.join(", "));
    const rows = s.members.map((m) => {
      const tr = el("tr");
      tr.dataset.store = String(m.id);
      const link = m.connected === null ? "itself" : m.connected ? "connected" : "no link";
      tr.append(
        cell("id", m.id),
        cell("name", m.name || "?"),
        cell("suffrage", m.suffrage),
        cell("raft", m.leader ? "leader" : "", m.leader ? "badge role-leader" : ""),
        cell("address", m.address || "–", "mono"),
        cell("link", link, m.connected === false ? "bad" : ""),
      );
      return tr;
    });
    fillRows("store", s, rows);
  }

  function showHistory(h) {
    // Patroni's history lines: [timeline, lsn, reason, ISO timestamp, new leader].
    const rows = h
      .slice()
      .reverse()
      .map(([timeline, switchLsn, reason, at, newLeader]) => {
        const tr = el("tr");
        tr.dataset.timeline = String(timeline + 1);
        const kind = String(reason).startsWith("switchover") ? "switchover" : "failover";
        tr.append(
          cell("timeline", timeline + " → " + (timeline + 1)),
          cell("new_leader", newLeader),
          cell("switch_lsn", lsn(switchLsn), "mono"),
          cell("at", dateTime(Date.parse(at) / 1000)),
          cell("reason", reason, "kind-" + kind),
        );
        return tr;
      });
    fillRows("history", h, rows);
  }

  function showEvents(answer) {
    if (answer.last < state.lastSeq) {
      state.events = []; // the agent restarted: its numbering starts again
    }
    state.lastSeq = answer.last;
    if (!answer.events.length && state.sigs.events === state.lastSeq) return;
    state.events = state.events.concat(answer.events).slice(-EVENTS_SHOWN);
    state.sigs.events = state.lastSeq;
    const items = state.events
      .slice()
      .reverse()
      .map((e) => {
        const li = el("li", null, "kind-" + token(e.kind));
        li.dataset.kind = e.kind;
        li.dataset.seq = String(e.seq);
        li.append(el("time", clock(e.at)), el("span", e.kind, "badge"), el("span", e.text));
        return li;
      });
    document.getElementById("events").replaceChildren(...items);
  }

  // -- the refresh loop ---------------------------------------------------------------------

  async function refresh() {
    const since = state.lastSeq;
    const [me, cluster, store, history, events] = await Promise.allSettled([
      state.self ? Promise.resolve(null) : get("patroni"),
      get("cluster"),
      get("store"),
      get("history"),
      get("events?since=" + since),
    ]);
    const problems = [];
    if (me.status === "fulfilled" && me.value) {
      state.self = me.value.name;
      setText("events-source", "seen by " + state.self);
    }
    const parts = [
      [cluster, showCluster],
      [store, showStore],
      [history, showHistory],
      [events, showEvents],
    ];
    for (const [result, show] of parts) {
      if (result.status === "fulfilled") {
        show(result.value);
      } else {
        problems.push(String(result.reason && result.reason.message));
      }
    }
    const now = Date.now() / 1000;
    const who = state.self ? "served by " + state.self + ", " : "";
    if (problems.length === 0) {
      state.updated = now;
      setText("status", who + "updated " + clock(now));
      document.getElementById("status").dataset.state = "ok";
    } else {
      const last = state.updated ? " (last full update " + clock(state.updated) + ")" : "";
      setText("status", problems.join("; ") + last);
      document.getElementById("status").dataset.state = "error";
    }
  }

  async function loop() {
    try {
      await refresh();
    } catch (err) {
      setText("status", "refresh failed: " + String(err));
      document.getElementById("status").dataset.state = "error";
    }
    setTimeout(loop, REFRESH_MS);
  }

  loop();
})();
