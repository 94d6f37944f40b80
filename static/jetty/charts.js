// Draw every plotly figure on the page: each div.chart has its figure's JSON in <script id="ID-data">.
(function () {
  document.querySelectorAll("div.chart").forEach((div) => {
    const data = document.getElementById(div.id + "-data");
    if (!data) return;
    const figure = JSON.parse(data.textContent);
    window.Plotly.newPlot(div, figure.data, figure.layout, { responsive: true, displaylogo: false });
  });
})();
