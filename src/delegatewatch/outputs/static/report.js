/* delegatewatch report: renders incidents, findings and charts from the JSON data block.
 * Every string from the data is written with textContent or as Vega data (SVG text), never as
 * HTML; nothing from the data is evaluated. No network access (the page's CSP forbids it). */
(function () {
  'use strict';

  var DATA = JSON.parse(document.getElementById('dw-data').textContent);
  var SEVERITIES = DATA.severities.slice().reverse(); // critical first
  var SEV_RANK = {};
  DATA.severities.forEach(function (s, i) { SEV_RANK[s] = i; });
  var SEV_COLOURS = { critical: '#8e0b1f', high: '#d7301f', medium: '#e6a700', low: '#3182bd', informational: '#8c96a3' };
  var CATEGORY_COLOURS = [
    ['full access', '#d7301f'], ['impersonation', '#7b3294'], ['app mail access', '#c51b7d'],
    ['send as', '#1b7837'], ['send on behalf', '#5aae61'], ['audit bypass', '#525252'],
    ['folder: read items', '#2166ac'], ['folder: other rights', '#92c5de'], ['other', '#bababa']
  ];
  var RISKY = {};
  DATA.risky_kinds.forEach(function (k) { RISKY[k] = true; });
  var ORG = '(organisation)';
  var MAX_GRAPH_NODES = 60;

  var findings = DATA.findings;
  var byId = new Map();
  findings.forEach(function (f, i) {
    f._i = i;
    f._sev = SEV_RANK[f.severity] === undefined ? 2 : SEV_RANK[f.severity];
    f._actor = (f.actor || '').toLowerCase();
    f._mailbox = (f.mailbox || '').toLowerCase();
    var names = f.names || {};
    var parts = [f.id, f.rule, (DATA.rules[f.rule] || {}).title, f.summary, f.actor, f.mailbox, f.grantee,
      f.grantee_kind, f.folder, f.operation, f.client_ip, f.session_id, f.incident, (f.rights || []).join(' '),
      (f.attack || []).join(' '), names.actor, names.mailbox, names.grantee];
    (f.evidence || []).forEach(function (e) { parts.push(e.record_id, e.source); });
    f._hay = parts.filter(Boolean).join('\n').toLowerCase();
    byId.set(f.id, f);
  });
  var incidentById = new Map();
  DATA.incidents.forEach(function (inc) { incidentById.set(inc.id, inc); });

  var state = { q: '', sev: new Set(), rule: '', mailbox: '', actor: '', sort: 'time', pageSize: 50,
                page: 0, incPage: 0 };
  var INC_PAGE = 10;
  var matching = findings;
  var matchingSet = null;

  // -- small DOM helpers (text only) ---------------------------------------------------------
  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v === undefined || v === null) return;
        if (k === 'text') node.textContent = String(v);
        else if (k === 'class') node.className = v;
        else if (k === 'dataset') Object.keys(v).forEach(function (d) { node.dataset[d] = v[d]; });
        else if (k === 'on') Object.keys(v).forEach(function (ev) { node.addEventListener(ev, v[ev]); });
        else node.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) node.appendChild(typeof x === 'string' ? document.createTextNode(x) : x); });
      else node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }
  function $(id) { return document.getElementById(id); }
  function fmtTime(t) { return t ? String(t).replace('T', ' ').replace(/Z$/, '') : '—'; }
  function sevBadge(s) { return el('span', { class: 'sev sev-' + s, text: s }); }
  function principal(value, name, kind) {
    if (!value) return el('span', { class: 'empty', text: '—' });
    var span = el('span', null, value);
    if (name && name.toLowerCase() !== String(value).toLowerCase()) span.appendChild(document.createTextNode(' (' + name + ')'));
    if (kind && kind !== 'user' && kind !== 'unknown') span.appendChild(el('span', { class: 'kind kind-' + kind, text: kind }));
    return span;
  }

  // -- filtering -----------------------------------------------------------------------------
  function matches(f) {
    if (state.sev.size && !state.sev.has(f.severity)) return false;
    if (state.rule && f.rule !== state.rule) return false;
    if (state.mailbox && f._mailbox.indexOf(state.mailbox) < 0) return false;
    if (state.actor && f._actor.indexOf(state.actor) < 0) return false;
    if (state.q) {
      var terms = state.q.split(/\s+/);
      for (var i = 0; i < terms.length; i++) if (terms[i] && f._hay.indexOf(terms[i]) < 0) return false;
    }
    return true;
  }
  function sorted(list) {
    var out = list.slice();
    if (state.sort === 'time-desc') out.reverse();
    else if (state.sort === 'severity') out.sort(function (a, b) { return (b._sev - a._sev) || (a._i - b._i); });
    return out;
  }
  function filtersActive() {
    return !!(state.q || state.sev.size || state.rule || state.mailbox || state.actor);
  }
  function apply(resetPage) {
    if (resetPage !== false) { state.page = 0; state.incPage = 0; }
    matching = sorted(filtersActive() ? findings.filter(matches) : findings);
    matchingSet = filtersActive() ? new Set(matching.map(function (f) { return f.id; })) : null;
    $('f-status').textContent = matching.length.toLocaleString('en') + ' of ' + findings.length.toLocaleString('en') + ' findings';
    $('f-status').dataset.matching = String(matching.length);
    renderFindings();
    renderIncidents();
    scheduleGraph();
  }

  // -- findings ------------------------------------------------------------------------------
  function pager(container, page, pages, total, label, go) {
    container.replaceChildren();
    if (total === 0) return;
    var prev = el('button', { type: 'button', class: 'prev', text: '‹ previous', on: { click: function () { go(page - 1); } } });
    var next = el('button', { type: 'button', class: 'next', text: 'next ›', on: { click: function () { go(page + 1); } } });
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    container.append(prev, el('span', { text: 'page ' + (page + 1) + ' of ' + pages + ' (' + total.toLocaleString('en') + ' ' + label + ')' }), next);
  }

  function renderFindings() {
    var list = $('finding-list');
    var size = state.pageSize;
    var pages = Math.max(1, Math.ceil(matching.length / size));
    if (state.page >= pages) state.page = pages - 1;
    var start = state.page * size;
    var frag = document.createDocumentFragment();
    matching.slice(start, start + size).forEach(function (f) { frag.appendChild(findingCard(f)); });
    list.replaceChildren(frag);
    if (!matching.length) list.appendChild(el('p', { class: 'empty', text: findings.length ? 'No finding matches the filters.' : 'No findings.' }));
    pager($('finding-pager'), state.page, pages, matching.length, 'findings', function (p) {
      state.page = p; renderFindings(); $('findings').scrollIntoView();
    });
  }

  function field(dl, label, value) {
    if (value === null || value === undefined || value === '' || (Array.isArray(value) && !value.length)) return;
    dl.append(el('dt', { text: label }), el('dd', null, typeof value === 'string' ? value : value));
  }

  function findingCard(f) {
    var rule = DATA.rules[f.rule] || {};
    var names = f.names || {};
    var raw = f.raw || {};
    var card = el('article', { class: 'finding', id: 'f-' + f.id, dataset: { findingId: f.id, severity: f.severity } });
    card.appendChild(el('header', null, sevBadge(f.severity), el('h3', { text: rule.title || f.rule }),
      el('span', { class: 'rule mono', text: f.rule }), el('span', { class: 'when', text: fmtTime(f.time) })));
    card.appendChild(el('p', { class: 'summary', text: f.summary }));
    var dl = el('dl', { class: 'fields' });
    field(dl, 'actor', principal(f.actor, names.actor));
    field(dl, 'mailbox', principal(f.mailbox, names.mailbox));
    if (raw.mailbox) field(dl, 'mailbox as logged', raw.mailbox);
    field(dl, 'grantee', f.grantee ? principal(f.grantee, names.grantee, f.grantee_kind) : null);
    if (raw.grantee) field(dl, 'grantee as logged', raw.grantee);
    field(dl, 'rights', (f.rights || []).join(', '));
    field(dl, 'folder', f.folder);
    field(dl, 'operation', f.operation);
    field(dl, 'client IP', f.client_ip);
    field(dl, 'session', f.session_id);
    field(dl, 'ATT&CK', (f.attack || []).join(', '));
    if (f.incident) {
      field(dl, 'incident', el('a', { class: 'jump', href: '#incidents', text: f.incident,
        on: { click: function (ev) { ev.preventDefault(); showIncident(f.incident); } } }));
    }
    field(dl, 'finding id', el('code', { text: f.id }));
    card.appendChild(dl);
    if (f.reasons && f.reasons.length) {
      card.appendChild(el('ul', { class: 'reasons' }, f.reasons.map(function (r) { return el('li', { text: '↑ ' + r }); })));
    }
    var table = el('table', { class: 'evidence' },
      el('tr', null, el('th', { text: 'evidence: source file' }), el('th', { text: 'line' }), el('th', { text: 'record Id (UAL Id)' }), el('th', { text: 'time' })));
    var raws = el('div');
    (f.evidence || []).forEach(function (e) {
      table.appendChild(el('tr', null, el('td', null, el('code', { text: e.source })), el('td', { text: e.line == null ? '—' : String(e.line) }),
        el('td', null, el('code', { text: e.record_id })), el('td', { text: fmtTime(e.time) })));
      raws.appendChild(rawDetails(e.record_id));
    });
    card.append(table, raws);
    if (rule.runbook) {
      card.appendChild(el('details', { class: 'runbook' }, el('summary', { text: 'runbook' }), el('pre', { text: rule.runbook })));
    }
    return card;
  }

  function rawDetails(recordId) {
    var has = Object.prototype.hasOwnProperty.call(DATA.records, recordId);
    var details = el('details', { class: 'raw', dataset: { recordId: recordId } },
      el('summary', { text: has ? 'raw record ' + recordId : 'raw record ' + recordId + ' (not kept)' }));
    var pre = el('pre', { class: 'json' });
    details.appendChild(pre);
    details.addEventListener('toggle', function () {
      if (details.open && !pre.textContent) {
        pre.textContent = has ? JSON.stringify(DATA.records[recordId], null, 2) : 'The raw record was not kept by the hunt.';
      }
    });
    return details;
  }

  function showFinding(id) {
    var f = byId.get(id);
    if (!f) return;
    var idx = matching.indexOf(f);
    if (idx < 0) {
      clearFilters(false);
      state.q = id.toLowerCase();
      $('f-search').value = id;
      apply();
      idx = matching.indexOf(f);
    }
    state.page = Math.floor(idx / state.pageSize);
    renderFindings();
    var card = $('f-' + id);
    if (card) {
      card.scrollIntoView({ block: 'start' });
      card.classList.add('flash');
      setTimeout(function () { card.classList.remove('flash'); }, 1600);
    }
  }

  // -- incidents -----------------------------------------------------------------------------
  function renderIncidents() {
    var visible = DATA.incidents;
    if (matchingSet) {
      visible = visible.filter(function (inc) { return inc.findings.some(function (id) { return matchingSet.has(id); }); });
    }
    var pages = Math.max(1, Math.ceil(visible.length / INC_PAGE));
    if (state.incPage >= pages) state.incPage = pages - 1;
    var start = state.incPage * INC_PAGE;
    var frag = document.createDocumentFragment();
    visible.slice(start, start + INC_PAGE).forEach(function (inc) { frag.appendChild(incidentCard(inc)); });
    var list = $('incident-list');
    list.replaceChildren(frag);
    if (!visible.length) list.appendChild(el('p', { class: 'empty', text: DATA.incidents.length ? 'No incident matches the filters.' : 'No incidents.' }));
    pager($('incident-pager'), state.incPage, pages, visible.length, 'incidents', function (p) {
      state.incPage = p; renderIncidents(); $('incidents').scrollIntoView();
    });
  }

  function listText(values, max) {
    if (!values.length) return '—';
    return values.slice(0, max).join(', ') + (values.length > max ? ' and ' + (values.length - max) + ' more' : '');
  }

  function incidentCard(inc) {
    var shown = inc.findings.filter(function (id) { return !matchingSet || matchingSet.has(id); });
    var span = inc.start && inc.end && inc.start !== inc.end ? fmtTime(inc.start) + ' → ' + fmtTime(inc.end) : fmtTime(inc.start);
    var card = el('div', { class: 'incident sev-border-' + inc.severity, id: 'inc-' + inc.id, dataset: { incidentId: inc.id } },
      el('h3', null, sevBadge(inc.severity), el('span', { class: 'score', text: 'risk ' + inc.score + '/100' }),
        el('span', { text: inc.id + ' · ' + inc.steps.length + (inc.steps.length === 1 ? ' step' : ' steps') }),
        el('span', { class: 'who', text: span })),
      el('div', { class: 'inc-title', text: inc.title }),
      el('div', { class: 'who', text: 'actors: ' + listText(inc.actors, 4) + ' · mailboxes: ' + listText(inc.mailboxes, 4) +
        ' · grantees: ' + listText(inc.grantees, 4) }));
    var factors = el('ul', { class: 'factors' });
    inc.factors.forEach(function (f) {
      factors.appendChild(el('li', { text: (f.points >= 0 ? '+' : '') + f.points + ' ' + f.name + ': ' + f.detail }));
    });
    card.appendChild(factors);
    var ol = el('ol', { class: 'timeline' });
    var MAX = 25;
    inc.steps.slice(0, MAX).forEach(function (s) {
      var f = s.finding ? byId.get(s.finding) : null;
      var li = el('li', { class: 'step-' + s.kind + (f ? ' sev-dot-' + f.severity : '') },
        el('time', { text: fmtTime(f ? f.time : s.time) }), el('span', { class: 'step-kind', text: s.kind }), ' ');
      if (f) {
        li.appendChild(el('a', { class: 'jump', href: '#f-' + f.id, text: f.summary,
          on: { click: function (ev) { ev.preventDefault(); showFinding(f.id); } } }));
      } else if (s.finding) {
        li.appendChild(el('span', { class: 'empty', text: 'finding ' + s.finding + ' (not in this report)' }));
      } else {
        li.appendChild(el('span', { text: s.summary }));
        (s.records || []).forEach(function (rid) { li.appendChild(rawDetails(rid)); });
        if (s.more) li.appendChild(el('span', { class: 'empty', text: ' and ' + s.more + ' more records' }));
      }
      ol.appendChild(li);
    });
    if (inc.steps.length > MAX) ol.appendChild(el('li', { class: 'empty', text: (inc.steps.length - MAX) + ' more steps in this incident (all in --incidents)' }));
    if (shown.length < inc.findings.length) ol.appendChild(el('li', { class: 'empty', text: (inc.findings.length - shown.length) + ' findings hidden by the filters' }));
    card.appendChild(ol);
    return card;
  }

  function showIncident(id) {
    var inc = incidentById.get(id);
    if (!inc) return;
    clearFilters(false);
    state.q = id.toLowerCase();
    $('f-search').value = id;
    apply();
    $('incidents').scrollIntoView();
  }

  // -- charts --------------------------------------------------------------------------------
  var tip = $('dw-tooltip');
  function tooltipHandler(handler, event, item, value) {
    if (value === null || value === undefined || value === '') { tip.hidden = true; return; }
    tip.replaceChildren();
    if (typeof value === 'object') {
      Object.keys(value).forEach(function (k) {
        tip.appendChild(el('div', null, el('b', { text: k + ': ' }), String(value[k])));
      });
    } else {
      tip.textContent = String(value);
    }
    tip.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = Math.max(8, event.clientX - w - 14);
    if (y + h > window.innerHeight - 8) y = Math.max(8, event.clientY - h - 14);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  var EMBED = { actions: false, renderer: 'svg', ast: true, tooltip: tooltipHandler };

  // Specs carry no $schema (it would be a URL); the mode says which language a spec is in.
  function embed(target, spec, mode) {
    return vegaEmbed(target, spec, Object.assign({ mode: mode || 'vega-lite' }, EMBED)).then(function (r) { target.dataset.rendered = 'true'; return r; }, function (err) {
      target.replaceChildren(el('p', { class: 'chart-error', text: 'Chart could not be drawn: ' + (err && err.message ? err.message : err) }));
      console.error(err);
      throw err;
    });
  }

  var sevScale = { domain: SEVERITIES, range: SEVERITIES.map(function (s) { return SEV_COLOURS[s]; }) };

  function severityChart() {
    var counts = SEVERITIES.map(function (s) { return { severity: s, findings: findings.filter(function (f) { return f.severity === s; }).length }; });
    return embed($('chart-severity'), {
      width: 360, height: 120, data: { values: counts },
      mark: { type: 'bar', tooltip: true },
      encoding: {
        y: { field: 'severity', type: 'nominal', sort: SEVERITIES, title: null },
        x: { field: 'findings', type: 'quantitative', title: 'findings', axis: { tickMinStep: 1 } },
        color: { field: 'severity', type: 'nominal', scale: sevScale, legend: null }
      }
    });
  }

  function timelineChart() {
    var target = $('chart-timeline');
    if (!DATA.timeline.length) { target.appendChild(el('p', { class: 'empty', text: 'No timed findings.' })); return Promise.resolve(); }
    return embed(target, {
      width: 'container', height: 140, data: { values: DATA.timeline },
      mark: { type: 'bar', tooltip: true },
      encoding: {
        x: { field: 'day', type: 'temporal', timeUnit: 'utcyearmonthdate', title: 'day (UTC)', bandPosition: 0 },
        y: { aggregate: 'sum', field: 'count', type: 'quantitative', title: 'findings', axis: { tickMinStep: 1 } },
        color: { field: 'severity', type: 'nominal', scale: sevScale, legend: { orient: 'right' } },
        order: { field: 'severity', sort: 'ascending' }
      },
      config: { view: { stroke: null } }
    });
  }

  function volumeCharts() {
    var box = $('volume-charts');
    if (!DATA.volume.length) {
      box.appendChild(el('p', { class: 'empty', text: 'No finding in this hunt carries send-volume data (send volume is analysed from message trace, tracking logs, Gmail delivery logs and audit-log Send records).' }));
      return Promise.resolve();
    }
    return Promise.all(DATA.volume.map(function (v) {
      var target = el('div', { class: 'chart wide volume', dataset: { account: v.account } });
      box.append(el('h3', { text: v.account }), target);
      return embed(target, {
        width: 'container', height: 140, data: { values: v.series },
        transform: [{ fold: ['sent', 'expected'], as: ['series', 'messages'] }, { filter: 'datum.messages != null' }],
        mark: { type: 'line', point: true, tooltip: true },
        encoding: {
          x: { field: 'time', type: 'temporal', scale: { type: 'utc' }, title: 'time (UTC)' },
          y: { field: 'messages', type: 'quantitative', title: 'messages sent' },
          color: { field: 'series', type: 'nominal', scale: { domain: ['sent', 'expected'], range: ['#d7301f', '#8c96a3'] } },
          strokeDash: { field: 'series', type: 'nominal', scale: { domain: ['sent', 'expected'], range: [[1, 0], [4, 3]] }, legend: null }
        }
      });
    }));
  }

  // -- graph ---------------------------------------------------------------------------------
  var CAT_RANK = {};
  CATEGORY_COLOURS.forEach(function (c, i) { CAT_RANK[c[0]] = i; });

  function withName(value, name) {
    return name && name.toLowerCase() !== String(value).toLowerCase() ? name + ' (' + value + ')' : value;
  }
  function graphData(list) {
    var edges = new Map();
    list.forEach(function (f) {
      if (!f.grantee) return;
      var target = f.mailbox && f.mailbox.toLowerCase() !== 'organization' && f.mailbox !== f.grantee ? f.mailbox : ORG;
      var key = f.grantee + '\u0000' + target;
      var e = edges.get(key);
      if (!e) {
        e = { source: f.grantee, target: target, kind: f.grantee_kind || 'unknown', count: 0, sev: 0, cats: new Set(), rights: new Set(),
              gname: (f.names || {}).grantee, mname: (f.names || {}).mailbox };
        edges.set(key, e);
      }
      e.count++;
      e.sev = Math.max(e.sev, f._sev);
      e.cats.add(f.category);
      (f.rights || []).forEach(function (r) { e.rights.add(r); });
    });
    var all = Array.from(edges.values());
    all.forEach(function (e) {
      e.category = Array.from(e.cats).sort(function (a, b) { return CAT_RANK[a] - CAT_RANK[b]; })[0];
      e.risky = RISKY[e.kind] ? 1 : 0;
    });
    all.sort(function (a, b) { return (b.risky - a.risky) || (b.sev - a.sev) || (b.count - a.count); });
    var nodes = new Map();
    var kept = [];
    function node(name, role, kind, label) {
      var n = nodes.get(name);
      if (!n) { n = { name: name, label: label || name, grantee: 0, mailbox: 0, kind: 'user', index: nodes.size }; nodes.set(name, n); }
      n[role] = 1;
      if (kind && RISKY[kind]) n.kind = kind;
      return n;
    }
    all.forEach(function (e) {
      var add = (nodes.has(e.source) ? 0 : 1) + (nodes.has(e.target) ? 0 : 1);
      if (nodes.size + add > MAX_GRAPH_NODES) return;
      var s = node(e.source, 'grantee', e.kind, withName(e.source, e.gname));
      var t = node(e.target, 'mailbox', null, withName(e.target, e.mname));
      kept.push({ source: s.index, target: t.index, category: e.category, findings: e.count,
                  severity: DATA.severities[e.sev], grantee: s.label, mailbox: t.label,
                  rights: Array.from(e.rights).join(', ') || '—' });
    });
    var nodeList = Array.from(nodes.values()).map(function (n) {
      var role = n.grantee && n.mailbox ? 'grantee and mailbox' : n.grantee ? 'grantee' : 'mailbox';
      var risk = RISKY[n.kind] ? n.kind : 'ordinary';
      return { index: n.index, name: n.name, label: n.label, role: role, risk: risk,
               short: n.name === ORG ? ORG : (n.name.length > 28 ? n.name.slice(0, 26) + '…' : n.name) };
    });
    return { nodes: nodeList, links: kept, total: all.length };
  }

  function graphSpec(g) {
    var n = g.nodes.length;
    var width = 860, height = Math.max(340, Math.min(760, 220 + n * 10));
    // x/y forces read their target from the node (a Vega "field"), so every node carries it.
    g.nodes.forEach(function (node) { node.tx = width / 2; node.ty = height / 2; });
    var present = function (values, key) {
      var seen = new Set(values.map(function (v) { return v[key]; }));
      return function (x) { return seen.has(x); };
    };
    var cats = CATEGORY_COLOURS.map(function (c) { return c[0]; });
    var risks = ['default', 'anonymous', 'guest', 'external', 'ordinary'];
    var roles = ['grantee', 'mailbox', 'grantee and mailbox'];
    return {
      width: width, height: height, autosize: 'none',
      padding: { left: 10, top: 10, bottom: 10, right: 190 },
      signals: [{ name: 'cx', update: 'width / 2' }, { name: 'cy', update: 'height / 2' }],
      data: [{ name: 'node-data', values: g.nodes }, { name: 'link-data', values: g.links }],
      scales: [
        { name: 'edge', type: 'ordinal', domain: cats, range: CATEGORY_COLOURS.map(function (c) { return c[1]; }) },
        { name: 'risk', type: 'ordinal', domain: risks, range: ['#c00018', '#c00018', '#f07d00', '#f07d00', '#b8c2d0'] },
        { name: 'shape', type: 'ordinal', domain: roles, range: ['circle', 'square', 'diamond'] }
      ],
      legends: [
        { stroke: 'edge', title: 'grant allows', orient: 'right', symbolType: 'stroke', symbolStrokeWidth: 3, values: cats.filter(present(g.links, 'category')) },
        { fill: 'risk', title: 'principal', orient: 'right', values: risks.filter(present(g.nodes, 'risk')),
          encode: { labels: { update: { text: { signal: "datum.value === 'default' ? 'Default / Everyone' : datum.value" } } } } },
        { shape: 'shape', title: 'role', orient: 'right', values: roles.filter(present(g.nodes, 'role')) }
      ],
      marks: [
        {
          name: 'nodes', type: 'symbol', zindex: 1, from: { data: 'node-data' },
          encode: {
            enter: {
              fill: { scale: 'risk', field: 'risk' }, shape: { scale: 'shape', field: 'role' },
              stroke: { value: '#1d2330' }, strokeWidth: { signal: "datum.risk === 'ordinary' ? 0.5 : 2" },
              size: { signal: "datum.risk === 'ordinary' ? 160 : 320" },
              tooltip: { signal: "{'principal': datum.label, 'role': datum.role, 'kind': datum.risk}" }
            }
          },
          transform: [{
            type: 'force', iterations: 300, static: true, signal: 'force',
            forces: [
              { force: 'center', x: { signal: 'cx' }, y: { signal: 'cy' } },
              { force: 'collide', radius: 34 },
              { force: 'nbody', strength: -260 },
              { force: 'link', links: 'link-data', distance: 120 },
              { force: 'x', x: 'datum.tx', strength: 0.04 },
              { force: 'y', y: 'datum.ty', strength: 0.07 }
            ]
          }]
        },
        {
          name: 'links', type: 'path', from: { data: 'link-data' },
          encode: {
            update: {
              stroke: { scale: 'edge', field: 'category' }, strokeWidth: { signal: 'min(6, 1.5 + datum.findings * 0.5)' },
              strokeOpacity: { value: 0.75 },
              tooltip: { signal: "{'grantee': datum.grantee, 'mailbox': datum.mailbox, 'rights': datum.rights, 'allows': datum.category, 'findings': datum.findings, 'highest severity': datum.severity}" }
            }
          },
          transform: [{ type: 'linkpath', require: { signal: 'force' }, shape: 'line', sourceX: 'datum.source.x', sourceY: 'datum.source.y', targetX: 'datum.target.x', targetY: 'datum.target.y' }]
        },
        {
          type: 'symbol', from: { data: 'links' }, interactive: false,
          encode: {
            update: {
              shape: { value: 'triangle-right' }, size: { value: 70 },
              fill: { scale: 'edge', field: 'datum.category' },
              x: { signal: 'datum.datum.source.x + 0.62 * (datum.datum.target.x - datum.datum.source.x)' },
              y: { signal: 'datum.datum.source.y + 0.62 * (datum.datum.target.y - datum.datum.source.y)' },
              angle: { signal: 'atan2(datum.datum.target.y - datum.datum.source.y, datum.datum.target.x - datum.datum.source.x) * 180 / PI' }
            }
          }
        },
        {
          type: 'text', from: { data: 'nodes' }, interactive: false, zindex: 2,
          encode: {
            update: {
              x: { field: 'x' }, y: { field: 'y' }, dy: { value: -11 }, align: { value: 'center' }, baseline: { value: 'bottom' },
              text: { field: 'datum.short' }, fontSize: { value: 11 },
              fontWeight: { signal: "datum.datum.risk === 'ordinary' ? 'normal' : 'bold'" },
              fill: { signal: "datum.datum.risk === 'ordinary' ? '#1d2330' : '#8e0b1f'" },
              stroke: { value: 'white' }, strokeWidth: { value: 3 }, strokeOpacity: { value: 0.8 }
            }
          }
        },
        {
          type: 'text', from: { data: 'nodes' }, interactive: false, zindex: 3,
          encode: {
            update: {
              x: { field: 'x' }, y: { field: 'y' }, dy: { value: -11 }, align: { value: 'center' }, baseline: { value: 'bottom' },
              text: { field: 'datum.short' }, fontSize: { value: 11 },
              fontWeight: { signal: "datum.datum.risk === 'ordinary' ? 'normal' : 'bold'" },
              fill: { signal: "datum.datum.risk === 'ordinary' ? '#1d2330' : '#8e0b1f'" }
            }
          }
        }
      ]
    };
  }

  var graphView = null, graphTimer = null, graphKey = null, graphPromise = null, started = false;
  function scheduleGraph() {
    if (!started) return;
    clearTimeout(graphTimer);
    graphTimer = setTimeout(renderGraph, 150);
  }
  function renderGraph() {
    var target = $('chart-graph');
    var g = graphData(matching);
    var key = JSON.stringify([g.nodes.length, g.links]);
    if (key === graphKey && graphPromise) return graphPromise;
    graphKey = key;
    graphPromise = drawGraph(target, g);
    return graphPromise;
  }
  function drawGraph(target, g) {
    if (graphView) { graphView.finalize(); graphView = null; }
    target.dataset.rendered = 'false';
    var note = $('graph-note');
    if (!g.links.length) {
      target.replaceChildren(el('p', { class: 'empty', text: 'No grant with a grantee among the findings that match the filters.' }));
      note.textContent = '';
      target.dataset.rendered = 'true';
      return Promise.resolve();
    }
    note.textContent = g.links.length < g.total
      ? 'Showing ' + g.links.length + ' of ' + g.total + ' grantee → mailbox pairs (' + g.nodes.length + ' principals, risky grantees and most severe first); narrow the filters to see the rest.'
      : g.links.length + ' grantee → mailbox pairs between ' + g.nodes.length + ' principals.';
    return embed(target, graphSpec(g), 'vega').then(function (r) {
      graphView = r.view;
      target.dataset.draws = String((parseInt(target.dataset.draws || '0', 10) || 0) + 1);
    });
  }

  // -- controls ------------------------------------------------------------------------------
  function countBy(key) {
    var m = new Map();
    findings.forEach(function (f) { var v = f[key]; if (v) m.set(v, (m.get(v) || 0) + 1); });
    return Array.from(m.entries()).sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); });
  }
  function setupControls() {
    var chips = $('f-severity');
    SEVERITIES.forEach(function (s) {
      var n = findings.filter(function (f) { return f.severity === s; }).length;
      var chip = el('button', { type: 'button', class: 'chip', 'aria-pressed': 'false', dataset: { severity: s } }, s, el('span', { class: 'n', text: String(n) }));
      chip.addEventListener('click', function () {
        if (state.sev.has(s)) state.sev.delete(s); else state.sev.add(s);
        chip.setAttribute('aria-pressed', state.sev.has(s) ? 'true' : 'false');
        apply();
      });
      chips.appendChild(chip);
    });
    var ruleSelect = $('f-rule');
    countBy('rule').forEach(function (p) {
      var title = (DATA.rules[p[0]] || {}).title || p[0];
      ruleSelect.appendChild(el('option', { value: p[0], text: title + ' (' + p[1] + ')' }));
    });
    ruleSelect.addEventListener('change', function () { state.rule = ruleSelect.value; apply(); });
    [['mailbox', 'dl-mailbox'], ['actor', 'dl-actor']].forEach(function (p) {
      var dl = $(p[1]);
      countBy(p[0]).slice(0, 500).forEach(function (v) { dl.appendChild(el('option', { value: v[0] })); });
      var input = $('f-' + p[0]);
      input.addEventListener('input', debounce(function () { state[p[0]] = input.value.trim().toLowerCase(); apply(); }, 120));
    });
    var search = $('f-search');
    search.addEventListener('input', debounce(function () { state.q = search.value.trim().toLowerCase(); apply(); }, 120));
    $('f-clear').addEventListener('click', function () { clearFilters(true); });
    $('f-sort').addEventListener('change', function () { state.sort = $('f-sort').value; apply(); });
    $('f-pagesize').addEventListener('change', function () { state.pageSize = parseInt($('f-pagesize').value, 10) || 50; apply(); });
  }
  function clearFilters(reapply) {
    state.q = ''; state.rule = ''; state.mailbox = ''; state.actor = ''; state.sev.clear();
    $('f-search').value = ''; $('f-rule').value = ''; $('f-mailbox').value = ''; $('f-actor').value = '';
    Array.prototype.forEach.call(document.querySelectorAll('#f-severity .chip'), function (c) { c.setAttribute('aria-pressed', 'false'); });
    if (reapply) apply();
  }
  function debounce(fn, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }

  setupControls();
  apply();
  document.body.dataset.ready = 'list';
  if (window.performance && performance.mark) performance.mark('dw-list');
  var charts = [severityChart(), timelineChart(), volumeCharts()];
  started = true;
  Promise.all(charts.concat([renderGraph()]))
    .then(function () {
      document.body.dataset.ready = 'charts';
      if (window.performance && performance.mark) performance.mark('dw-charts');
    },
          function () { document.body.dataset.ready = 'error'; });
})();
