// Live metric charts on a run's page: polls the run's metrics.json every 2 s while it is queued or
// running, and once more after it ends. One Chart.js line chart per <canvas data-keys="a,b,...">.
(function () {
  "use strict";

  var COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad"];
  var ACTIVE = { queued: true, running: true };

  function datasetsFor(keys, series) {
    var sets = [];
    keys.forEach(function (key, i) {
      var color = COLORS[i % COLORS.length];
      [["train", []], ["eval", [6, 4]]].forEach(function (split) {
        var points = (series[split[0]] || {})[key];
        if (!points || !points.length) { return; }
        sets.push({
          label: split[0] === "eval" ? key + " (validation)" : key,
          data: points.map(function (p) { return { x: p[0], y: p[1] }; }),
          borderColor: color,
          backgroundColor: color,
          borderDash: split[1],
          pointRadius: points.length > 40 ? 0 : 2,
          tension: 0.2
        });
      });
    });
    return sets;
  }

  function start() {
    var root = document.getElementById("charts");
    if (!root || typeof Chart === "undefined") { return; }
    var charts = [];
    root.querySelectorAll("canvas[data-keys]").forEach(function (canvas) {
      charts.push({
        keys: canvas.dataset.keys.split(","),
        chart: new Chart(canvas, {
          type: "line",
          data: { datasets: [] },
          options: {
            animation: false,
            parsing: false,
            maintainAspectRatio: false,
            scales: { x: { type: "linear", title: { display: true, text: "step" } } },
            plugins: { legend: { position: "bottom" } }
          }
        })
      });
    });

    function refresh() {
      fetch(root.dataset.metricsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (body) {
          charts.forEach(function (item) {
            item.chart.data.datasets = datasetsFor(item.keys, body.series);
            item.chart.update();
          });
          root.dataset.status = body.status;
          if (ACTIVE[body.status]) { setTimeout(refresh, 2000); }
        })
        .catch(function () { setTimeout(refresh, 5000); });
    }
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
