// The status page's live updates: one EventSource, each `status` event a whole snapshot
// (the JSON of /api/v1/status) rendered as factory/web/status_html.py renders it. When the
// station cannot be reached the page keeps the last snapshot and says so.
"use strict";
(function () {
  var STALE_MS = 40000; // the station sends at least every 15 s; silence this long = lost
  var COUNTERS = [["issued", "Issued"], ["verified", "Verified"], ["labelled", "Labelled"],
    ["registered", "Registered"], ["preclaimed", "Pre-claimed"], ["failed", "Failed"],
    ["voided", "Voided"]];
  var PRINTER = {none: "None", idle: "Ready", unavailable: "NOT PRINTING"};
  var source = null, watchdog = null, lostSince = null;

  function h(tag, cls) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }
  function fill(id, nodes) {
    var el = document.getElementById(id);
    el.replaceChildren.apply(el, nodes);
    return el;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(at) {
    if (!at) return "";
    var d = new Date(at);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
  }

  function attention(snap) {
    if (!snap.attention.length) return [h("div", "alert", h("p", "what", "Line OK: nothing needs you now"))];
    return snap.attention.map(function (a) {
      return h("div", "alert", h("p", "what", a.what), h("p", "action", a.action));
    });
  }
  function fixtures(snap) {
    if (!snap.fixtures.length) return [h("p", "empty", "No fixtures in this station's config")];
    return snap.fixtures.map(function (f) {
      var card = h("article", "fixture tone-" + f.tone, h("h2", "", f.name), h("p", "state", f.words));
      if (f.uci) card.appendChild(h("p", "uci", f.uci));
      if (f.reason) card.appendChild(h("p", "reason", f.reason));
      if (f.action) card.appendChild(h("p", "action", f.action));
      card.appendChild(h("p", "tally", f.done + " done · " + f.failed + " failed"));
      return card;
    });
  }
  function counts(snap) {
    var head = h("thead", "", h("tr", "", h("th", ""), h("th", "", "Shift from " + snap.shift.name),
      h("th", "", "Today")));
    var body = h("tbody", "");
    COUNTERS.forEach(function (pair) {
      var row = h("tr", "count-" + pair[0], h("th", "", pair[1]));
      ["shift", "today"].forEach(function (window) {
        var n = snap.counts[window][pair[0]];
        row.appendChild(h("td", pair[0] === "failed" && n ? window + " warn" : window, n));
      });
      body.appendChild(row);
    });
    return [head, body];
  }
  function tiles(snap) {
    var rate = h("div", "tile", h("h2", "", "Units per hour"), h("p", "big", snap.units_per_hour),
      h("p", "", "verified in the last hour"));
    var up = snap.upstream, upstream;
    if (!up.enabled) {
      upstream = h("div", "tile", h("h2", "", "Upstream"), h("p", "big", "None"),
        h("p", "", "units are not registered"));
    } else {
      upstream = h("div", "tile tone-" + (up.refused ? "stop" : "idle"), h("h2", "", "Upstream backlog"),
        h("p", "big", up.pending), h("p", "", "waiting to register"));
      if (up.oldest_age_seconds !== null) upstream.appendChild(h("p", "", "oldest " + duration(up.oldest_age_seconds)));
      if (up.failed) upstream.appendChild(h("p", "", up.failed + " refused, set aside"));
      if (up.last_error) upstream.appendChild(h("p", "detail", up.last_error));
    }
    var pr = snap.printer;
    var printer = h("div", "tile tone-" + (pr.state === "unavailable" ? "stop" : "idle"), h("h2", "", "Printer"),
      h("p", "big", PRINTER[pr.state] || pr.state),
      h("p", "", pr.enabled ? "queue " + pr.queue : "labels are kept as PDF"));
    if (pr.reason) printer.appendChild(h("p", "detail", pr.reason));
    return [rate, upstream, printer];
  }
  function units(snap) {
    if (!snap.units.length) return [h("tr", "", h("td", "empty", "No units yet"))];
    return snap.units.map(function (u) {
      return h("tr", "unit state-" + u.state, h("td", "time", clock(u.updated_at)), h("td", "uci", u.human),
        h("td", "steps", u.steps.map(function (s) { return s.words; }).join(" › ")));
    });
  }

  function render(snap) {
    document.getElementById("station").textContent = snap.station;
    document.getElementById("updated").textContent = clock(snap.now);
    fill("attention", attention(snap)).className = "attention tone-" + (snap.attention.length ? "stop" : "ok");
    fill("fixtures", fixtures(snap));
    fill("counts", counts(snap));
    fill("tiles", tiles(snap));
    fill("units", units(snap));
  }

  function live() {
    lostSince = null;
    document.body.classList.remove("offline");
    document.getElementById("lost").hidden = true;
    var link = document.getElementById("link");
    link.textContent = "Live";
    link.className = "link live";
    clearTimeout(watchdog);
    watchdog = setTimeout(lost, STALE_MS);
  }
  function lost() {
    if (lostSince === null) lostSince = new Date();
    document.body.classList.add("offline");
    document.getElementById("lost-since").textContent = clock(lostSince.toISOString());
    document.getElementById("lost").hidden = false;
    var link = document.getElementById("link");
    link.textContent = "Not connected";
    link.className = "link lost";
  }

  function connect() {
    source = new EventSource("api/v1/status/events");
    source.addEventListener("status", function (event) {
      render(JSON.parse(event.data));
      live();
    });
    source.onerror = function () {
      lost();
      // The browser retries a dropped stream by itself, but gives up on an error answer.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
    };
  }
  connect();
})();
