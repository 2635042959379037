// Live metric charts on a run's page: polls the run's metrics.json every 2 s while it is queued or
// running, and once more after it ends. One Chart.js line chart per <canvas data-keys="a,b,..."
// data-splits="train,eval">. Training batches are solid lines; validation is dashed with marked points
// (few, and the same rows each time). A chart with no points in any of its series stays hidden.
(function () {
  "use strict";

  var COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad"];
  var ACTIVE = { queued: true, running: true };
  var SPLITS = {
    train: { suffix: " (training batches)", dash: [], point: "circle" },
    eval: { suffix: " (validation)", dash: [6, 4], point: "rectRot" }
  };

  function datasetsFor(keys, splits, series) {
    var sets = [];
    keys.forEach(function (key, i) {
      var color = COLORS[i % COLORS.length];
      splits.forEach(function (split) {
        var style = SPLITS[split];
        var points = (series[split] || {})[key];
        if (!style || !points || !points.length) { return; }
        var validation = split === "eval";
        sets.push({
          label: key + style.suffix,
          data: points.map(function (p) { return { x: p[0], y: p[1] }; }),
          borderColor: color,
          backgroundColor: color,
          borderDash: style.dash,
          borderWidth: validation ? 2 : 1.5,
          pointStyle: style.point,
          pointRadius: validation ? 4 : (points.length > 40 ? 0 : 2),
          tension: validation ? 0 : 0.2
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
        figure: canvas.closest("figure"),
        keys: canvas.dataset.keys.split(","),
        splits: (canvas.dataset.splits || "train,eval").split(","),
        chart: new Chart(canvas, {
          type: "line",
          data: { datasets: [] },
          options: {
            animation: false,
            parsing: false,
            maintainAspectRatio: false,
            scales: {
              x: { type: "linear", title: { display: true, text: "step" } },
              y: "share" in canvas.dataset ? { min: 0, max: 1 } : {}
            },
            plugins: { legend: { position: "bottom", labels: { usePointStyle: true } } }
          }
        })
      });
    });

    function refresh() {
      fetch(root.dataset.metricsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (body) {
          charts.forEach(function (item) {
            var sets = datasetsFor(item.keys, item.splits, body.series);
            var wasHidden = item.figure && item.figure.hidden;
            if (item.figure) { item.figure.hidden = sets.length === 0; }
            item.chart.data.datasets = sets;
            if (wasHidden && sets.length) { item.chart.resize(); }
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
