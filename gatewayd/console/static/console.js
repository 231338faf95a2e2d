// gatewayd console: what pages do with a script (they work without one).
// - <time datetime> shown in the browser's time zone;
// - the dashboard's charts (uPlot), fetched as JSON and refreshed.
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      el.title = el.textContent;
      el.textContent = at.toLocaleString();
      el.setAttribute("data-local", "");
    });
  }

  var COLOURS = {
    Queued: "#d08b00", Sent: "#1f6feb", Delivered: "#1b9e4b",
    DeliveryFailed: "#c62828", SendingFailed: "#8e24aa", Received: "#00897b"
  };

  function chart(el) {
    var url = el.getAttribute("data-series");
    var every = parseInt(el.getAttribute("data-refresh"), 10) || 5000;
    var plot = null;
    function draw(data) {
      var rows = [data.x].concat(data.series.map(function (s) { return s.values; }));
      if (plot) { plot.setData(rows); return; }
      var series = [{}].concat(data.series.map(function (s) {
        return { label: s.label, stroke: COLOURS[s.label] || "#888", width: 2,
                 points: { show: false } };
      }));
      var dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
      var grid = { stroke: dark ? "#2c3441" : "#e3e6ea" };
      var text = dark ? "#c9d1dc" : "#3a4250";
      plot = new uPlot({
        width: el.clientWidth || 400, height: 220, series: series,
        axes: [{ stroke: text, grid: grid }, { stroke: text, grid: grid }],
        scales: { y: { range: function (u, min, max) { return [0, Math.max(4, max)]; } } }
      }, rows, el);
      new ResizeObserver(function () {
        if (plot && el.clientWidth) { plot.setSize({ width: el.clientWidth, height: 220 }); }
      }).observe(el);
    }
    function load() {
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { draw(data); el.setAttribute("data-loaded", "1"); } })
        .catch(function () {});
    }
    load();
    setInterval(load, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    if (window.uPlot) { document.querySelectorAll("[data-series]").forEach(chart); }
  });
  document.addEventListener("htmx:afterSettle", function () { localTimes(document); });
})();
