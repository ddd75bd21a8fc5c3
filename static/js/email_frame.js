// The development outbox: each email's HTML frame grows to the email's own height, so the
// email reads as one page instead of a box that scrolls inside the page.
(function () {
  "use strict";

  function fit(frame) {
    var html = frame.contentDocument && frame.contentDocument.documentElement;
    if (!html) {
      return;
    }
    var border = frame.offsetHeight - frame.clientHeight;
    // The <html> element's own height is its content's, whatever the frame's height now is.
    frame.style.height = Math.ceil(html.getBoundingClientRect().height) + border + "px";
  }

  document.querySelectorAll("iframe.email-frame").forEach(function (frame) {
    function watch() {
      fit(frame);
      var body = frame.contentDocument && frame.contentDocument.body;
      if (body && window.ResizeObserver) {
        // Pictures arriving and the page's width changing both move the email's height.
        new ResizeObserver(function () { fit(frame); }).observe(body);
      }
    }
    frame.addEventListener("load", watch);
    if (frame.contentDocument && frame.contentDocument.readyState === "complete" && frame.contentDocument.body) {
      watch();
    }
  });
})();
