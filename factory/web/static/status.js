// The status page's live updates: one EventSource on the page's own stream, each `page`
// event the page's live parts already rendered by the station (factory/web/status_html.py,
// the only place the page's markup is built), swapped in by element id. When the station
// cannot be reached the page keeps the last state and says so.
"use strict";
(function () {
  var STALE_MS = 40000; // the station sends at least every 15 s; silence this long = lost
  var source = null, watchdog = null, lostSince = null;

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }

  // parts: {element id: {html: inner HTML, class: the element's class where it changes}}.
  function show(parts) {
    Object.keys(parts).forEach(function (id) {
      var el = document.getElementById(id), part = parts[id];
      if (!el) return; // a part this (older) page has no place for
      el.innerHTML = part.html;
      if (part["class"] !== undefined) el.className = part["class"];
    });
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
    // The time this screen lost the station, by its own clock: the station cannot say.
    if (lostSince === null) lostSince = new Date();
    document.body.classList.add("offline");
    document.getElementById("lost-since").textContent = clock(lostSince);
    document.getElementById("lost").hidden = false;
    var link = document.getElementById("link");
    link.textContent = "Not connected";
    link.className = "link lost";
  }

  function connect() {
    source = new EventSource("api/v1/status/events?view=page");
    source.addEventListener("page", function (event) {
      show(JSON.parse(event.data));
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
