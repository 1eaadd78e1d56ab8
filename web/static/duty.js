/*
 * The console's duty attendance page (/console/duty): the day's cadres with their
 * clock-in evidence and corrections, the alerts with their answers, the period's figures
 * with an Apache ECharts chart and the rankings, the cameras, the closed periods.
 * Registered with console.js and built with its helpers. An EventSource on
 * /api/duty/events (the session cookie signs it) brings a new alert or a closed period
 * in without a reload.
 *
 * Exposes window.lighthouseDuty = {ready, alerts, chart, live} for tests: `alerts` counts
 * the alerts shown, `chart` is true once the chart is drawn, `live` once the event stream
 * is open.
 */
(function (global) {
  'use strict';

  const view = global.lighthouseConsole;
  const kit = view.kit;
  const { api, config, t, orDash, dateTime, el, $, fillTable, showAlert, errorText } = kit;
  const labels = JSON.parse(global.document.getElementById('duty-labels').textContent);
  const state = { ready: false, alerts: 0, chart: false, live: false };
  global.lighthouseDuty = state;
  // ECharts draws one bar per unit; beyond this many, a zoom bar pages through them
  const CHART_BARS = 20;
  const CORRECTABLE = ['on_time', 'late', 'absent', 'leave', 'field_duty', 'rest'];

  function dutyLabel(group, value) {
    return (labels[group] && labels[group][value]) || orDash(value);
  }

  /** Today's date in the county's zone, as YYYY-MM-DD (what the API's `date` takes). */
  function countyToday() {
    return new Intl.DateTimeFormat('en-CA', {
      timeZone: config.timeZone || 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit',
    }).format(new Date());
  }

  function hhmm(iso) {
    return iso ? dateTime(iso).slice(11) : '—';
  }

  function hours(minutes) {
    return minutes ? (minutes / 60).toFixed(1) : '0';
  }

  function percent(rate) {
    return rate === null || rate === undefined ? '—' : (rate * 100).toFixed(1) + '%';
  }

  function query(extra) {
    const params = new URLSearchParams();
    if (config.org) params.set('org_id', String(config.org));
    for (const [key, value] of Object.entries(extra || {})) params.set(key, String(value));
    const text = params.toString();
    return text ? '?' + text : '';
  }

  function button(text, className, onClick) {
    return el('button', { type: 'button', className: 'con-button con-button-small ' + (className || ''), onclick: onClick }, text);
  }

  /**
   * A form in a row under `row` (one at a time per row): `controls` and Save / Cancel;
   * `save()` resolves when done (the row goes and `after()` reloads), or throws an
   * ApiError shown in the form.
   */
  function formRow(row, controls, save, after) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains('duty-detail')) next.remove();
    const message = el('span', { className: 'con-field-error', role: 'alert' });
    const form = el('form', { className: 'duty-form' }, [
      ...controls,
      el('button', { type: 'submit', className: 'con-button con-button-small con-button-primary' }, t('save')),
      button(t('cancel'), 'con-button-quiet', () => detail.remove()),
      message,
    ]);
    const detail = el('tr', { className: 'duty-detail' },
      el('td', { colSpan: row.children.length }, form));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      message.textContent = '';
      try {
        await save();
        detail.remove();
        await after();
      } catch (error) {
        message.textContent = error instanceof kit.ApiError ? errorText(error) : String(error);
      }
    });
    row.after(detail);
    const first = form.querySelector('input, select, textarea');
    if (first) first.focus();
    return detail;
  }

  function reasonInput(placeholder) {
    return el('input', {
      type: 'text', className: 'con-input', maxLength: 200, required: true,
      placeholder: placeholder || t('reason'), 'aria-label': placeholder || t('reason'),
    });
  }

  // ---- the day: each cadre, with evidence and corrections ---------------------------------

  function picture(src, alt, className) {
    if (!src) return null;
    return el('a', { href: src, target: '_blank', rel: 'noopener' },
      el('img', { src, alt, className, loading: 'lazy' }));
  }

  async function showEvidence(row, day) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains('duty-detail')) {
      next.remove();
      return;
    }
    const cell = el('td', { colSpan: row.children.length }, t('loading'));
    row.after(el('tr', { className: 'duty-detail duty-evidence-row', dataset: { dayId: String(day.id) } }, cell));
    const { sightings } = await api('GET', '/api/duty/days/' + day.id + '/sightings');
    if (!sightings.length) {
      cell.textContent = t('noSighting');
      return;
    }
    const cards = sightings.map((seen) => el('figure', { className: 'con-evidence duty-sighting' }, [
      el('div', { className: 'con-evidence-photos' }, [
        picture(seen.in_face_url, t('face'), 'con-evidence-thumb'),
        picture(seen.in_scene_url, t('scene'), 'con-evidence-scene'),
        picture(seen.out_face_url, t('face'), 'con-evidence-thumb'),
        picture(seen.out_scene_url, t('scene'), 'con-evidence-scene'),
      ]),
      el('figcaption', {}, [
        el('span', {}, t('clockIn', { time: hhmm(seen.first_at) })),
        el('span', {}, t('clockOut', { time: hhmm(seen.last_at) })),
        el('span', {}, t('similarity', { value: seen.similarity.toFixed(2) })),
      ]),
    ]));
    const hidden = sightings.every((seen) => !seen.in_face_url);
    cell.replaceChildren(el('div', { className: 'con-evidence-grid' }, cards),
      hidden ? el('p', { className: 'con-hint' }, t('noPhotos')) : null);
  }

  function correct(row, day, reload) {
    const status = el('select', { className: 'con-input', 'aria-label': t('correct') },
      CORRECTABLE.map((value) => el('option', { value, selected: value === day.status }, dutyLabel('dayStatus', value))));
    const reason = reasonInput();
    formRow(row, [status, reason], async () => {
      await api('POST', '/api/duty/days/' + day.id + '/correction', { status: status.value, reason: reason.value.trim() });
      showAlert($('duty-days-message'), t('corrected', { name: day.name }), 'ok');
    }, reload);
  }

  async function loadDays(me, date) {
    const { days } = await api('GET', '/api/duty/days' + query({ date }));
    const canWrite = me.capabilities.includes('duty:write');
    const reload = () => loadAll(me);
    const rows = days.map((day) => {
      const row = el('tr', { dataset: { memberId: String(day.member_id), status: day.status } });
      const status = el('td', { className: 'duty-status-' + day.status }, [
        dutyLabel('dayStatus', day.status),
        day.corrected ? el('span', { className: 'duty-corrected' },
          t('correctedFrom', { status: dutyLabel('dayStatus', day.machine_status) })) : null,
      ]);
      row.append(
        el('td', {}, day.name),
        el('td', {}, orDash(day.village)),
        status,
        el('td', {}, hhmm(day.arrived_at)),
        el('td', {}, hhmm(day.departed_at)),
        el('td', { className: 'num' }, day.late_min ? String(day.late_min) : '—'),
        el('td', { className: 'num' }, hours(day.present_min)),
        el('td', { className: 'con-actions' }, [
          day.arrived_at ? button(t('evidence'), 'duty-evidence', () => showEvidence(row, day).catch(kit.showPageError)) : null,
          canWrite ? button(t('correct'), 'con-button-quiet duty-correct', () => correct(row, day, reload)) : null,
        ]),
      );
      return row;
    });
    fillTable($('duty-days'), rows, 'duty-days-empty');
    const count = (...statuses) => days.filter((day) => statuses.includes(day.status)).length;
    return {
      due: count('pending', 'on_time', 'late', 'absent'),
      in: days.filter((day) => day.arrived_at).length,
      late: count('late'),
      absent: count('absent'),
      leave: count('leave', 'field_duty'),
    };
  }

  // ---- alerts --------------------------------------------------------------------------

  function explain(row, alert, reload) {
    const text = el('textarea', { className: 'con-input', maxLength: 500, required: true, rows: 2, 'aria-label': t('explanation'), placeholder: t('explanation') });
    formRow(row, [text], async () => {
      await api('POST', '/api/duty/alerts/' + alert.id + '/explanation', { text: text.value.trim() });
      showAlert($('duty-alerts-message'), t('explained'), 'ok');
    }, reload);
  }

  function decide(row, alert, excused, reload) {
    const reason = reasonInput();
    formRow(row, [reason], async () => {
      await api('POST', '/api/duty/alerts/' + alert.id + '/decision', { excused, reason: reason.value.trim() });
      showAlert($('duty-alerts-message'), t('decided', { name: alert.name }), 'ok');
    }, reload);
  }

  async function loadAlerts(me) {
    const { alerts } = await api('GET', '/api/duty/alerts' + query());
    const caps = me.capabilities;
    const reload = () => loadAll(me);
    const rows = alerts.map((alert) => {
      const row = el('tr', { dataset: { alertId: String(alert.id), status: alert.status } });
      const open = alert.status === 'open' || alert.status === 'explained';
      const decided = alert.decided_by
        ? t('decidedBy', { status: dutyLabel('alertStatus', alert.status), name: alert.decided_by })
        : dutyLabel('alertStatus', alert.status);
      row.append(
        el('td', {}, String(alert.date)),
        el('td', {}, alert.name),
        el('td', {}, orDash(alert.village)),
        el('td', { className: 'duty-status-' + alert.kind }, dutyLabel('dayStatus', alert.kind)),
        el('td', {}, dateTime(alert.raised_at)),
        el('td', {}, decided),
        el('td', {}, alert.explanation ? alert.explanation + ' (' + alert.explained_by + ')' : '—'),
        el('td', { className: 'con-actions' }, open ? [
          caps.includes('duty:explain') ? button(t('explain'), 'duty-explain', () => explain(row, alert, reload)) : null,
          caps.includes('duty:write') ? button(t('excuse'), 'duty-excuse', () => decide(row, alert, true, reload)) : null,
          caps.includes('duty:write') ? button(t('uphold'), 'con-button-quiet duty-uphold', () => decide(row, alert, false, reload)) : null,
        ] : []),
      );
      return row;
    });
    fillTable($('duty-alerts'), rows, 'duty-alerts-empty');
    state.alerts = alerts.length;
  }

  // ---- the period: figures, chart, rankings ------------------------------------------------

  function figureCells(line) {
    return [
      el('td', { className: 'num' }, String(line.days_due)),
      el('td', { className: 'num' }, String(line.on_time)),
      el('td', { className: 'num' }, String(line.late)),
    ];
  }

  function drawChart(lines) {
    const box = $('duty-chart');
    const rated = lines.filter((line) => line.rate !== null && line.rate !== undefined);
    box.hidden = !rated.length || !global.echarts;
    if (box.hidden) return;
    // one chart per page, drawn again on each load (echarts keeps it on the element)
    const chart = global.echarts.getInstanceByDom(box) || global.echarts.init(box, null, { renderer: 'canvas' });
    chart.setOption({
      animation: false,
      grid: { left: 48, right: 16, top: 24, bottom: rated.length > CHART_BARS ? 72 : 48 },
      tooltip: { trigger: 'axis', valueFormatter: (value) => value + '%' },
      xAxis: { type: 'category', data: rated.map((line) => line.name), axisLabel: { interval: 0, rotate: rated.length > 8 ? 30 : 0 } },
      yAxis: { type: 'value', name: t('chartRate'), min: 0, max: 100 },
      dataZoom: rated.length > CHART_BARS ? [{ type: 'slider', start: 0, end: (CHART_BARS / rated.length) * 100 }] : [],
      series: [{
        type: 'bar',
        name: t('chartRate'),
        barMaxWidth: 48,
        data: rated.map((line) => Math.round(line.rate * 1000) / 10),
        itemStyle: { color: '#c8161d' },
        label: { show: rated.length <= CHART_BARS, position: 'top', formatter: '{c}' },
      }],
    }, true);
    chart.resize();
    state.chart = true;
  }

  async function loadSummary(me, date, period) {
    const { summary } = await api('GET', '/api/duty/summary' + query({ date, period }));
    $('duty-summary-title').textContent = t('summaryOf', { from: summary.starts, to: summary.ends });
    // the units a county compares are its towns; a town's, its villages
    const units = summary.towns.length > 1 ? summary.towns : summary.villages;
    drawChart(units);
    fillTable($('duty-ranking'), units.map((line) => el('tr', { dataset: { unitId: String(line.id) } }, [
      el('td', { className: 'num' }, orDash(line.rank)),
      el('td', {}, line.name),
      el('td', { className: 'num' }, String(line.cadres || 0)),
      ...figureCells(line),
      el('td', { className: 'num' }, String(line.late_min)),
      el('td', { className: 'num' }, String(line.absent)),
      el('td', { className: 'num' }, String(line.leave)),
      el('td', { className: 'num' }, hours(line.present_min)),
      el('td', { className: 'num' }, percent(line.rate)),
    ])), 'duty-ranking-empty');
    fillTable($('duty-cadres'), summary.cadres.map((line) => el('tr', { dataset: { memberId: String(line.id) } }, [
      el('td', { className: 'num' }, orDash(line.rank)),
      el('td', {}, line.name),
      el('td', {}, orDash(line.post)),
      el('td', {}, orDash(line.village)),
      ...figureCells(line),
      el('td', { className: 'num' }, String(line.absent)),
      el('td', { className: 'num' }, String(line.leave)),
      el('td', { className: 'num' }, hours(line.present_min)),
      el('td', { className: 'num' }, percent(line.rate)),
    ])), 'duty-cadres-empty');
    return summary;
  }

  // ---- cameras and reports -----------------------------------------------------------------

  async function loadCameras(villages) {
    const { cameras } = await api('GET', '/api/duty/cameras' + query());
    fillTable($('duty-cameras'), cameras.map((camera) => el('tr', { dataset: { cameraId: String(camera.id) } }, [
      el('td', {}, camera.name),
      el('td', {}, dutyLabel('cameraKind', camera.kind)),
      el('td', {}, orDash(villages.get(camera.village_id))),
      el('td', { className: 'con-status ' + (camera.online ? 'con-status-online' : '') },
        !camera.enabled ? t('off') : camera.online ? t('online') : t('offline')),
      el('td', {}, dateTime(camera.last_frame_at)),
      el('td', {}, dateTime(camera.last_recognition_at)),
    ])), 'duty-cameras-empty');
  }

  async function loadReports() {
    const { reports } = await api('GET', '/api/duty/reports');
    fillTable($('duty-reports'), reports.map((report) => el('tr', { dataset: { reportId: String(report.id) } }, [
      el('td', {}, report.org.name),
      el('td', {}, dutyLabel('period', report.period)),
      el('td', {}, String(report.starts)),
      el('td', {}, String(report.ends)),
      el('td', { className: 'num' }, percent(report.total.rate)),
      el('td', {}, el('a', { href: '/api/duty/reports/' + report.id + '.xlsx', download: '' }, t('download'))),
    ])), 'duty-reports-empty');
  }

  function showStats(today, total) {
    const stats = [
      ['statDue', String(today.due)],
      ['statIn', String(today.in)],
      ['statLate', String(today.late)],
      ['statAbsent', String(today.absent)],
      ['statLeave', String(today.leave)],
      ['statRate', percent(total.rate)],
    ];
    $('duty-stats').replaceChildren(...stats.map(([key, value]) => el('div', { className: 'con-stat', dataset: { stat: key } }, [
      el('dt', {}, t(key)), el('dd', {}, value),
    ])));
  }

  // ---- rosters, leave and holidays as spreadsheets ---------------------------------------------

  function setUpSheets(me, reload) {
    const message = $('duty-sheet-message');
    const refused = $('duty-refused');
    const countyStaff = me.org && me.org.kind === 'county';
    for (const row of global.document.querySelectorAll('[data-sheet]')) {
      const kind = row.dataset.sheet;
      const org = kind === 'calendar' ? '' : query();
      row.querySelector('.duty-sheet-export').href = '/api/duty/' + kind + '.xlsx' + org;
      // the API decides; the button shows only where it would say yes
      const canWrite = me.capabilities.includes('duty:write') && (kind !== 'calendar' || countyStaff);
      row.querySelector('.duty-sheet-write').hidden = !canWrite;
      const input = row.querySelector('.duty-sheet-file');
      input.addEventListener('change', async () => {
        const file = input.files[0];
        if (!file) return;
        const form = new global.FormData();
        form.append('file', file, file.name);
        refused.hidden = true;
        showAlert(message, t('importing', { file: file.name }));
        try {
          const done = await api('POST', '/api/duty/' + kind + '/import' + org, form);
          showAlert(message, t('imported', { count: done.imported, file: file.name }), 'ok');
          await reload();
        } catch (error) {
          const rows = error instanceof kit.ApiError && error.fields ? Object.entries(error.fields) : [];
          if (rows.length) {
            showAlert(message, t('importRefused', { file: file.name }), 'error');
            refused.replaceChildren(...rows.map(([where, why]) => el('li', {}, where + '：' + why)));
            refused.hidden = false;
          } else {
            showAlert(message, error instanceof kit.ApiError ? (error.message || errorText(error)) : String(error), 'error');
          }
        } finally {
          input.value = '';
        }
      });
    }
  }

  // ---- the page ----------------------------------------------------------------------------

  async function loadAll(me) {
    const date = $('duty-date').value || countyToday();
    const period = $('duty-period').value;
    $('duty-days-title').textContent = t('daysOn', { date });
    $('duty-xlsx').href = '/api/duty/summary.xlsx' + query({ date, period });
    const [today, summary] = await Promise.all([loadDays(me, date), loadSummary(me, date, period), loadAlerts(me)]);
    showStats(today, summary.total);
    // the cameras' villages by name, as the summary names them
    const villages = new Map(summary.villages.map((line) => [line.village_id || line.id, line.name]));
    await Promise.all([loadCameras(villages), loadReports()]);
  }

  function listen(me) {
    const events = new global.EventSource('/api/duty/events');
    events.addEventListener('ready', () => { state.live = true; });
    const alerted = (event) => {
      const alert = JSON.parse(event.data);
      showAlert($('duty-live'), t('newAlert', {
        name: alert.member.name, village: alert.village.name, kind: dutyLabel('alertKind', event.type.slice(5)),
      }), 'warn');
      loadAll(me).catch(kit.showPageError);
    };
    events.addEventListener('duty.late', alerted);
    events.addEventListener('duty.absent', alerted);
    events.addEventListener('duty.report', (event) => {
      const report = JSON.parse(event.data);
      showAlert($('duty-live'), t('newReport', { org: report.org.name, from: report.starts, to: report.ends }), 'ok');
      loadReports().catch(kit.showPageError);
    });
    // the stream reconnects by itself; `live` says whether it is up now
    events.addEventListener('error', () => { state.live = false; });
  }

  async function dutyPage(me) {
    const heading = config.org ? await api('GET', '/api/org/' + config.org) : me.org;
    $('duty-heading').textContent = t('dutyOf', { org: heading ? heading.name : '' });
    $('duty-date').value = config.date || countyToday();
    const reload = () => loadAll(me).catch(kit.showPageError);
    $('duty-date').addEventListener('change', reload);
    $('duty-period').addEventListener('change', reload);
    $('duty-form').addEventListener('submit', (event) => event.preventDefault());
    global.addEventListener('resize', () => {
      const chart = global.echarts && global.echarts.getInstanceByDom($('duty-chart'));
      if (chart) chart.resize();
    });
    setUpSheets(me, () => loadAll(me));
    $('duty-patrol').href = kit.url('/console/supervision/patrol', { rooms: 'duty', scope: config.org });
    $('duty-patrol').hidden = !me.capabilities.includes('meetings:supervise') && !me.capabilities.includes('duty:write');
    await loadAll(me);
    listen(me);
    state.ready = true;
  }

  view.registerPage('duty', dutyPage);
})(window);
