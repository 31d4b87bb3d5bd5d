/* Trame verte et bleue — carte web de la publication (MapLibre GL JS + PMTiles ; fond de carte facultatif, configuré).
   Everything the page shows comes from the #tvb-config JSON written by tvb_tasks/publish/webmap (layers, French
   labels, value words, units, credits, base map) and from indicators.json: a layer added to the published list gets a
   legend entry and a popup without changes here.
   Test hooks: window.tvbMap (the maplibregl.Map), window.tvbState {loaded, idle, errors, figures, popups, labels}. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("tvb-config").textContent);
  var state = { loaded: false, idle: false, errors: [], figures: 0, popups: 0, labels: 0 };
  window.tvbState = state;
  var communeFigures = {};        // insee -> row of indicators.json "communes"

  function esc(v) {
    return String(v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(v, decimals) {
    var d = decimals === undefined ? (Math.abs(v) < 10 ? 2 : 1) : decimals;
    var x = Number(v), f = Math.pow(10, d);
    if (Math.round(Math.abs(x) * f) === 0) { x = 0; }          // never "-0" (a value rounding to zero is 0)
    return x.toLocaleString("fr-FR", { minimumFractionDigits: 0, maximumFractionDigits: d });
  }
  function fmt(v) {
    if (typeof v === "number") { return num(v); }
    if (v === true) { return "oui"; }
    if (v === false) { return "non"; }
    return v === null || v === undefined ? "—" : String(v);
  }
  function words(field, value) {
    var map = (config.value_labels || {})[field] || {};
    return String(value).split(/[+,]/).map(function (p) { return p.trim(); }).filter(Boolean)
      .map(function (p) { return map[p] || p; }).join(", ");
  }
  function empty(v) { return v === null || v === undefined || v === ""; }
  function truthy(v) { return v === true || v === 1 || v === "1" || v === "true" || v === "True"; }
  function yesNo(v) { return truthy(v) ? "oui" : "non"; }
  // "N2000_ZPS Marais … ; patch 1" → "Natura 2000 (ZPS) Marais … ; tache d'habitat 1"
  function siteWords(v) {
    var codes = (config.value_labels || {}).protection_types || {}, words = config.origin_name_words || {};
    return String(v).split(/;\s*/).map(function (part) {
      var m = part.match(/^(\S+)\s*(.*)$/);
      if (!m) { return part; }
      var head = codes[m[1]] || words[m[1]];
      return head ? (head + (m[2] ? " " + m[2] : "")) : part;
    }).join(" ; ");
  }

  // one reader-facing value per popup format (see styles.POPUP_FIELDS)
  function formatValue(format, field, v, props) {
    switch (format) {
      case "ha": return num(v, v < 10 ? 2 : 1) + " ha";
      case "km": return num(v / 1000, 2) + " km";
      case "m": return num(v, 0) + " m";
      case "int": return num(v, 0);
      case "cost": return num(v, 0) + ' <span class="tvb-note">' + esc(config.unit_notes.cost) + "</span>";
      case "friction": return num(v, 1) + ' <span class="tvb-note">(' + esc(config.unit_notes.friction) + ")</span>";
      case "code": return esc(words(field, v));
      case "codes": return esc(words(field, v));
      case "sites": return esc(siteWords(v));
      case "bool": return yesNo(v);
      case "index": return num(v, 0) + ' <span class="tvb-note">(' + esc(config.unit_notes.index) + ")</span>";
      case "score": return num(v, 2) + ' <span class="tvb-note">(' + esc(config.unit_notes.score) + ")</span>";
      case "gain_pct": return Number(v) <= 0 ? "gain nul" : Number(v) < 0.01 ? "&lt; 0,01 %" : num(v, 2) + " %";
      case "gain_ha": return Number(v) <= 0 ? "gain nul" : Number(v) < 0.1 ? "&lt; 0,1 ha" : num(v, 1) + " ha";
      case "km_pos": return Number(v) > 0 ? num(v / 1000, 2) + " km" : null;
      case "m_pos": return Number(v) > 0 ? num(v, 0) + " m" : null;
      case "share": return num(Number(v) * 100, 0) + " %";
      case "conflict": return Number(v) > 0 ? "oui (poids " + num(v, 2) + ")" : "non";
      case "infra_class":
        if (props.infrastructure === "road") { return "importance " + esc(v) + " (1 = autoroute … 5 = desserte locale)"; }
        if (props.infrastructure === "culvert") { return "busage " + esc(words("infra_class", v)); }
        return esc(words("infra_class", v));
      default: return esc(fmt(v));
    }
  }

  // --- sources and style --------------------------------------------------------------------------------------------
  var protocol = new pmtiles.Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  var tilesUrl = "pmtiles://" + new URL(config.pmtiles, window.location.href).href;
  var sources = { tvb: { type: "vector", url: tilesUrl, attribution: esc(config.attribution) } };
  var styleLayers = [{ id: "background", type: "background", paint: { "background-color": "#f4f1ea" } }];
  if (config.basemap) {
    sources.basemap = { type: "raster", tiles: [config.basemap.tiles], tileSize: 256,
                        maxzoom: config.basemap.max_zoom || 19, attribution: esc(config.basemap.attribution || "") };
    styleLayers.push({ id: "basemap", type: "raster", source: "basemap", paint: { "raster-opacity": 0.75 } });
  }

  function hatchId(color) { return "tvb-hatch-" + color.replace("#", ""); }
  // triangle marker image "tvb-triangle-<fill>-<outline>-<size px>", drawn on demand (no sprite server)
  function triangleId(layer, color) {
    return "tvb-triangle-" + color.replace("#", "") + "-" + (layer.stroke || "#ffffff").replace("#", "") + "-" +
      Math.round(2.6 * (layer.radius || 6));
  }
  function categoryExpr(layer, valueOf) {
    if (layer.zero_by) {
      return ["case", [">", ["to-number", ["get", layer.zero_by], 0], 0], valueOf(layer.color), valueOf(layer.zero_color)];
    }
    if (!(layer.categories && layer.categories.length)) { return valueOf(layer.color); }
    var match = ["match", ["to-string", ["get", layer.by]]];
    layer.categories.forEach(function (c) { c.values.forEach(function (v) { match.push(String(v), valueOf(c.color)); }); });
    match.push(valueOf(layer.color));
    return match;
  }
  var identity = function (c) { return c; };
  var interactive = [];
  config.layers.forEach(function (layer) {
    var color = categoryExpr(layer, identity);
    var vis = { visibility: layer.visible ? "visible" : "none" };
    var src = { source: "tvb", "source-layer": layer.name };
    if (layer.geometry === "polygon") {
      var communes = layer.name === "communes";
      var fillPaint = layer.hatch ? { "fill-pattern": categoryExpr(layer, hatchId) }
        : { "fill-color": communes ? "#000000" : color, "fill-opacity": communes ? 0 : layer.fill_opacity };
      styleLayers.push(Object.assign({ id: layer.name + "-fill", type: "fill", layout: vis, paint: fillPaint }, src));
      styleLayers.push(Object.assign({ id: layer.name + "-line", type: "line", layout: vis, paint: communes
        ? { "line-color": "#4a4a4a", "line-width": 1.3, "line-opacity": 0.9 }
        : { "line-color": color, "line-width": layer.hatch ? 1.6 : 1, "line-dasharray": layer.hatch ? [2, 1.5] : [1, 0] }
      }, src));
      interactive.push(layer.name + "-fill");
    } else if (layer.geometry === "line") {
      styleLayers.push(Object.assign({ id: layer.name + "-line", type: "line",
        layout: Object.assign({ "line-cap": "round", "line-join": "round" }, vis),
        paint: { "line-color": color, "line-width": layer.width || 3 } }, src));
      interactive.push(layer.name + "-line");
    } else if (layer.symbol === "triangle") {      // points de vigilance: triangles, as on the report's map
      styleLayers.push(Object.assign({ id: layer.name + "-symbol", type: "symbol",
        layout: Object.assign({ "icon-image": categoryExpr(layer, function (c) { return triangleId(layer, c); }),
                                "icon-allow-overlap": true, "icon-ignore-placement": true }, vis) }, src));
      interactive.push(layer.name + "-symbol");
    } else {
      var radius = layer.radius || 6;
      if (layer.sizes && layer.sizes.length) {
        radius = ["match", ["to-number", ["get", layer.size_by], 0]];
        layer.sizes.forEach(function (s) { radius.push(s.value, s.radius); });
        radius.push(layer.radius || 6);
      }
      styleLayers.push(Object.assign({ id: layer.name + "-circle", type: "circle", layout: vis,
        paint: { "circle-color": color, "circle-radius": radius, "circle-stroke-color": layer.stroke || "#ffffff",
                 "circle-stroke-width": 1.5 } }, src));
      interactive.push(layer.name + "-circle");
    }
  });

  var map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources: sources, layers: styleLayers },
    bounds: config.bounds,
    fitBoundsOptions: { padding: 20 },
    attributionControl: { compact: window.innerWidth < 700 },   // phones: credits behind (i), also in "Sources"
    maxZoom: 18
  });
  window.tvbMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "top-right");   // the credit line spans the bottom
  map.on("error", function (e) {
    var msg = (e && e.error && e.error.message) || String(e);
    state.errors.push(msg);
    console.error("Erreur de la carte : " + msg);
  });
  map.on("styleimagemissing", function (e) {       // triangle markers of point layers with symbol "triangle"
    var m = /^tvb-triangle-([0-9a-fA-F]{6})-([0-9a-fA-F]{6})-(\d+)$/.exec(e.id);
    if (!m || map.hasImage(e.id)) { return; }
    var ratio = 2, px = Number(m[3]) * ratio, cv = document.createElement("canvas");
    cv.width = cv.height = px;
    var g = cv.getContext("2d");
    g.beginPath();
    g.moveTo(px / 2, ratio); g.lineTo(px - ratio, px - ratio); g.lineTo(ratio, px - ratio); g.closePath();
    g.fillStyle = "#" + m[1]; g.fill();
    g.lineWidth = ratio; g.strokeStyle = "#" + m[2]; g.stroke();
    var data = g.getImageData(0, 0, px, px);
    map.addImage(e.id, { width: px, height: px, data: new Uint8Array(data.data.buffer) }, { pixelRatio: ratio });
  });
  map.on("styleimagemissing", function (e) {       // diagonal hatching of relay zones, one image per colour
    if (e.id.indexOf("tvb-hatch-") !== 0 || map.hasImage(e.id)) { return; }
    var size = 8, c = document.createElement("canvas");
    c.width = c.height = size;
    var ctx = c.getContext("2d");
    ctx.fillStyle = "rgba(255,255,255,0.35)";
    ctx.fillRect(0, 0, size, size);
    ctx.strokeStyle = "#" + e.id.slice(10);
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(0, size); ctx.lineTo(size, 0);
    ctx.moveTo(-2, 2); ctx.lineTo(2, -2);
    ctx.moveTo(size - 2, size + 2); ctx.lineTo(size + 2, size - 2);
    ctx.stroke();
    var img = ctx.getImageData(0, 0, size, size);
    map.addImage(e.id, { width: size, height: size, data: new Uint8Array(img.data.buffer) });
  });
  // phones: the credits (map attribution and the panel's "Sources") start collapsed, one tap opens them
  var narrow = window.innerWidth < 700;
  if (narrow) {
    var panelCredits = document.getElementById("tvb-credits");
    if (panelCredits) { panelCredits.removeAttribute("open"); }
  }
  function collapseAttribution() {
    if (!narrow) { return; }
    document.querySelectorAll(".maplibregl-ctrl-attrib").forEach(function (el) {
      el.classList.remove("maplibregl-compact-show");
      el.removeAttribute("open");
    });
  }
  map.on("load", function () { state.loaded = true; placeLabels(); collapseAttribution(); });
  map.on("idle", function () { if (state.loaded) { state.idle = true; } });

  // --- commune names: HTML labels (no glyph server needed), overlapping ones hidden --------------------------------
  var labels = (config.commune_labels || []).map(function (c) {
    var el = document.createElement("div");
    el.className = "tvb-commune-label";
    el.textContent = c.nom;
    var marker = new maplibregl.Marker({ element: el, anchor: "center" }).setLngLat([c.lon, c.lat]).addTo(map);
    return { el: el, marker: marker, lngLat: [c.lon, c.lat] };
  });
  function placeLabels() {
    var communesOn = map.getLayer("communes-line") && map.getLayoutProperty("communes-line", "visibility") !== "none";
    var placed = [], shown = 0;
    labels.forEach(function (l) {
      var p = map.project(l.lngLat);
      var w = l.el.offsetWidth || 60, h = l.el.offsetHeight || 12;
      var box = [p.x - w / 2 - 2, p.y - h / 2, p.x + w / 2 + 2, p.y + h / 2];
      var clash = placed.some(function (b) { return box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1]; });
      var show = communesOn && !clash;
      l.el.style.visibility = show ? "visible" : "hidden";
      if (show) { placed.push(box); shown += 1; }
    });
    state.labels = shown;
  }
  map.on("moveend", placeLabels);
  window.addEventListener("resize", function () { setTimeout(placeLabels, 50); });

  // --- legend with layer switches -----------------------------------------------------------------------------------
  var legend = document.getElementById("tvb-legend-body");
  function swatch(layer, color, extra) {
    var cls = "tvb-swatch tvb-" + layer.geometry + (layer.symbol === "triangle" ? " tvb-triangle" : ""), style;
    if (layer.geometry === "polygon" && layer.name === "communes") {
      style = "background:transparent;border:2px solid #4a4a4a";
    } else if (layer.hatch) {
      style = "border:2px dashed " + color + ";background:repeating-linear-gradient(135deg," + color + " 0 2px," +
        "rgba(255,255,255,.6) 2px 5px)";
    } else if (layer.geometry === "polygon") {
      style = "background:" + color + ";opacity:" + Math.max(layer.fill_opacity, 0.5);
    } else {
      style = "background:" + color;
    }
    return '<span class="' + cls + '" data-layer="' + esc(layer.name) + '" style="' + esc(style) + (extra || "") + '"></span>';
  }
  config.layers.slice().reverse().forEach(function (layer) {
    var block = document.createElement("div");
    block.className = "tvb-legend-block";
    var id = "tvb-toggle-" + layer.name;
    var rows = (layer.categories && layer.categories.length) ? layer.categories
      : layer.zero_by ? [{ label: layer.label, color: layer.color }, { label: layer.zero_label, color: layer.zero_color }]
      : [{ label: layer.label || null, color: layer.color }];
    var html = '<h3><input type="checkbox" id="' + id + '"' + (layer.visible ? " checked" : "") + '> <label for="' +
      id + '">' + esc(layer.title) + "</label>" + (rows[0].label === null ? " " + swatch(layer, layer.color) : "") + "</h3>";
    if (rows[0].label !== null) {
      html += rows.map(function (r) {
        return '<div class="tvb-legend-row">' + swatch(layer, r.color) + esc(r.label) + "</div>";
      }).join("");
    }
    (layer.sizes || []).forEach(function (s) {
      var d = 2 * s.radius;
      html += '<div class="tvb-legend-row">' + swatch(layer, "#777777", ";width:" + d + "px;height:" + d + "px") +
        esc(s.label) + "</div>";
    });
    block.innerHTML = html;
    block.querySelector("input").addEventListener("change", function (ev) {
      var vis = ev.target.checked ? "visible" : "none";
      styleLayers.forEach(function (sl) {
        if (sl["source-layer"] === layer.name) { map.setLayoutProperty(sl.id, "visibility", vis); }
      });
      if (layer.name === "communes") { placeLabels(); }
    });
    legend.appendChild(block);
  });

  // --- popups -------------------------------------------------------------------------------------------------------
  var titles = {};
  config.layers.forEach(function (l) { titles[l.name] = l.title; });
  function rowsFor(layerName, props) {
    var spec = (config.popup_fields || {})[layerName];
    var out = [];
    if (spec) {
      spec.forEach(function (s) {
        var field = s[0], label = s[1], format = s[2];
        if (empty(props[field])) { return; }
        if (field === "infra_class" && props[field] === props.infrastructure) { return; }   // "canal" twice
        var shown = formatValue(format, field, props[field], props);
        if (shown !== null) { out.push([label, shown]); }            // null: nothing worth showing (a 0 length)
      });
      return out;
    }
    Object.keys(props).forEach(function (k) {        // a layer without a spec: every non-internal field
      if (config.hidden_fields.indexOf(k) >= 0 || empty(props[k])) { return; }
      var value = (config.boolean_fields || []).indexOf(k) >= 0 ? yesNo(props[k])
        : (config.value_labels || {})[k] ? esc(words(k, props[k])) : esc(fmt(props[k]));
      out.push([config.field_labels[k] || k, value]);
    });
    return out;
  }
  function communeRows(props) {
    var fig = communeFigures[String(props.insee)];
    if (!fig) { return []; }
    return (config.commune_figures || []).filter(function (f) { return !empty(fig[f.key]); }).map(function (f) {
      return [f.label, num(fig[f.key], f.decimals) + (f.unit ? " " + f.unit : "")];
    });
  }
  function popupHtml(f) {
    var props = f.properties || {};
    var layerName = f.sourceLayer, title = titles[layerName] || layerName, kind = "";
    if (layerName === "communes" && props.nom) { kind = "Commune"; title = props.nom; }
    else if (layerName === "wet_corridors" && props.name) { kind = title; title = props.name; }
    var rows = rowsFor(layerName, props);
    if (layerName === "communes") { rows = rows.filter(function (r) { return r[0] !== "Commune"; }).concat(communeRows(props)); }
    if (layerName === "priorities" && props.libelle) { kind = title; title = props.libelle;
      rows = rows.filter(function (r) { return r[0] !== "Priorité"; }); }
    if ((layerName === "vigilance_points" || layerName === "corridor_stretches") && props.libelle) {
      kind = title; title = props.libelle; }
    if (layerName === "corridor_areas" && props.libelle) { kind = title; title = props.libelle;
      rows = rows.filter(function (r) { return r[0] !== "Emprise"; }); }
    return '<div class="tvb-popup">' + (kind ? '<p class="tvb-kind">' + esc(kind) + "</p>" : "") + "<h3>" + esc(title) +
      "</h3><table>" + rows.map(function (r) { return "<tr><th>" + esc(r[0]) + "</th><td>" + r[1] + "</td></tr>"; }).join("") +
      "</table></div>";
  }
  window.tvbPopupHtml = function (layerName, props) {     // test hook: the popup of a feature's properties
    return popupHtml({ sourceLayer: layerName, properties: props });
  };
  map.on("click", function (e) {
    var pad = 4;
    var box = [[e.point.x - pad, e.point.y - pad], [e.point.x + pad, e.point.y + pad]];
    var features = map.queryRenderedFeatures(box, { layers: interactive.filter(function (id) { return map.getLayer(id); }) });
    if (!features.length) { return; }
    new maplibregl.Popup({ maxWidth: "min(340px, 90vw)" }).setLngLat(e.lngLat).setHTML(popupHtml(features[0])).addTo(map);
    state.popups += 1;
  });
  interactive.forEach(function (id) {
    if (id === "communes-fill") { return; }
    map.on("mouseenter", id, function () { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, function () { map.getCanvas().style.cursor = ""; });
  });

  // --- key figures: computed beside the published study values ------------------------------------------------------
  function figureRows(data) {
    if (data && Array.isArray(data.comparison) && data.comparison.length) {
      return data.comparison.map(function (r) {
        return { label: r.libelle || r.indicator, value: r.computed, published: r.published,
                 unit: r.unit === "nombre" ? "" : (r.unit || "") };
      });
    }
    var src = data && (data.key_figures || data);
    var out = [];
    if (Array.isArray(src)) {
      src.forEach(function (r) {
        if (r && typeof r === "object") {
          out.push({ label: r.libelle || r.label || r.id, value: r.value !== undefined ? r.value : r.valeur,
                     unit: r.unit || r.unite || "" });
        }
      });
    } else if (src && typeof src === "object") {
      Object.keys(src).forEach(function (k) {
        if (typeof src[k] === "number") {
          out.push({ label: config.figure_labels[k] || k, value: src[k], unit: (config.figure_units || {})[k] || "" });
        }
      });
    }
    return out;
  }
  function figValue(v, unit) {
    if (empty(v)) { return "—"; }
    var d = unit === "" ? 0 : (unit === "ha" && Math.abs(v) >= 1000 ? 0 : 1);
    return esc(num(v, d) + (unit ? "\u00a0" + unit : ""));
  }
  var figures = document.getElementById("tvb-figures-body");
  fetch(config.indicators).then(function (r) {
    if (!r.ok) { throw new Error("HTTP " + r.status); }
    return r.json();
  }).then(function (data) {
    (data.communes || []).forEach(function (c) { communeFigures[String(c.insee)] = c; });
    var rows = figureRows(data);
    var hasPublished = rows.some(function (r) { return !empty(r.published); });
    var source = (data.published || {}).source;
    figures.innerHTML = rows.length ? '<table class="tvb-fig"><thead><tr><th></th><th>Calculé</th>' +
      (hasPublished ? "<th>Publié</th>" : "") + "</tr></thead><tbody>" + rows.map(function (r) {
        return "<tr><th>" + esc(r.label) + "</th><td>" + figValue(r.value, r.unit) + "</td>" +
          (hasPublished ? '<td class="tvb-pub">' + figValue(r.published, r.unit) + "</td>" : "") + "</tr>";
      }).join("") + "</tbody></table>" + (hasPublished ? '<p class="tvb-hint">Calculé : cette publication. Publié : ' +
      esc(config.reference_label || source) + ".</p>" : "")
      : "<p>Aucun chiffre clé dans cette publication.</p>";
    state.figures = rows.length;
  }).catch(function () {
    figures.innerHTML = "<p>Chiffres clés indisponibles.</p>";
  });
})();
