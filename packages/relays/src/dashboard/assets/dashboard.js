// tidings dashboard: keeps the lag tables current from the page's own live stream.
// Everything is written with textContent: nothing received is ever parsed as HTML.
(function () {
  'use strict';
  var summary = document.getElementById('summary');
  if (!summary || !window.EventSource) return;
  var source = new EventSource(summary.getAttribute('data-live'));
  var set = function (cell, text) {
    if (cell && cell.textContent !== text) cell.textContent = text;
  };
  var rowsBy = function (selector, attribute) {
    var rows = new Map();
    document.querySelectorAll(selector).forEach(function (row) {
      rows.set(row.getAttribute(attribute), row.cells);
    });
    return rows;
  };
  var relays = rowsBy('tr[data-relay]', 'data-relay');
  var partitions = rowsBy('tr[data-partition]', 'data-partition');
  var feeds = document.querySelector('[data-feeds]');
  var charts = new Map();
  document.querySelectorAll('figure[data-chart]').forEach(function (figure) {
    charts.set(figure.getAttribute('data-chart'), figure);
  });
  var seconds = function (value) {
    return value.toFixed(1);
  };

  source.onmessage = function (message) {
    var data = JSON.parse(message.data);
    if (data.relays) {
      var behind = 0, stalled = 0, abandoned = 0, unseen = 0;
      data.relays.forEach(function (r) {
        // [name, state, lagEvents, lagSeconds, deadLetters, parkedKeys, workers]
        behind += r[2];
        if (r[1] === 'stalled') stalled++;
        if (r[1] === 'abandoned') abandoned++;
        var cells = relays.get(r[0]);
        if (!cells) {
          unseen++;
          return;
        }
        set(cells[1], r[1]);
        cells[1].setAttribute('data-state', r[1]);
        set(cells[2], String(r[2]));
        set(cells[3], seconds(r[3]));
        if (!cells[4].querySelector('a')) set(cells[4], String(r[4]));
        set(cells[5], String(r[5]));
        set(cells[6], String(r[6]));
      });
      set(summary, data.relays.length + ' relays, ' + behind + ' events behind, ' + stalled + ' stalled, ' + abandoned + ' abandoned.' + (unseen > 0 ? ' ' + unseen + ' new relays: reload the page to see them.' : ''));
      Object.keys(data.charts || {}).forEach(function (name) {
        // { lines: [points per series], max, summary }, drawn by the server
        var figure = charts.get(name);
        if (!figure) return;
        var drawn = data.charts[name];
        figure.querySelectorAll('polyline[data-series]').forEach(function (line) {
          line.setAttribute('points', drawn.lines[Number(line.getAttribute('data-series'))] || '');
        });
        set(figure.querySelector('[data-chart-max]'), drawn.max);
        set(figure.querySelector('[data-chart-summary]'), drawn.summary);
      });
      if (feeds) {
        var f = data.feeds;
        set(feeds, f.events === 0 ? 'Nothing holds the feeds back.' : f.events + ' committed events held back (oldest ' + seconds(f.seconds) + ' s)' + (f.stalled ? ': stalled' : '') + '.');
      }
    } else if (data.relay) {
      var r = data.relay;
      set(summary, r.state + ': ' + r.lagEvents + ' events behind, oldest ' + seconds(r.lagSeconds) + ' s.');
      r.partitions.forEach(function (p) {
        // [partition, owner, lagEvents, lagSeconds]
        var cells = partitions.get(String(p[0]));
        if (!cells) return;
        set(cells[1], p[1]);
        set(cells[2], String(p[2]));
        set(cells[3], seconds(p[3]));
      });
    }
    document.documentElement.setAttribute('data-updated', data.at);
  };
  source.addEventListener('failure', function () {
    set(summary, 'Live updates paused: the status could not be read; retrying.');
  });
})();
