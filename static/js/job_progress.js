// The page of a job a worker runs (an import, a bulk action) follows it: while the job runs,
// its #job-progress part is fetched again every few seconds and put in place of the old one.
// Without JavaScript the page says to refresh it.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;
  var region = document.getElementById("job-progress");
  if (!region || region.dataset.running !== "true") {
    return;
  }

  function later(delay) {
    window.setTimeout(refresh, delay);
  }

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("job-progress");
        if (!fresh) {
          return;
        }
        region.replaceWith(fresh);
        region = fresh;
        if (fresh.dataset.running === "true") {
          later(INTERVAL_MS);
        }
      })
      .catch(function () {
        later(INTERVAL_MS * 5); // the server restarting, a network blip: try again, slower
      });
  }

  later(INTERVAL_MS);
})();
