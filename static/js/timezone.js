// Fills the signup form's time zone from the browser, when the visitor has not chosen one.
// Without JavaScript the field is a plain text box with a list of suggestions.
(function () {
  "use strict";
  var field = document.getElementById("id_timezone");
  if (!field || field.value) {
    return;
  }
  try {
    var detected = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (detected) {
      field.value = detected;
      var note = document.getElementById("timezone-detected");
      if (note) {
        note.hidden = false;
      }
    }
  } catch (error) {
    // An old browser without Intl: the visitor picks from the list.
  }
})();
