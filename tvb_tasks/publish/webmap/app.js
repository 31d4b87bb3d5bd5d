/* Trame verte et bleue — carte web de la publication (MapLibre GL JS + PMTiles, sans fond de carte externe).
   Test hooks: window.tvbMap (the maplibregl.Map), window.tvbState {loaded, idle, errors, figures}. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("tvb-config").textContent);
  var state = { loaded: false, idle: false, errors: [], figures: 0, popups: 0 };
  window.tvbState = state;

  function esc(v) {
    return String(v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function fmt(v) {
    if (typeof v === "number") {
      return v.toLocaleString("fr-FR", { maximumFractionDigits: Math.abs(v) < 10 ? 2 : 1 });
    }
    if (v === true) { return "oui"; }
    if (v === false) { return "non"; }
    return v === null || v === undefined ? "—" : String(v);
  }

  var protocol = new pmtiles.Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  var tilesUrl = "pmtiles://" + new URL(config.pmtiles, window.location.href).href;

  var styleLayers = [{ id: "background", type: "background", paint: { "background-color": "#f4f1ea" } }];
  var interactive = [];
  config.layers.forEach(function (layer) {
    var color = layer.color;
    if (layer.categories && layer.categories.length) {
      var match = ["match", ["to-string", ["get", layer.by]]];
      layer.categories.forEach(function (c) { c.values.forEach(function (v) { match.push(v, c.color); }); });
      match.push(layer.color);
      color = match;
    }
    var common = { source: "tvb", "source-layer": layer.name, layout: { visibility: layer.visible ? "visible" : "none" } };
    if (layer.geometry === "polygon") {
      styleLayers.push(Object.assign({ id: layer.name + "-fill", type: "fill",
        paint: { "fill-color": color, "fill-opacity": layer.fill_opacity } }, common));
      styleLayers.push(Object.assign({ id: layer.name + "-line", type: "line",
        paint: { "line-color": layer.name === "communes" ? layer.color : color, "line-width": layer.name === "communes" ? 1 : 1.2 } },
        JSON.parse(JSON.stringify(common))));
      if (layer.fill_opacity > 0) { interactive.push(layer.name + "-fill"); } else { interactive.push(layer.name + "-line"); }
    } else if (layer.geometry === "line") {
      styleLayers.push(Object.assign({ id: layer.name + "-line", type: "line",
        layout: { visibility: layer.visible ? "visible" : "none", "line-cap": "round", "line-join": "round" },
        paint: { "line-color": color, "line-width": layer.width || 3 } }, { source: "tvb", "source-layer": layer.name }));
      interactive.push(layer.name + "-line");
    } else {
      styleLayers.push(Object.assign({ id: layer.name + "-circle", type: "circle",
        paint: { "circle-color": color, "circle-radius": layer.radius || 6, "circle-stroke-color": "#ffffff",
                 "circle-stroke-width": 1.5 } }, common));
      interactive.push(layer.name + "-circle");
    }
  });

  var map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources: { tvb: { type: "vector", url: tilesUrl, attribution: config.attribution } },
             layers: styleLayers },
    bounds: config.bounds,
    fitBoundsOptions: { padding: 20 },
    attributionControl: { compact: false },
    maxZoom: 18
  });
  window.tvbMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  map.on("error", function (e) {
    var msg = (e && e.error && e.error.message) || String(e);
    state.errors.push(msg);
    console.error("Erreur de la carte : " + msg);
  });
  map.on("load", function () { state.loaded = true; });
  map.on("idle", function () { if (state.loaded) { state.idle = true; } });

  // --- layer switcher + legend -----------------------------------------------------------------------------------
  var list = document.getElementById("tvb-layer-list");
  var legend = document.getElementById("tvb-legend-body");
  config.layers.slice().reverse().forEach(function (layer) {
    var li = document.createElement("li");
    var id = "tvb-toggle-" + layer.name;
    li.innerHTML = '<input type="checkbox" id="' + id + '"' + (layer.visible ? " checked" : "") + '> <label for="' +
      id + '">' + esc(layer.title) + "</label>";
    li.querySelector("input").addEventListener("change", function (ev) {
      var vis = ev.target.checked ? "visible" : "none";
      styleLayers.forEach(function (sl) {
        if (sl["source-layer"] === layer.name) { map.setLayoutProperty(sl.id, "visibility", vis); }
      });
    });
    list.appendChild(li);

    var block = document.createElement("div");
    block.className = "tvb-legend-block";
    var rows = (layer.categories && layer.categories.length) ? layer.categories : [{ label: layer.title, color: layer.color }];
    var outline = layer.geometry === "polygon" && !(layer.fill_opacity > 0);
    block.innerHTML = "<h3>" + esc(layer.title) + "</h3>" + rows.map(function (r) {
      var style = outline ? "background:transparent;border:2px solid " + esc(r.color) : "background:" + esc(r.color);
      return '<div class="tvb-legend-row"><span class="tvb-swatch tvb-' + layer.geometry + '" style="' + style +
        '"></span>' + esc(r.label) + "</div>";
    }).join("");
    legend.appendChild(block);
  });

  // --- popups ----------------------------------------------------------------------------------------------------
  var titles = {};
  config.layers.forEach(function (l) { titles[l.name] = l.title; });
  map.on("click", function (e) {
    var pad = 4;
    var box = [[e.point.x - pad, e.point.y - pad], [e.point.x + pad, e.point.y + pad]];
    var features = map.queryRenderedFeatures(box, { layers: interactive.filter(function (id) { return map.getLayer(id); }) });
    if (!features.length) { return; }
    var f = features[0];
    var props = f.properties || {};
    var rows = Object.keys(props).filter(function (k) {
      return config.hidden_fields.indexOf(k) < 0;
    }).map(function (k) {
      return "<tr><th>" + esc(config.field_labels[k] || k) + "</th><td>" + esc(fmt(props[k])) + "</td></tr>";
    }).join("");
    new maplibregl.Popup({ maxWidth: "320px" }).setLngLat(e.lngLat)
      .setHTML('<div class="tvb-popup"><h3>' + esc(titles[f.sourceLayer] || f.sourceLayer) + "</h3><table>" + rows + "</table></div>")
      .addTo(map);
    state.popups += 1;
  });
  interactive.forEach(function (id) {
    map.on("mouseenter", id, function () { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, function () { map.getCanvas().style.cursor = ""; });
  });

  // --- key figures -----------------------------------------------------------------------------------------------
  function figureRows(data) {
    var src = data && (data.key_figures || data.chiffres_cles || data);
    var out = [];
    if (Array.isArray(src)) {
      src.forEach(function (r) {
        if (r && typeof r === "object") {
          out.push({ label: r.libelle || r.label || r.name || r.id, value: r.value !== undefined ? r.value : r.valeur,
                     unit: r.unit || r.unite || "" });
        }
      });
    } else if (src && typeof src === "object") {
      Object.keys(src).forEach(function (k) {
        var v = src[k];
        if (v && typeof v === "object" && !Array.isArray(v) && (v.value !== undefined || v.valeur !== undefined)) {
          out.push({ label: v.libelle || v.label || config.figure_labels[k] || k,
                     value: v.value !== undefined ? v.value : v.valeur, unit: v.unit || v.unite || "" });
        } else if (typeof v === "number") {
          out.push({ label: config.figure_labels[k] || k, value: v, unit: (config.figure_units || {})[k] || "" });
        }
      });
    }
    return out;
  }
  var figures = document.getElementById("tvb-figures-body");
  fetch(config.indicators).then(function (r) {
    if (!r.ok) { throw new Error("HTTP " + r.status); }
    return r.json();
  }).then(function (data) {
    var rows = figureRows(data);
    figures.innerHTML = rows.length ? rows.map(function (r) {
      return "<dt>" + esc(r.label) + "</dt><dd>" + esc(fmt(r.value)) + (r.unit ? " " + esc(r.unit) : "") + "</dd>";
    }).join("") : "<dd>Aucun chiffre clé dans cette publication.</dd>";
    state.figures = rows.length;
  }).catch(function () {
    figures.innerHTML = "<dd>Chiffres clés indisponibles.</dd>";
  });
})();
