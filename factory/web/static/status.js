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

  // Label scans. A keyboard-wedge scanner types a code far faster than a person and ends it
  // with its suffix (Enter or Tab): keys each within SCAN_GAP_MS of the last, SCAN_MIN or
  // more, then the suffix, are a scan, sent to the fixture whose card asks for one wherever
  // the focus is. Slower keys are a person typing: taken only in a scan field, on Enter.
  var SCAN_GAP_MS = 60, SCAN_MIN = 8;
  var burst = "", lastKey = -Infinity;

  function scanForm(name) {
    return document.querySelector('form.scan[data-fixture="' + CSS.escape(name) + '"]');
  }
  function scanForms() { return document.querySelectorAll("form.scan"); }
  function waitingFixture() {
    var cards = document.querySelectorAll("article[data-wants-scan]");
    for (var i = 0; i < cards.length; i++) {
      var name = cards[i].getAttribute("data-fixture");
      if (scanForm(name)) return name;
    }
    return null;
  }
  function fieldOf(el) {
    return el && el.form && el.form.classList.contains("scan") ? el : null;
  }
  // The field of a fixture that waits for a scan has the focus (unless another waiting
  // fixture's field has it already).
  function focusWaiting() {
    var name = waitingFixture();
    if (name === null) return;
    var field = fieldOf(document.activeElement);
    if (field && document.querySelector('article[data-wants-scan][data-fixture="'
        + CSS.escape(field.form.getAttribute("data-fixture")) + '"]')) return;
    scanForm(name).elements.code.focus();
  }
  function say(answer, text, how) {
    answer.textContent = text;
    answer.className = "answer" + (how ? " " + how : "");
  }
  function send(name, code) {
    var answer = scanForm(name).querySelector("output");
    say(answer, "Sent " + code, "");
    fetch("api/v1/fixtures/" + encodeURIComponent(name) + "/scan", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({code: code})
    }).then(function (response) {
      return response.json().then(function (body) {
        if (response.status === 200) say(answer, body.message, body.accepted ? "accepted" : "refused");
        else say(answer, body.detail || ("the station answered " + response.status), "refused");
      });
    }).catch(function () { say(answer, "The station did not answer: scan again", "refused"); });
  }
  document.addEventListener("keydown", function (event) {
    if (!scanForms().length) return;
    var now = event.timeStamp, field = fieldOf(event.target);
    if (event.key === "Enter" || event.key === "Tab") {
      var scanned = burst.length >= SCAN_MIN && now - lastKey <= SCAN_GAP_MS ? burst : "";
      burst = "";
      if (scanned) {
        event.preventDefault();
        var name = field ? field.form.getAttribute("data-fixture") : waitingFixture();
        if (name === null) name = scanForms()[0].getAttribute("data-fixture");
        if (field) field.value = "";
        send(name, scanned);
      } else if (field && event.key === "Enter") {  // a person typed the code off the label
        event.preventDefault();
        var code = field.value.trim();
        field.value = "";
        if (code) send(field.form.getAttribute("data-fixture"), code);
      }
      return;
    }
    if (event.key.length !== 1 || event.ctrlKey || event.metaKey || event.altKey) return;
    if (now - lastKey > SCAN_GAP_MS) burst = "";
    burst += event.key;
    lastKey = now;
  }, true);
  document.addEventListener("submit", function (event) { event.preventDefault(); }, true);

  function connect() {
    source = new EventSource("api/v1/status/events?view=page");
    source.addEventListener("page", function (event) {
      show(JSON.parse(event.data));
      live();
      focusWaiting();
    });
    source.onerror = function () {
      lost();
      // The browser retries a dropped stream by itself, but gives up on an error answer.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
    };
  }
  connect();
})();
