// Admin pages: each <time data-local datetime="..."> shown in the browser's own time zone, and
// each [data-local-zone] names that zone. Without script the cells keep their UTC text.
(function () {
  "use strict";
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  var format = new Intl.DateTimeFormat(undefined, {weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"});
  document.querySelectorAll("[data-local-zone]").forEach(function (element) { element.textContent = zone; });
  document.querySelectorAll("time[data-local]").forEach(function (element) {
    var moment = new Date(element.getAttribute("datetime"));
    if (!isNaN(moment)) { element.textContent = format.format(moment); }
  });
})();
