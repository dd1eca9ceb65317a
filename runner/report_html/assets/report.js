// report.html viewers: a clicked span highlights the spans it links to (in the same example) and shows
// its note and each link's label; filters keep bright only the spans carrying a checked tag.
(function () {
  "use strict";
  function clearExample(ex) {
    ex.querySelectorAll(".span.hl, .span.active").forEach(function (s) { s.classList.remove("hl", "active"); });
  }
  function show(span) {
    var ex = span.closest(".example");
    if (!ex) { return; }
    clearExample(ex);
    span.classList.add("active");
    var links = JSON.parse(span.getAttribute("data-links") || "[]");
    var detail = ex.querySelector(".detail");
    var lines = [];
    var numbers = [];
    var first = null;
    links.forEach(function (link) {
      var target = null;
      ex.querySelectorAll("[data-sid]").forEach(function (s) {
        if (s.getAttribute("data-sid") === link.target) { target = s; }
      });
      if (target) {
        target.classList.add("hl");
        first = first || target;
        var num = target.querySelector(".num");
        numbers.push(num ? num.textContent : link.target);
      }
      if (link.label) {
        var b = document.createElement("span");
        b.className = "verdict " + (link.tag || "");
        b.textContent = link.label;
        lines.push(b);
      }
    });
    if (detail) {
      detail.textContent = "";
      var note = span.getAttribute("data-note");
      if (note) { var p = document.createElement("div"); p.textContent = note; detail.appendChild(p); }
      if (!lines.length && numbers.length) {
        var c = document.createElement("div");
        c.textContent = "cited sentences: " + numbers.join(", ");
        detail.appendChild(c);
      }
      lines.forEach(function (b) { detail.appendChild(b); });
      if (!links.length && !note) { detail.textContent = "no citation"; }
      detail.hidden = false;
    }
    if (first && first.scrollIntoView) { first.scrollIntoView({ block: "nearest" }); }
  }
  document.addEventListener("click", function (e) {
    var span = e.target.closest ? e.target.closest(".span.item") : null;
    if (span) { show(span); }
  });
  document.addEventListener("keydown", function (e) {
    if ((e.key === "Enter" || e.key === " ") && e.target.classList && e.target.classList.contains("item")) {
      e.preventDefault(); show(e.target);
    }
  });
  function applyFilters(box) {
    var tags = [];
    box.querySelectorAll("input.filter:checked").forEach(function (c) { tags.push(c.value); });
    box.querySelectorAll(".example").forEach(function (ex) {
      var any = false;
      ex.querySelectorAll(".span.item").forEach(function (s) {
        var own = (s.getAttribute("data-tags") || "").split(" ");
        var keep = !tags.length || tags.some(function (t) { return own.indexOf(t) >= 0; });
        s.classList.toggle("dim", !keep);
        any = any || keep;
      });
      ex.classList.toggle("hidden", tags.length > 0 && !any);
    });
  }
  document.addEventListener("change", function (e) {
    if (e.target.classList && e.target.classList.contains("filter")) { applyFilters(e.target.closest(".examples")); }
  });
})();
