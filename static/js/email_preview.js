// Live preview of an email template in the admin: renders what is typed, without saving.
(function () {
  "use strict";
  var panel = document.getElementById("email-preview");
  if (!panel) {
    return;
  }
  var form = panel.closest("form");
  var fields = ["id_subject", "id_body", "id_course", "id_kind", "id_week_number", "preview-cohort"];
  var timer = null;
  var latest = 0;

  function value(id) {
    var element = document.getElementById(id);
    return element ? element.value : "";
  }

  function show(data) {
    var errors = data.errors || [];
    var box = document.getElementById("preview-error");
    var list = document.getElementById("preview-error-list");
    // The admin's red error style only while there is an error: never an empty red bar.
    box.hidden = errors.length === 0;
    box.classList.toggle("errornote", errors.length > 0);
    list.replaceChildren.apply(list, errors.map(function (message) {
      var item = document.createElement("li");
      item.textContent = message;
      return item;
    }));
    if (errors.length) {
      return;
    }
    document.getElementById("preview-subject").textContent = data.subject;
    document.getElementById("preview-html").srcdoc = data.html;
    document.getElementById("preview-text").textContent = data.text;
    document.getElementById("preview-who").textContent = "Shown for " + data.who + ".";
  }

  function refresh() {
    var request = ++latest;
    var body = new FormData();
    body.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    body.append("subject", value("id_subject"));
    body.append("body", value("id_body"));
    body.append("course", value("id_course"));
    body.append("kind", value("id_kind"));
    body.append("week_number", value("id_week_number"));
    body.append("preview_cohort", value("preview-cohort"));
    fetch(panel.dataset.previewUrl, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) { if (request === latest) { show(data); } })
      .catch(function () { show({ errors: ["The preview could not be loaded."] }); });
  }

  fields.forEach(function (id) {
    var element = document.getElementById(id);
    if (element) {
      element.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(refresh, 300);
      });
      element.addEventListener("change", refresh);
    }
  });
  refresh();
})();
