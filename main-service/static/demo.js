(function () {
  'use strict';

  var MAX_DAYS_AHEAD = 365;
  /** Names for supplier codes whose answer carried no flight to read the name from. */
  var AIRLINE_NAMES = {
    GA: 'Garuda Indonesia', JT: 'Lion Air', QZ: 'Indonesia AirAsia', ID: 'Batik Air',
    QG: 'Citilink', IU: 'Super Air Jet', IW: 'Wings Air', SJ: 'Sriwijaya Air', IN: 'NAM Air'
  };
  var BADGE_COLOURS = ['#1d5fd1', '#0e7c66', '#b54708', '#7a3fc4', '#c01c58', '#2f6f1d', '#0b6e99', '#8a4b08'];
  var AIRLINE_COLOURS = { GA: '#0b6e99', JT: '#c62828', QZ: '#b54708', ID: '#6a2c91', QG: '#2f7d32', SJ: '#1d5fd1' };
  /** Manual reconnects after the browser gave up (e.g. a 503 answer to a reconnect). */
  var MAX_MANUAL_RECONNECTS = 3;

  var moneyFormats = {};
  var longDate = new Intl.DateTimeFormat('en-GB', { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
  var shortDate = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });

  var form = document.getElementById('search-form');
  var fields = {
    from: document.getElementById('from'),
    to: document.getElementById('to'),
    date: document.getElementById('date'),
    passengers: document.getElementById('passengers')
  };
  var submitButton = document.getElementById('submit');
  var formError = document.getElementById('form-error');
  var searches = document.getElementById('searches');
  var template = document.getElementById('panel-template');
  var panelCount = 0;

  // ---------- dates ----------

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function isoOf(y, m, d) { return y + '-' + pad(m) + '-' + pad(d); }
  /** Day number (days since 1970-01-01) of a YYYY-MM-DD string, or NaN. */
  function dayNumber(iso) {
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || '');
    if (!m) return NaN;
    var y = +m[1], mo = +m[2], d = +m[3];
    var t = Date.UTC(y, mo - 1, d);
    var back = new Date(t);
    if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return NaN;
    return t / 86400000;
  }
  function isoOfDay(n) {
    var t = new Date(n * 86400000);
    return isoOf(t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate());
  }
  function localToday() {
    var now = new Date();
    return dayNumber(isoOf(now.getFullYear(), now.getMonth() + 1, now.getDate()));
  }
  function utcToday() { return Math.floor(Date.now() / 86400000); }
  function humanDate(iso) { return longDate.format(new Date(dayNumber(iso) * 86400000)); }

  /**
   * Splits an RFC 3339 timestamp into the local date and time it states, keeping the
   * airport's own offset instead of converting to the browser's time zone.
   */
  function localParts(rfc3339) {
    var m = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$/.exec(rfc3339 || '');
    if (!m) return null;
    var offset = m[4].toUpperCase() === 'Z' ? '+00:00' : m[4];
    return { date: m[1], time: m[2] + ':' + m[3], offset: offset, instant: Date.parse(rfc3339) };
  }

  function formatDuration(minutes) {
    var h = Math.floor(minutes / 60), m = minutes % 60;
    if (h === 0) return m + 'm';
    return m === 0 ? h + 'h' : h + 'h ' + m + 'm';
  }
  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  // ---------- form ----------

  (function initDate() {
    var today = localToday();
    // The server counts days in UTC; never block a date it would accept.
    var first = Math.min(today, utcToday());
    var last = Math.max(today, utcToday()) + MAX_DAYS_AHEAD;
    fields.date.min = isoOfDay(first);
    fields.date.max = isoOfDay(last);
    fields.date.value = isoOfDay(today + 14);
  })();

  ['from', 'to'].forEach(function (name) {
    var input = fields[name];
    input.addEventListener('input', function () {
      var start = input.selectionStart, end = input.selectionEnd;
      var upper = input.value.toUpperCase();
      if (upper !== input.value) {
        input.value = upper;
        try { input.setSelectionRange(start, end); } catch (e) { /* not focusable */ }
      }
      if (input.getAttribute('aria-invalid') === 'true') revalidate();
    });
  });
  fields.date.addEventListener('change', function () { if (fields.date.getAttribute('aria-invalid') === 'true') revalidate(); });
  fields.passengers.addEventListener('change', function () { setFieldError('passengers', ''); });

  document.getElementById('swap').addEventListener('click', function () {
    var from = fields.from.value;
    fields.from.value = fields.to.value;
    fields.to.value = from;
    if (form.querySelector('[aria-invalid="true"]')) revalidate();
  });

  function setFieldError(name, message) {
    var input = fields[name];
    var el = document.getElementById('error-' + name);
    el.textContent = message || '';
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  function clearErrors() {
    Object.keys(fields).forEach(function (name) { setFieldError(name, ''); });
    formError.textContent = '';
  }

  function readForm() {
    return {
      from: fields.from.value.trim().toUpperCase(),
      to: fields.to.value.trim().toUpperCase(),
      date: fields.date.value,
      passengers: parseInt(fields.passengers.value, 10)
    };
  }

  /** The client-side copy of the server's input rules; the server has the final word. */
  function validate(req) {
    var errors = {};
    var iata = /^[A-Z]{3}$/;
    if (!req.from) errors.from = 'Enter the airport you fly from.';
    else if (!iata.test(req.from)) errors.from = 'Use a 3-letter airport code, e.g. CGK.';
    if (!req.to) errors.to = 'Enter the airport you fly to.';
    else if (!iata.test(req.to)) errors.to = 'Use a 3-letter airport code, e.g. DPS.';
    else if (!errors.from && req.from === req.to) errors.to = 'Destination must differ from origin.';
    var day = dayNumber(req.date);
    if (!req.date) errors.date = 'Choose a departure date.';
    else if (isNaN(day)) errors.date = 'Enter a real date (YYYY-MM-DD).';
    else if (day < dayNumber(fields.date.min)) errors.date = 'The date cannot be in the past.';
    else if (day > dayNumber(fields.date.max)) errors.date = 'Pick a date at most a year ahead (until ' + humanDate(fields.date.max) + ').';
    if (!(req.passengers >= 1 && req.passengers <= 9)) errors.passengers = 'Choose 1 to 9 passengers.';
    return errors;
  }

  function showErrors(errors) {
    var first = null;
    Object.keys(fields).forEach(function (name) {
      setFieldError(name, errors[name] || '');
      if (errors[name] && !first) first = fields[name];
    });
    return first;
  }
  function revalidate() { showErrors(validate(readForm())); }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    clearErrors();
    var req = readForm();
    // Test hook: `data-skip-client-checks` lets an end-to-end test exercise the server's rules.
    if (!form.hasAttribute('data-skip-client-checks')) {
      var first = showErrors(validate(req));
      if (first) { first.focus(); return; }
    }
    submitSearch(req);
  });

  function submitSearch(req) {
    submitButton.disabled = true;
    submitButton.textContent = 'Searching…';
    fetch('/api/flights/search', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify({ from: req.from, to: req.to, date: req.date, passengers: req.passengers })
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        return { response: response, body: body };
      });
    }).then(function (r) {
      var response = r.response, body = r.body;
      if (response.status === 202 && body && body.data && body.data.search_id) {
        var id = body.data.search_id;
        var location = response.headers.get('Location') || ('/api/flights/search/' + encodeURIComponent(id) + '/stream');
        startSearch(req, id, location);
      } else if (response.status === 400 && body && Array.isArray(body.errors) && body.errors.length) {
        showServerErrors(body);
      } else if (response.status === 503) {
        var after = parseInt(response.headers.get('Retry-After') || '', 10);
        formError.textContent = 'The service is busy right now. Please retry' +
          (after > 0 ? ' in ' + plural(after, 'second', 'seconds') : ' in a moment') + '.';
      } else {
        formError.textContent = (body && body.message ? body.message : 'The search could not be started') +
          ' (HTTP ' + response.status + ').';
      }
    }).catch(function () {
      formError.textContent = 'Could not reach the server. Check your connection and retry.';
    }).then(function () {
      submitButton.disabled = false;
      submitButton.textContent = 'Search flights';
    });
  }

  function showServerErrors(body) {
    var perField = {}, other = [];
    body.errors.forEach(function (e) {
      var name = e && e.field;
      var text = sentence(name, e && e.message);
      if (name && Object.prototype.hasOwnProperty.call(fields, name)) {
        perField[name] = perField[name] ? perField[name] + ' ' + text : text;
      } else {
        other.push(name ? '“' + name + '”: ' + (e.message || 'invalid') : (e && e.message) || 'invalid');
      }
    });
    var first = showErrors(perField);
    if (other.length) formError.textContent = (body.message || 'The request was rejected') + ': ' + other.join('; ') + '.';
    else if (!first) formError.textContent = body.message || 'The request was rejected.';
    if (first) first.focus();
  }
  /** Server messages read "must differ from `from`"; show them as a sentence. */
  function sentence(field, message) {
    var labels = { from: 'origin', to: 'destination', date: 'date', passengers: 'passengers' };
    var text = String(message || 'is invalid').replace(/`(\w+)`/g, function (all, name) {
      return labels[name] ? 'the ' + labels[name] : name;
    });
    if (/^(must|is|should|cannot)\b/.test(text)) text = (labels[field] || field) + ' ' + text;
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(text) ? text : text + '.';
  }

  // ---------- a search panel ----------

  function startSearch(req, searchId, streamUrl) {
    var intro = document.getElementById('intro');
    if (intro) intro.remove();
    panelCount += 1;
    var node = template.content.firstElementChild.cloneNode(true);
    var panel = {
      id: searchId,
      req: req,
      url: streamUrl,
      node: node,
      status: node.querySelector('.status'),
      suppliersList: node.querySelector('.suppliers'),
      tbody: node.querySelector('tbody'),
      empty: node.querySelector('.empty'),
      note: node.querySelector('.note'),
      rows: [],
      seenEvents: new Set(),
      seenFlights: new Set(),
      answered: new Set(),
      sort: { key: 'price', dir: 'ascending' },
      lastEventId: '',
      done: false,
      es: null,
      manualReconnects: 0,
      everOpened: false,
      stateBeforeDrop: null,
      started: performance.now()
    };
    node.dataset.searchId = searchId;
    var headingId = 'search-title-' + panelCount;
    var h2 = node.querySelector('h2');
    h2.id = headingId;
    node.setAttribute('aria-labelledby', headingId);
    node.querySelector('.route').textContent = req.from + ' → ' + req.to;
    node.querySelector('.meta').textContent = '· ' + humanDate(req.date) + ' · ' + plural(req.passengers, 'passenger', 'passengers');
    node.querySelector('caption').textContent = 'Flights from ' + req.from + ' to ' + req.to + ' on ' + humanDate(req.date);
    node.querySelector('.table-scroll').setAttribute('aria-label', 'Results ' + req.from + ' to ' + req.to + ', scrollable');
    node.querySelector('.dismiss').addEventListener('click', function () {
      stop(panel);
      node.remove();
      submitButton.focus();
    });
    node.querySelector('.retry').addEventListener('click', function () { submitSearch(req); });
    node.querySelectorAll('th[data-sort-key] button').forEach(function (button) {
      button.addEventListener('click', function () {
        var key = button.parentElement.getAttribute('data-sort-key');
        var dir = panel.sort.key === key && panel.sort.dir === 'ascending' ? 'descending' : 'ascending';
        panel.sort = { key: key, dir: dir };
        applySort(panel);
      });
    });
    updateSortHeaders(panel);
    setStatus(panel, 'queued', 'Queued: waiting for a provider…');
    searches.insertBefore(node, searches.firstChild);
    connect(panel, streamUrl);
  }

  function setStatus(panel, state, text) {
    panel.status.dataset.state = state;
    panel.status.textContent = text;
    panel.node.dataset.state = state;
  }

  function stop(panel) {
    panel.done = true;
    if (panel.es) panel.es.close();
    clearTimeout(panel.retryTimer);
  }

  function connect(panel, url) {
    var es = new EventSource(url);
    panel.es = es;
    es.onopen = function () {
      panel.everOpened = true;
      panel.manualReconnects = 0;
      if (panel.stateBeforeDrop) {
        setStatus(panel, panel.stateBeforeDrop.state, panel.stateBeforeDrop.text);
        panel.stateBeforeDrop = null;
      }
    };
    es.onmessage = function (e) { onEvent(panel, e); };
    es.onerror = function () {
      if (panel.done || panel.es !== es) return;
      if (es.readyState === EventSource.CONNECTING) {
        // The browser reconnects by itself and sends Last-Event-ID.
        rememberState(panel);
        setStatus(panel, 'reconnecting', 'Connection lost: reconnecting…');
      } else if (es.readyState === EventSource.CLOSED) {
        onClosed(panel);
      }
    };
  }

  function rememberState(panel) {
    if (!panel.stateBeforeDrop && panel.status.dataset.state !== 'reconnecting') {
      panel.stateBeforeDrop = { state: panel.status.dataset.state, text: panel.status.textContent };
    }
  }

  /**
   * The browser gave up: the server answered a (re)connect with something other than
   * an event stream. 204/410 mean the search is gone; 503 may pass. A few spaced
   * retries from the last event seen tell the two apart without a second SSE parser.
   */
  function onClosed(panel) {
    rememberState(panel);
    if (panel.manualReconnects < MAX_MANUAL_RECONNECTS) {
      panel.manualReconnects += 1;
      var delay = 1000 * Math.pow(2, panel.manualReconnects - 1);
      setStatus(panel, 'reconnecting', 'The server did not resume the stream: retrying in ' + (delay / 1000) + ' s…');
      panel.retryTimer = setTimeout(function () {
        if (panel.done) return;
        var url = panel.url;
        if (panel.lastEventId) url += (url.indexOf('?') < 0 ? '?' : '&') + 'last_event_id=' + encodeURIComponent(panel.lastEventId);
        connect(panel, url);
      }, delay);
      return;
    }
    panel.done = true;
    var n = panel.rows.length;
    var text = panel.everOpened
      ? 'Stopped: the server no longer has this search (' + plural(n, 'flight', 'flights') + ' received before the connection dropped).'
      : 'Could not open the result stream: the search is unknown or expired, or the service is unavailable.';
    setStatus(panel, 'closed', text);
    panel.node.querySelector('.retry').hidden = false;
  }

  function onEvent(panel, e) {
    if (panel.done) return;
    if (e.lastEventId) {
      if (panel.seenEvents.has(e.lastEventId)) return;
      panel.seenEvents.add(e.lastEventId);
      panel.lastEventId = e.lastEventId;
    }
    var event;
    try { event = JSON.parse(e.data); } catch (err) { return; }
    panel.stateBeforeDrop = null;
    switch (event.status) {
      case 'processing':
        if (!panel.answered.size) setStatus(panel, 'searching', 'Searching airlines…');
        break;
      case 'result':
        onResult(panel, event);
        break;
      case 'completed':
        stop(panel);
        reportSuppliers(panel, event.suppliers);
        finish(panel, event.total_results);
        break;
      case 'failed':
        stop(panel);
        reportSuppliers(panel, event.suppliers);
        setStatus(panel, 'failed', 'Failed: ' + ((event.error && event.error.message) || 'unknown error'));
        panel.node.querySelector('.retry').hidden = false;
        if (panel.rows.length) {
          panel.note.hidden = false;
          panel.note.textContent = 'Showing the ' + plural(panel.rows.length, 'flight', 'flights') + ' received before the search failed.';
        }
        break;
      default:
        break;
    }
  }

  function onResult(panel, event) {
    var flights = Array.isArray(event.results) ? event.results : [];
    var supplier = event.supplier || (flights[0] && flights[0].airline && flights[0].airline.code) || '?';
    var added = 0;
    flights.forEach(function (flight) {
      var key = supplier + '|' + flight.flight_number + '|' + flight.departure_time;
      if (panel.seenFlights.has(key)) return;
      panel.seenFlights.add(key);
      addRow(panel, supplier, flight);
      added += 1;
    });
    var name = supplierName(supplier, flights);
    var n = flights.length;
    if (!panel.answered.has(supplier)) {
      panel.answered.add(supplier);
      var li = document.createElement('li');
      li.dataset.supplier = supplier;
      li.textContent = name + ' · ' + n;
      panel.suppliersList.appendChild(li);
    }
    setStatus(panel, 'searching', name + ' answered (' + plural(n, 'flight', 'flights') + ')');
    return added;
  }

  var OUTCOME_TEXT = {
    timeout: 'timed out',
    error: 'unavailable',
    rate_limited: 'busy',
    circuit_open: 'paused after failures',
    unauthorized: 'refused our access'
  };

  // The terminal event says how each airline's part ended; airlines that did
  // not answer get a chip saying why, so an empty slot is never a mystery.
  function reportSuppliers(panel, suppliers) {
    if (!suppliers || typeof suppliers !== 'object') return;
    Object.keys(suppliers).sort().forEach(function (code) {
      var outcome = suppliers[code];
      var li = panel.suppliersList.querySelector('li[data-supplier="' + CSS.escape(code) + '"]');
      if (li) { li.dataset.outcome = outcome; return; }
      if (outcome === 'answered') return;
      li = document.createElement('li');
      li.dataset.supplier = code;
      li.dataset.outcome = outcome;
      li.textContent = supplierName(code, []) + ' · ' + (OUTCOME_TEXT[outcome] || outcome);
      li.title = 'No flights from this airline: ' + outcome.replace(/_/g, ' ');
      panel.suppliersList.appendChild(li);
    });
  }

  function supplierName(code, flights) {
    for (var i = 0; i < flights.length; i++) {
      if (flights[i].airline && flights[i].airline.code === code && flights[i].airline.name) return flights[i].airline.name;
    }
    if (AIRLINE_NAMES[code]) return AIRLINE_NAMES[code];
    if (flights[0] && flights[0].airline && flights[0].airline.name) return flights[0].airline.name;
    return code;
  }

  function finish(panel, total) {
    total = typeof total === 'number' ? total : panel.rows.length;
    panel.status.dataset.totalResults = String(total);
    panel.node.dataset.totalResults = String(total);
    var seconds = ((performance.now() - panel.started) / 1000).toFixed(1);
    setStatus(panel, 'completed', 'Completed: ' + plural(total, 'flight', 'flights'));
    panel.status.title = 'Finished in ' + seconds + ' s';
    if (total === 0 && panel.rows.length === 0) panel.empty.hidden = false;
  }

  // ---------- rows and sorting ----------

  function addRow(panel, supplier, f) {
    var dep = localParts(f.departure_time) || { date: '', time: '--:--', offset: '', instant: NaN };
    var arr = localParts(f.arrival_time) || { date: '', time: '--:--', offset: '', instant: NaN };
    var price = f.price || {};
    var duration = formatDuration(Number(f.duration_minutes) || 0);
    var tr = document.createElement('tr');
    tr.setAttribute('data-testid', 'flight-row');
    tr.dataset.supplier = supplier;
    tr.dataset.flightNumber = f.flight_number;
    tr.dataset.airline = (f.airline && f.airline.name) || '';
    tr.dataset.departure = f.departure_time;
    tr.dataset.departureDate = dep.date;
    tr.dataset.arrival = f.arrival_time;
    tr.dataset.durationMinutes = String(f.duration_minutes);
    tr.dataset.duration = duration;
    tr.dataset.stops = String(f.stops);
    var seats = typeof f.seats_available === 'number' ? String(f.seats_available) : '–';
    tr.dataset.seats = seats;
    tr.dataset.priceAmount = String(price.amount);
    tr.dataset.priceTotal = String(price.total);
    tr.dataset.currency = price.currency || '';
    tr.dataset.priceDecimals = String(price.decimals);

    var airlineCode = (f.airline && f.airline.code) || supplier;
    var tdAirline = cell(tr);
    var wrap = el('div', 'airline');
    var badge = el('span', 'badge', airlineCode);
    badge.style.background = colourFor(airlineCode);
    badge.setAttribute('aria-hidden', 'true');
    wrap.appendChild(badge);
    var names = el('div');
    names.appendChild(el('span', 'airline-name', (f.airline && f.airline.name) || airlineCode));
    names.appendChild(el('span', 'sub', f.flight_number));
    wrap.appendChild(names);
    tdAirline.appendChild(wrap);

    var tdDep = cell(tr);
    tdDep.title = f.departure_time;
    tdDep.appendChild(el('span', 'time', dep.time));
    var depSub = (f.from || '') + (dep.date && dep.date !== panel.req.date ? ' · ' + shortDate.format(new Date(dayNumber(dep.date) * 86400000)) : '');
    tdDep.appendChild(el('span', 'sub', depSub));

    var tdArr = cell(tr);
    tdArr.title = f.arrival_time;
    tdArr.appendChild(el('span', 'time', arr.time));
    var dayDiff = dayNumber(arr.date) - dayNumber(dep.date);
    if (dayDiff > 0) {
      var plus = el('span', 'plus-day', '+' + dayDiff);
      plus.setAttribute('aria-hidden', 'true');
      tdArr.appendChild(plus);
      tdArr.appendChild(el('span', 'visually-hidden', dayDiff === 1 ? ' next day' : ' ' + dayDiff + ' days later'));
    }
    tdArr.appendChild(el('span', 'sub', f.to || ''));
    tr.dataset.arrivalDayOffset = String(dayDiff > 0 ? dayDiff : 0);

    cell(tr, duration);
    var stops = Number(f.stops) || 0;
    cell(tr, stops === 0 ? 'Direct' : plural(stops, 'stop', 'stops'), stops === 0 ? 'stops-direct' : '');
    cell(tr, seats, 'num');
    cell(tr, formatMoney(price.amount, price), 'num price-each');
    cell(tr, formatMoney(price.total, price), 'num price-total');

    var row = { tr: tr, currency: price.currency || '', price: Number(price.total), departure: dep.instant, duration: Number(f.duration_minutes), seq: panel.rows.length };
    panel.rows.push(row);
    panel.node.setAttribute('data-has-rows', '');
    // Insert at its sorted place; existing rows are never rebuilt.
    var before = null;
    var ordered = sortedRows(panel);
    var index = ordered.indexOf(row);
    if (index + 1 < ordered.length) before = ordered[index + 1].tr;
    panel.tbody.insertBefore(tr, before);
  }

  // Amounts arrive as integers in the currency's minor unit with their number
  // of decimals; each currency is shown with exactly those decimals.
  function formatMoney(minor, price) {
    var decimals = Number(price.decimals);
    if (typeof minor !== 'number' || !price.currency || !(decimals >= 0 && decimals <= 4)) return '–';
    var key = price.currency + '/' + decimals;
    try {
      if (!moneyFormats[key]) {
        moneyFormats[key] = new Intl.NumberFormat('id-ID', {
          style: 'currency', currency: price.currency,
          minimumFractionDigits: decimals, maximumFractionDigits: decimals
        });
      }
      return moneyFormats[key].format(minor / Math.pow(10, decimals));
    } catch (e) { return minor + ' ' + price.currency + ' (×10^-' + decimals + ')'; }
  }

  function colourFor(code) {
    if (AIRLINE_COLOURS[code]) return AIRLINE_COLOURS[code];
    var h = 0;
    for (var i = 0; i < code.length; i++) h = (h * 31 + code.charCodeAt(i)) >>> 0;
    return BADGE_COLOURS[h % BADGE_COLOURS.length];
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function cell(tr, text, className) {
    var td = el('td', className, text);
    tr.appendChild(td);
    return td;
  }

  function sortedRows(panel) {
    var key = panel.sort.key, sign = panel.sort.dir === 'ascending' ? 1 : -1;
    return panel.rows.slice().sort(function (a, b) {
      // Prices in different currencies are not comparable: group by currency.
      if (key === 'price' && a.currency !== b.currency) return (a.currency < b.currency ? -1 : 1) * sign;
      var d = (a[key] - b[key]) * sign;
      if (d) return d;
      return a.departure - b.departure || a.seq - b.seq;
    });
  }

  function applySort(panel) {
    sortedRows(panel).forEach(function (row) { panel.tbody.appendChild(row.tr); });
    updateSortHeaders(panel);
  }

  function updateSortHeaders(panel) {
    panel.node.querySelectorAll('th[data-sort-key]').forEach(function (th) {
      var key = th.getAttribute('data-sort-key');
      var arrow = th.querySelector('.arrow');
      var button = th.querySelector('button');
      var label = th.textContent.trim().replace(/[▲▼]/g, '');
      if (key === panel.sort.key) {
        th.setAttribute('aria-sort', panel.sort.dir);
        arrow.textContent = panel.sort.dir === 'ascending' ? '▲' : '▼';
        button.setAttribute('aria-label', label + ', sorted ' + panel.sort.dir + '; activate to sort ' + (panel.sort.dir === 'ascending' ? 'descending' : 'ascending'));
      } else {
        th.removeAttribute('aria-sort');
        arrow.textContent = '';
        button.setAttribute('aria-label', label + ', activate to sort ascending');
      }
    });
  }
})();
