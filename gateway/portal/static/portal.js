// Draws every chart of the page with Plotly.js from the JSON spec the server wrote beside it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-chart]").forEach(function (box) {
    var spec = JSON.parse(document.getElementById(box.dataset.chart).textContent);
    // No mode bar: it covered the legend on phones, and the CSV link and table carry the numbers.
    var config = { responsive: true, displayModeBar: false };
    Plotly.newPlot(box, spec.data, spec.layout, config).then(function () {
      box.dataset.rendered = "true";
    });
  });
});
