// After a failed post the page comes back with an error summary at the form (role="alert",
// tabindex="-1"): move focus there, which scrolls it into view on a phone, where the form is
// thousands of pixels below the top, and has screen readers read it out.
//
// The form posts to /signup/#signup so that the browser, without JavaScript too, scrolls to the
// form. Scrolling to a fragment whose element cannot take focus also moves focus back to the
// page, and Chromium does that after deferred scripts have run: focus the summary once the page
// has loaded, and at once too for the posts that come without the fragment (partner sites).
(function () {
  "use strict";
  var summary = document.getElementById("signup-errors");
  if (!summary) {
    return;
  }
  function focusSummary() {
    if (document.activeElement !== summary) {
      summary.focus();
    }
  }
  focusSummary();
  window.addEventListener("load", focusSummary);
})();
