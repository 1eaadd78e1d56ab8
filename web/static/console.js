/*
 * The staff console (/console/...): each page is a translated shell that this script
 * fills from the JSON API with the httponly session cookie (POST /api/login sets it).
 * Settings, strings and enum labels arrive as JSON in #con-config, #con-strings and
 * #con-labels (no inline script: the pages' CSP forbids them); a page may add strings of
 * its own in #con-page-strings. Text from the API is only ever set as textContent, never
 * parsed as HTML.
 *
 * Exposes window.lighthouseConsole = {page, ready, me} for tests; `ready` turns true
 * once the page has shown its data (or its error). The recording player adds
 * window.lighthousePlayer (see recordingPlayer).
 */
(function (global) {
  'use strict';

  const document = global.document;

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : {};
  }

  const config = readJson('con-config');
  const strings = Object.assign(readJson('con-strings'), readJson('con-page-strings'));
  const labels = readJson('con-labels');
  const view = { page: config.page, ready: false, me: null };
  global.lighthouseConsole = view;

  const DASH = '—';
  // Pairing codes as db/accounts.py makes them: no 0/O/1/I.
  const CODE_PATTERN = /^[2-9A-HJ-NP-Z]{6}$/;
  const SESSION_ERRORS = new Set(['missing_token', 'invalid_token', 'token_expired', 'token_revoked']);
  const ERROR_TEXT = {
    network: 'errorNetwork',
    bad_credentials: 'errorBadCredentials',
    forbidden: 'errorForbidden',
    not_found: 'errorNotFound',
    validation_failed: 'errorValidation',
    invalid_json: 'errorValidation',
    unknown_pairing: 'errorUnknownPairing',
    pairing_expired: 'errorPairingExpired',
    too_many_requests: 'errorRateLimited',
    same_name_at_site: 'errorSameName',
  };
  const SITE_KINDS = new Set(['county', 'town', 'village', 'branch']);
  // Who may import members (members:write in db/access.py); the API checks it anyway.
  const IMPORT_ROLES = new Set(['county_admin', 'town_admin', 'village_secretary']);
  const IMPORT_MAX_BYTES = 10 * 1024 * 1024; // web/api/members_io.py IMPORT_MAX_BYTES
  const IMPORT_POLL_MS = 500;
  const IMPORT_ERROR_TEXT = {
    file_too_large: 'importTooLarge',
    too_many_rows: 'importTooManyRows',
    import_running: 'importRunning',
    import_busy: 'importBusy',
  };

  // ---- text ----------------------------------------------------------------------

  function t(key, values) {
    const template = strings[key] || key;
    const data = values || {};
    return String(template).replace(/\{(\w+)\}/g, (whole, name) =>
      (Object.prototype.hasOwnProperty.call(data, name) ? String(data[name]) : whole));
  }

  function label(group, value) {
    if (value === null || value === undefined || value === '') return DASH;
    return (labels[group] && labels[group][value]) || String(value);
  }

  function orDash(value) {
    return value === null || value === undefined || value === '' ? DASH : String(value);
  }

  function pad(n) {
    return (n < 10 ? '0' : '') + n;
  }

  /** "2026-11-23 14:05" in the browser's time zone (county PCs run on China time). */
  // Times are shown in the county's time zone, whatever the office PC's clock is set to
  // (the Excel exports use the same).
  const COUNTY_TIME = new Intl.DateTimeFormat('en-GB', {
    timeZone: config.timeZone || 'Asia/Shanghai',
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  });

  function countyParts(when) {
    const parts = {};
    for (const { type, value } of COUNTY_TIME.formatToParts(when)) parts[type] = value;
    return parts;
  }

  function dateTime(iso) {
    if (!iso) return DASH;
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    const p = countyParts(when);
    return p.year + '-' + p.month + '-' + p.day + ' ' + p.hour + ':' + p.minute;
  }

  function timeRange(start, end) {
    if (!start && !end) return DASH;
    if (start && end && dateTime(start).slice(0, 10) === dateTime(end).slice(0, 10)) {
      return dateTime(start) + ' – ' + dateTime(end).slice(11);
    }
    return dateTime(start) + ' – ' + dateTime(end);
  }

  /** "2026-11-23 14:05:09": a recording's start and end, to the second. */
  function dateTimeSeconds(iso) {
    if (!iso) return DASH;
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    return dateTime(iso) + ':' + countyParts(when).second;
  }

  /** "14:05:09" of a moment (milliseconds since the epoch). */
  function clockTime(ms) {
    const when = new Date(ms);
    if (Number.isNaN(when.getTime())) return DASH;
    const p = countyParts(when);
    return p.hour + ':' + p.minute + ':' + p.second;
  }

  /** A length of time as "mm:ss", and "h:mm:ss" from an hour on. */
  function mmss(seconds, round) {
    const value = Number(seconds);
    if (!Number.isFinite(value) || value < 0) return DASH;
    const whole = round ? Math.round(value) : Math.floor(value + 1e-6);
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const rest = pad(minutes) + ':' + pad(whole % 60);
    return hours > 0 ? hours + ':' + rest : rest;
  }

  /** "12.3 MB" (binary units, as a file manager shows them); nothing written yet: a dash. */
  function fileSize(bytes) {
    if (!bytes || bytes < 0) return DASH;
    const units = ['KB', 'MB', 'GB', 'TB'];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (value < 10 ? value.toFixed(1) : String(Math.round(value))) + ' ' + units[unit];
  }

  // ---- DOM -----------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  /** el('a', {href: '/x', className: 'y'}, 'text' | node | [children]) */
  function el(tag, props, children) {
    const element = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined) continue;
      if (key === 'className') element.className = value;
      else if (key === 'dataset') Object.assign(element.dataset, value);
      else if (key in element && typeof value !== 'string') element[key] = value;
      else element.setAttribute(key, value);
    }
    const list = Array.isArray(children) ? children : [children];
    for (const child of list) {
      if (child === null || child === undefined || child === false) continue;
      element.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return element;
  }

  function showAlert(element, text, kind) {
    if (!element) return;
    element.textContent = text || '';
    element.hidden = !text;
    element.classList.toggle('con-alert-error', kind === 'error');
    element.classList.toggle('con-alert-ok', kind === 'ok');
    element.classList.toggle('con-alert-warn', kind === 'warn');
  }

  /** The page-wide alert: an API error, a script error, or nothing (null hides it). */
  function showPageError(error) {
    if (!error) showAlert($('con-error'), '');
    else if (error instanceof ApiError) showAlert($('con-error'), errorText(error), 'error');
    else showAlert($('con-error'), t('errorGeneric', { code: error.name || 'Error' }), 'error');
  }

  // ---- addresses -----------------------------------------------------------------

  /** A console address keeping the language (when not the default) and the given params. */
  function url(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== '') query.set(key, String(value));
    }
    if (config.keepLang) query.set('lang', config.keepLang);
    const text = query.toString();
    return text ? path + '?' + text : path;
  }

  const SECTION_PATHS = {
    tree: '/console',
    members: '/console/members',
    terminals: '/console/terminals',
    meetings: '/console/meetings',
    recordings: '/console/recordings',
    supervision: '/console/supervision',
    command: '/console/command',
    audit: '/console/audit',
    duty: '/console/duty',
  };
  // A page below a section lights that section up in the navigation.
  const PARENT_SECTION = {
    meeting: 'meetings',
    signins: 'meetings',
    faces: 'members',
    recording: 'recordings',
    watch: 'supervision',
    patrol: 'supervision',
    supervisionLog: 'supervision',
  };

  function goToLogin() {
    const here = global.location.pathname + global.location.search;
    global.location.replace(url(config.loginPath || '/console/login', { next: here }));
  }

  // ---- the API -------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message || code);
      this.status = status;
      this.code = code;
      this.fields = fields || null;
    }
  }

  /** A JSON API call; a FormData body goes as multipart (the browser sets its boundary). */
  async function api(method, path, body) {
    const options = { method, credentials: 'same-origin', cache: 'no-store', headers: {} };
    if (body instanceof global.FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await global.fetch(path, options);
    } catch (error) {
      throw new ApiError(0, 'network', String(error));
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const problem = (data && data.error) || {};
      const code = problem.code || 'http_' + response.status;
      // Signed out or expired: every page but the login page goes there.
      if (response.status === 401 && config.page !== 'login') goToLogin();
      throw new ApiError(response.status, code, problem.message, problem.fields);
    }
    return data;
  }

  function errorText(error) {
    const code = error && error.code ? error.code : 'network';
    if (SESSION_ERRORS.has(code)) return t('errorSession');
    if (ERROR_TEXT[code]) return t(ERROR_TEXT[code]);
    return t('errorGeneric', { code });
  }

  // Org units met on this page, by id (GET /api/org/{id} carries counts and children).
  const orgs = new Map();

  function getOrg(id) {
    const key = id === null || id === undefined ? 'me' : String(id);
    if (!orgs.has(key)) {
      const request = api('GET', key === 'me' ? '/api/org' : '/api/org/' + key);
      // A failed look-up is not remembered: the next call may succeed.
      request.catch(() => orgs.delete(key));
      orgs.set(key, request);
    }
    return orgs.get(key);
  }

  async function orgName(id) {
    try {
      return (await getOrg(id)).name;
    } catch (error) {
      return t('unknownOrg', { id });
    }
  }

  /** Run `task` over `items`, at most `limit` at a time (browsers queue beyond ~6). */
  async function eachLimited(items, limit, task) {
    let next = 0;
    async function worker() {
      while (next < items.length) {
        const index = next++;
        await task(items[index], index);
      }
    }
    const workers = [];
    for (let i = 0; i < Math.min(limit, items.length); i++) workers.push(worker());
    await Promise.all(workers);
  }

  // ---- the frame: header, navigation, breadcrumbs ----------------------------------

  async function loadFrame() {
    const me = await api('GET', '/api/me');
    view.me = me;
    $('con-user-name').textContent = me.name || DASH;
    const org = me.org ? me.org.name : '';
    $('con-user-detail').textContent = label('role', me.role) + (org ? ' · ' + org : '');
    for (const link of document.querySelectorAll('[data-needs]')) {
      link.hidden = !(me.capabilities || []).includes(link.dataset.needs);
    }
    for (const link of document.querySelectorAll('[data-nav-link]')) {
      const section = link.dataset.navLink;
      link.href = url(SECTION_PATHS[section], { org: config.org });
      const current = section === config.page || section === PARENT_SECTION[config.page];
      if (current && !link.classList.contains('con-brand')) link.setAttribute('aria-current', 'page');
    }
    $('con-logout').addEventListener('click', logout);
    return me;
  }

  async function logout() {
    try {
      await api('POST', '/api/logout', {});
    } catch (error) {
      /* signed out either way: the cookie is gone or was never valid */
    }
    global.location.replace(url(config.loginPath || '/console/login'));
  }

  function sectionLinks(orgId) {
    for (const link of document.querySelectorAll('[data-section-link]')) {
      link.href = url(SECTION_PATHS[link.dataset.sectionLink], { org: orgId });
    }
  }

  /** "示范县 › A镇 › A1村": each ancestor the caller may see links to the same section. */
  function breadcrumbs(org, section) {
    const nav = $('con-breadcrumbs');
    if (!nav) return;
    nav.textContent = '';
    const trail = (org.ancestors || []).concat([org]);
    trail.forEach((unit, index) => {
      if (index > 0) nav.appendChild(el('span', { className: 'con-crumb-sep', 'aria-hidden': 'true' }, '›'));
      const last = index === trail.length - 1;
      nav.appendChild(last
        ? el('span', { className: 'con-crumb', 'aria-current': 'location' }, unit.name)
        : el('a', { className: 'con-crumb', href: url(SECTION_PATHS[section], { org: unit.id }) }, unit.name));
    });
  }

  function setHeading(key, org) {
    const heading = $('con-heading');
    if (heading) heading.textContent = t(key, { org: org.name });
  }

  function clickableRow(row, href) {
    row.addEventListener('click', (event) => {
      if (event.target.closest('a, button')) return; // the link or button does it
      global.location.href = href;
    });
  }

  function fillTable(table, rows, emptyId) {
    const body = table.tBodies[0];
    body.textContent = '';
    for (const row of rows) body.appendChild(row);
    const empty = $(emptyId);
    if (empty) empty.hidden = rows.length > 0;
    table.hidden = rows.length === 0;
  }

  // ---- pages -----------------------------------------------------------------------

  async function loginPage() {
    const form = $('con-login-form');
    const errorBox = $('con-login-error');
    const button = $('con-login-submit');
    const buttonText = button.textContent;
    let next = config.next || '/console';
    if (config.keepLang && !/[?&]lang=/.test(next)) {
      next += (next.includes('?') ? '&' : '?') + 'lang=' + encodeURIComponent(config.keepLang);
    }
    // Already signed in (a QR code opened the console on a phone that was): go on.
    try {
      const reply = await global.fetch('/api/me', { credentials: 'same-origin', cache: 'no-store' });
      if (reply.ok) {
        global.location.replace(next);
        return;
      }
    } catch (error) {
      /* the form below will say so if the server cannot be reached */
    }
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const username = form.elements.username.value.trim();
      const password = form.elements.password.value;
      if (!username || !password) {
        showAlert(errorBox, t('usernameRequired'), 'error');
        return;
      }
      showAlert(errorBox, '');
      button.disabled = true;
      button.textContent = t('signingIn');
      try {
        await api('POST', '/api/login', { username, password });
        global.location.replace(next);
      } catch (error) {
        showAlert(errorBox, errorText(error), 'error');
        button.disabled = false;
        button.textContent = buttonText;
        form.elements.password.select();
      }
    });
  }

  async function treePage() {
    const org = await getOrg(config.org);
    breadcrumbs(org, 'tree');
    sectionLinks(org.id);
    $('con-node-name').textContent = org.name;
    $('con-node-kind').textContent = label('kind', org.kind);
    $('con-node-members').textContent = String(org.counts.members);
    $('con-node-terminals').textContent = String(org.counts.terminals);
    $('con-node-children').textContent = String(org.children.length);
    const cells = new Map();
    const rows = org.children.map((child) => {
      const href = url('/console', { org: child.id });
      const members = el('td', { className: 'num' }, '…');
      const terminals = el('td', { className: 'num' }, '…');
      cells.set(child.id, { members, terminals });
      const row = el('tr', {}, [
        el('td', {}, el('a', { href, className: 'con-row-link' }, child.name)),
        el('td', {}, el('span', { className: 'con-tag con-tag-' + child.kind }, label('kind', child.kind))),
        members,
        terminals,
      ]);
      clickableRow(row, href);
      return row;
    });
    fillTable($('con-children'), rows, 'con-children-empty');
    // The reply counts only the unit itself: each child's counts take one more request.
    await eachLimited(org.children, 6, async (child) => {
      const target = cells.get(child.id);
      try {
        const detail = await getOrg(child.id);
        target.members.textContent = String(detail.counts.members);
        target.terminals.textContent = String(detail.counts.terminals);
      } catch (error) {
        target.members.textContent = target.terminals.textContent = DASH;
      }
    });
  }

  /** Why a member is excused, said once: the secretary's own note when there is one (it
   * names the reason and more: "年老体弱，行动不便"), else the reason's name; the reason's
   * name is the cell's tooltip. ("年老体弱（年老体弱，行动不便）" said it twice.) */
  function exemption(member) {
    const reason = label('exemptReason', member.exempt_reason);
    const note = (member.exempt_note || '').trim();
    return el('span', { title: reason }, note || reason);
  }

  async function membersPage(me) {
    const org = await getOrg(config.org);
    breadcrumbs(org, 'members');
    setHeading('membersOf', org);
    // The roll of the unit being looked at; re-importable, so it doubles as the template.
    const exportHref = '/api/members/export.xlsx?org=' + encodeURIComponent(org.id);
    const size = config.pageSize || 20;
    let page = config.pageNumber || 1;
    let query = config.q || '';
    const input = $('member-q');
    input.value = query;

    function remember() {
      const address = url('/console/members', { org: config.org, q: query, page: page > 1 ? page : null });
      global.history.replaceState(null, '', address);
    }

    async function load() {
      showPageError(null);
      const path = '/api/members?' + new URLSearchParams({
        org: String(org.id), q: query, limit: String(size), offset: String((page - 1) * size),
      }).toString();
      const reply = await api('GET', path);
      const branchIds = [...new Set(reply.members.map((m) => m.branch_id))];
      const names = new Map();
      await eachLimited(branchIds, 6, async (id) => names.set(id, await orgName(id)));
      const rows = reply.members.map((member) => el('tr', {}, [
        el('td', { className: 'con-strong' }, member.name),
        el('td', {}, label('gender', member.gender)),
        el('td', {}, names.get(member.branch_id) || DASH),
        el('td', {}, label('memberStatus', member.status)),
        el('td', {}, member.posts && member.posts.length
          ? member.posts.map((p) => label('post', p)).join('、') : DASH),
        el('td', {}, orDash(member.joined_date)),
        el('td', {}, orDash(member.phone)),
        el('td', {}, member.exempt_reason ? exemption(member) : DASH),
        el('td', {}, el('a', { href: url('/console/members/' + member.id + '/faces') }, t('facePhotos'))),
      ]));
      fillTable($('con-members'), rows, 'con-members-empty');
      const pages = Math.max(1, Math.ceil(reply.total / size));
      $('con-page-info').textContent = t('pageOf', { page, pages, total: reply.total });
      $('con-prev').disabled = page <= 1;
      $('con-next').disabled = page >= pages;
    }

    async function reload() {
      remember();
      try {
        await load();
      } catch (error) {
        showPageError(error);
      }
    }

    $('con-search').addEventListener('submit', (event) => {
      event.preventDefault();
      query = input.value.trim();
      page = 1;
      reload();
    });
    $('con-prev').addEventListener('click', () => {
      page = Math.max(1, page - 1);
      reload();
    });
    $('con-next').addEventListener('click', () => {
      page += 1;
      reload();
    });
    memberImport(me, exportHref, reload);
    await load();
    const exportLink = $('con-export-members');
    exportLink.href = exportHref;
    exportLink.hidden = false;
  }

  function delay(ms) {
    return new Promise((resolve) => global.setTimeout(resolve, ms));
  }

  /** What to tell about a file the server refused as a whole (413, 415, 422, 429). */
  function importErrorText(error) {
    if (IMPORT_ERROR_TEXT[error.code]) return t(IMPORT_ERROR_TEXT[error.code]);
    if (error.status === 413) return t('importTooLarge');
    // 415 and 422 say what is wrong with the file (in Chinese, as the files are)
    if ((error.status === 415 || error.status === 422) && error.message && error.message !== error.code) {
      return t('importRefused', { reason: error.message });
    }
    return errorText(error);
  }

  /**
   * The member import panel: upload a CSV/XLSX file (POST /api/members/import), follow the
   * background job (GET /api/imports/{id}) every 500 ms with a progress bar, then tell what
   * was added and list the rows left out. `afterImport` reloads the list below.
   * The panel's data-state (idle, uploading, running, done, failed, refused) is for tests.
   */
  function memberImport(me, exportHref, afterImport) {
    const panel = $('con-import');
    if (!panel || !me || !IMPORT_ROLES.has(me.role)) return;
    const form = $('con-import-form');
    const input = $('import-file');
    const submit = $('con-import-submit');
    const submitText = submit.textContent;
    const progressBox = $('con-import-progress');
    const bar = $('import-progress');
    const progressText = $('con-import-progress-text');
    const result = $('con-import-result');
    const report = $('con-import-report');
    const table = $('con-import-errors');
    const more = $('con-import-errors-more');
    $('con-import-template').href = exportHref;
    panel.dataset.state = 'idle';
    panel.hidden = false;

    function setState(state) {
      panel.dataset.state = state;
      const busy = state === 'uploading' || state === 'running';
      submit.disabled = busy;
      input.disabled = busy;
      submit.textContent = busy ? t('importing') : submitText;
    }

    function showProgress(processed, total) {
      bar.max = Math.max(1, total);
      bar.value = Math.min(processed, total);
      progressText.textContent = t('importProgress', { processed, total });
      progressBox.hidden = false;
    }

    function showReport(job) {
      const counts = {
        file: job.file_name, created: job.created, duplicates: job.duplicates, rejected: job.rejected,
      };
      if (job.state === 'done') {
        const clean = job.duplicates === 0 && job.rejected === 0;
        showAlert(result, t('importDone', counts), clean ? 'ok' : 'warn');
      } else {
        const message = String(job.message || t('importStopped')).replace(/[。.]$/, '');
        showAlert(result, t('importFailed', Object.assign({ message }, counts)), 'error');
      }
      const rows = (job.errors || []).map((problem) => el('tr', { dataset: { row: String(problem.row) } }, [
        el('td', { className: 'num' }, String(problem.row)),
        el('td', {}, orDash(problem.column)),
        el('td', {}, orDash(problem.message)),
      ]));
      const body = table.tBodies[0];
      body.textContent = '';
      for (const row of rows) body.appendChild(row);
      report.hidden = rows.length === 0;
      more.hidden = !job.errors_truncated;
      more.textContent = job.errors_truncated ? t('importTruncated', { shown: rows.length }) : '';
    }

    async function follow(jobId) {
      let blips = 0;
      for (;;) {
        await delay(IMPORT_POLL_MS);
        let job;
        try {
          job = await api('GET', '/api/imports/' + encodeURIComponent(jobId));
          blips = 0;
        } catch (error) {
          // a dropped connection for a moment (a village's mobile link): keep asking a while
          if (error.code === 'network' && ++blips < 20) continue;
          throw error;
        }
        showProgress(job.processed, job.total);
        if (job.state !== 'running') return job;
      }
    }

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const file = input.files && input.files[0];
      showAlert(result, '');
      report.hidden = true;
      progressBox.hidden = true;
      if (!file) {
        showAlert(result, t('importChooseFile'), 'error');
        input.focus();
        return;
      }
      if (file.size > IMPORT_MAX_BYTES) {
        setState('refused');
        showAlert(result, t('importTooLarge'), 'error');
        return;
      }
      setState('uploading');
      bar.removeAttribute('value'); // indeterminate while the file travels
      progressText.textContent = t('importUploading', { name: file.name });
      progressBox.hidden = false;
      let started;
      try {
        const upload = new global.FormData();
        upload.append('file', file, file.name);
        started = await api('POST', '/api/members/import', upload);
      } catch (error) {
        progressBox.hidden = true;
        setState('refused');
        showAlert(result, importErrorText(error), 'error');
        return;
      }
      setState('running');
      showProgress(0, started.total_rows);
      let job;
      try {
        job = await follow(started.job_id);
      } catch (error) {
        setState('failed');
        showAlert(result, error.status === 404 ? t('importLost') : errorText(error), 'error');
        return;
      }
      showReport(job);
      setState(job.state === 'done' ? 'done' : 'failed');
      // the file may be fixed and chosen again; the same name must count as a new choice
      form.reset();
      if (job.created > 0) await afterImport();
    });
  }

  /**
   * The places a TV may stand, under the caller's own unit: the unit itself, and down
   * through townships to their villages and branches (a village's branches share its TV).
   */
  async function loadSites(me) {
    const root = await getOrg(me.org ? me.org.id : null);
    const sites = [];
    async function visit(unit, depth, group) {
      if (SITE_KINDS.has(unit.kind)) sites.push({ id: unit.id, name: unit.name, kind: unit.kind, depth, group });
      if (unit.kind !== 'county' && unit.kind !== 'town') return;
      const detail = unit.children ? unit : await getOrg(unit.id);
      for (const child of detail.children) {
        const childGroup = unit.kind === 'county' ? child.name : group;
        if (child.kind === 'town') await visit(child, depth + 1, childGroup);
        else if (SITE_KINDS.has(child.kind)) {
          sites.push({ id: child.id, name: child.name, kind: child.kind, depth: depth + 1, group: childGroup });
        }
      }
    }
    await visit(root, 0, null);
    return sites;
  }

  function fillSiteSelect(select, sites, chosen) {
    select.textContent = '';
    select.appendChild(el('option', { value: '' }, t('choose')));
    // One group per township (for a county admin); a township admin sees a flat list.
    let parent = select;
    let currentGroup = null;
    for (const site of sites) {
      if (site.group && site.group !== currentGroup) {
        currentGroup = site.group;
        parent = select.appendChild(el('optgroup', { label: site.group }));
      } else if (!site.group) {
        parent = select;
        currentGroup = null;
      }
      const option = el('option', { value: String(site.id) }, site.name);
      if (String(site.id) === String(chosen)) option.selected = true;
      parent.appendChild(option);
    }
  }

  /**
   * A place picker for a county's ~1,100 places: the select becomes a list of townships
   * (groups) and their villages, with a search box above it: typing part of a village's or
   * a township's name narrows the list, and a single match is chosen at once.
   */
  function searchableSites(select, sites, chosen) {
    fillSiteSelect(select, sites, chosen);
    select.size = Math.min(10, sites.length + 1);
    select.classList.add('con-site-list');
    const search = el('input', {
      type: 'search', className: 'con-input con-site-search', placeholder: t('findPlace'),
      autocomplete: 'off',
    });
    search.setAttribute('aria-label', t('findPlace'));
    select.parentNode.insertBefore(search, select);
    search.addEventListener('input', () => {
      const query = search.value.trim();
      const current = select.value;
      const found = query
        ? sites.filter((s) => s.name.includes(query) || (s.group || '').includes(query))
        : sites;
      fillSiteSelect(select, found, current);
      if (query && found.length === 1 && select.value !== String(found[0].id)) {
        select.value = String(found[0].id);
        select.dispatchEvent(new Event('change'));
      }
    });
    search.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowDown') { event.preventDefault(); select.focus(); }
    });
    return search;
  }

  function clearFieldErrors(form) {
    for (const box of form.querySelectorAll('[data-error-for]')) {
      box.hidden = true;
      box.textContent = '';
      const field = form.elements[box.dataset.errorFor];
      if (field) field.removeAttribute('aria-invalid');
    }
  }

  function fieldError(form, name, text) {
    const box = form.querySelector('[data-error-for="' + name + '"]');
    const field = form.elements[name];
    if (field) field.setAttribute('aria-invalid', 'true');
    if (box) {
      box.textContent = text;
      box.hidden = false;
    }
    return Boolean(box);
  }

  async function terminalsPage(me) {
    const org = await getOrg(config.org);
    breadcrumbs(org, 'terminals');
    setHeading('terminalsOf', org);
    const form = $('con-pair-form');
    const code = form.elements.code;
    const site = form.elements.org_id;
    const name = form.elements.name;
    const result = $('con-pair-result');
    const submit = $('con-pair-submit');
    const submitText = submit.textContent;
    const suffix = config.nameSuffix || '';
    let autoName = '';

    code.value = normaliseCode(config.code || '');
    code.addEventListener('input', () => {
      const cleaned = normaliseCode(code.value);
      if (cleaned !== code.value) code.value = cleaned;
    });

    function siteName() {
      const option = site.options[site.selectedIndex];
      return option && option.value ? option.textContent : '';
    }

    // The name follows the site until the admin types one of their own.
    site.addEventListener('change', () => {
      if (name.value === '' || name.value === autoName) {
        autoName = siteName() ? siteName() + suffix : '';
        name.value = autoName;
      }
    });

    const siteList = await loadSites(me);
    // Looking at a village (or branch) means pairing its TV; above that, the admin chooses.
    const leaf = org.kind === 'village' || org.kind === 'branch';
    const preselect = leaf && siteList.some((s) => s.id === org.id) ? org.id : '';
    searchableSites(site, siteList, preselect);
    if (preselect) site.dispatchEvent(new Event('change'));
    (code.value ? site : code).focus();

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      showAlert(result, '');
      code.value = normaliseCode(code.value);
      const problems = [];
      if (!CODE_PATTERN.test(code.value)) problems.push(['code', t('codeFormat')]);
      if (!site.value) problems.push(['org_id', t('chooseSite')]);
      if (!name.value.trim()) problems.push(['name', t('nameRequired')]);
      for (const [field, text] of problems) fieldError(form, field, text);
      if (problems.length > 0) {
        form.elements[problems[0][0]].focus();
        return;
      }
      submit.disabled = true;
      submit.textContent = t('pairing');
      const chosenSite = siteName();
      const body = {
        code: code.value,
        org_id: Number(site.value),
        name: name.value.trim(),
        kind: form.elements.kind.value,
      };
      try {
        let terminal;
        try {
          terminal = await api('POST', '/api/terminals/bind', body);
        } catch (error) {
          // the site already has a TV of that name: bind only when the admin means it
          if (error.code !== 'same_name_at_site'
            || !global.confirm(t('sameNameAtSite', { name: body.name, site: chosenSite }))) throw error;
          terminal = await api('POST', '/api/terminals/bind', Object.assign({ allow_same_name: true }, body));
        }
        showAlert(result, t('paired', { name: terminal.name, site: chosenSite }), 'ok');
        code.value = '';
        // The code is spent: a reload must not offer it again.
        global.history.replaceState(null, '', url('/console/terminals', { org: config.org }));
        await loadTerminals();
      } catch (error) {
        // Errors that name a field are told at the field; the banner only points there.
        const fields = Object.entries(error.fields || {});
        let shown = 0;
        for (const [field, message] of fields) {
          const named = field === 'code' || error.code === 'same_name_at_site';
          const text = named && ERROR_TEXT[error.code] ? t(ERROR_TEXT[error.code]) : t('fieldInvalid');
          if (fieldError(form, field, text)) shown += 1;
          else console.warn('console: field', field, message);
        }
        showAlert(result, shown > 0 ? t('errorValidation') : errorText(error), 'error');
      } finally {
        submit.disabled = false;
        submit.textContent = submitText;
      }
    });

    const listResult = $('con-list-result');

    async function revoke(terminal) {
      if (!global.confirm(t('revokeConfirm', { name: terminal.name }))) return;
      try {
        await api('POST', '/api/terminals/' + terminal.id + '/revoke', {});
        showAlert(listResult, t('revoked', { name: terminal.name }), 'ok');
        await loadTerminals();
      } catch (error) {
        showAlert(listResult, errorText(error), 'error');
      }
    }

    async function loadTerminals() {
      const reply = await api('GET', '/api/terminals?org=' + encodeURIComponent(org.id));
      const names = new Map(siteList.map((s) => [s.id, s.name]));
      const missing = [...new Set(reply.terminals.map((x) => x.org_id))].filter((id) => !names.has(id));
      await eachLimited(missing, 6, async (id) => names.set(id, await orgName(id)));
      const rows = reply.terminals.map((terminal) => {
        let status = 'offline';
        if (terminal.revoked_at) status = 'revokedState';
        else if (terminal.online) status = 'online';
        const action = terminal.revoked_at ? '' : el('button', {
          type: 'button', className: 'con-button con-button-danger con-button-small',
          dataset: { revoke: String(terminal.id) },
        }, t('revoke'));
        if (action) action.addEventListener('click', () => revoke(terminal));
        return el('tr', { dataset: { terminalId: String(terminal.id) }, className: terminal.revoked_at ? 'con-row-muted' : null }, [
          el('td', { className: 'con-strong' }, orDash(terminal.name)),
          el('td', {}, names.get(terminal.org_id) || DASH),
          el('td', {}, label('terminalKind', terminal.kind)),
          el('td', {}, el('span', { className: 'con-status con-status-' + status }, t(status))),
          el('td', {}, dateTime(terminal.paired_at)),
          el('td', {}, dateTime(terminal.last_seen_at)),
          el('td', { className: 'con-actions' }, action),
        ]);
      });
      fillTable($('con-terminals'), rows, 'con-terminals-empty');
    }

    await loadTerminals();
  }

  function normaliseCode(value) {
    return String(value || '').toUpperCase().replace(/[^0-9A-Z]/g, '').slice(0, 6);
  }

  async function meetingsPage() {
    const org = await getOrg(config.org);
    breadcrumbs(org, 'meetings');
    setHeading('meetingsOf', org);
    const filter = $('meeting-status');
    const params = new URLSearchParams(global.location.search);
    filter.value = params.get('status') || '';

    async function load() {
      const query = new URLSearchParams({ org: String(org.id), limit: '200' });
      if (filter.value) query.set('status', filter.value);
      const reply = await api('GET', '/api/meetings?' + query.toString());
      const organisers = new Map();
      const ids = [...new Set(reply.meetings.map((m) => m.organiser_id))];
      await eachLimited(ids, 6, async (id) => organisers.set(id, await orgName(id)));
      const rows = reply.meetings.map((meeting) => {
        const href = url('/console/meetings/' + meeting.id, { org: config.org });
        const row = el('tr', {}, [
          el('td', {}, label('meetingType', meeting.type)),
          el('td', {}, el('a', { href, className: 'con-row-link' }, meeting.topic)),
          el('td', {}, organisers.get(meeting.organiser_id) || DASH),
          el('td', {}, el('span', { className: 'con-status con-status-' + meeting.status },
            label('meetingStatus', meeting.status))),
          el('td', {}, dateTime(meeting.actual_start || meeting.scheduled_start)),
          el('td', {}, orDash(meeting.venue)),
          el('td', { className: 'num' }, orDash(meeting.expected_count)),
          el('td', { className: 'num' }, orDash(meeting.actual_count)),
          el('td', { className: 'num' }, orDash(meeting.absent_count)),
        ]);
        clickableRow(row, href);
        return row;
      });
      fillTable($('con-meetings'), rows, 'con-meetings-empty');
    }

    // All the unit's meetings (and those below it), whatever the status filter shows.
    const exportLink = $('con-export-meetings');
    exportLink.href = '/api/meetings/export.xlsx?org=' + encodeURIComponent(org.id);

    filter.addEventListener('change', async () => {
      global.history.replaceState(null, '', url('/console/meetings', { org: config.org, status: filter.value }));
      try {
        await load();
      } catch (error) {
        showPageError(error);
      }
    });
    await load();
    exportLink.hidden = false;
  }

  /** Member names for a meeting's attendance rows: one list call, then one call per straggler. */
  async function memberNames(meeting) {
    const names = new Map();
    const wanted = [...new Set((meeting.attendance || []).map((a) => a.member_id))];
    if (wanted.length === 0) return names;
    try {
      const query = new URLSearchParams({ org: String(meeting.organiser_id), limit: '500' });
      const reply = await api('GET', '/api/members?' + query.toString());
      for (const member of reply.members) names.set(member.id, member.name);
    } catch (error) {
      /* fall back to one request per member below */
    }
    const missing = wanted.filter((id) => !names.has(id));
    await eachLimited(missing, 6, async (id) => {
      try {
        names.set(id, (await api('GET', '/api/members/' + id)).name);
      } catch (error) {
        names.set(id, t('unknownMember', { id }));
      }
    });
    return names;
  }

  async function meetingPage() {
    $('con-print').addEventListener('click', () => global.print());
    const meeting = await api('GET', '/api/meetings/' + config.meetingId);
    const exportLink = $('con-export-meeting');
    exportLink.href = '/api/meetings/' + encodeURIComponent(meeting.id) + '/export.xlsx';
    exportLink.hidden = false;
    $('con-signins-link').href = url('/console/meetings/' + meeting.id + '/signins');
    const [organiser, names, sites] = await Promise.all([
      orgName(meeting.organiser_id),
      memberNames(meeting),
      Promise.all((meeting.site_ids || []).map(orgName)),
    ]);
    const typeName = label('meetingType', meeting.type);
    document.title = meeting.topic + ' · ' + document.title;
    $('rec-title').textContent = t('recordTitle', { type: typeName });
    $('rec-organiser').textContent = organiser;
    const set = (id, text) => {
      $(id).textContent = text === null || text === undefined || text === '' ? DASH : String(text);
    };
    set('rec-topic', meeting.topic);
    set('rec-type', typeName);
    set('rec-status', label('meetingStatus', meeting.status));
    set('rec-venue', meeting.venue);
    set('rec-scheduled', timeRange(meeting.scheduled_start, meeting.scheduled_end));
    set('rec-actual', timeRange(meeting.actual_start, meeting.actual_end));
    set('rec-host', meeting.host);
    set('rec-recorder', meeting.recorder);
    set('rec-expected', meeting.expected_count);
    set('rec-present', meeting.actual_count);
    set('rec-absent', meeting.absent_count);
    const present = meeting.attendance.filter((a) => a.status === 'present');
    const absent = meeting.attendance.filter((a) => a.status === 'absent');
    set('rec-attendees', present.map((a) => names.get(a.member_id) +
      (a.method === 'face' ? '（' + t('signedInFace') + '）' : '')).join('、'));
    set('rec-absentees', absent.map((a) => names.get(a.member_id) + '（' +
      (a.absence_reason || t('noReason')) + '）').join('、'));
    set('rec-guests', meeting.guests.map((g) => g.name + (g.note ? '（' + g.note + '）' : '')).join('、'));
    set('rec-sites', sites.join('、'));
    set('rec-content', meeting.content);
    set('rec-resolutions', meeting.resolutions);
    await meetingRecordingsLink(meeting);
  }

  /** On a meeting's record: a link to its venues' recordings, when there are any. */
  async function meetingRecordingsLink(meeting) {
    let reply;
    try {
      reply = await api('GET', '/api/recordings?' + new URLSearchParams({ meeting: String(meeting.id), limit: '1000' }));
    } catch (error) {
      return; // the record is what this page is for; the link is a shortcut
    }
    const count = reply.recordings.length;
    const group = document.querySelector('.con-record-toolbar .con-toolbar-group');
    if (count === 0 || !group) return;
    group.insertBefore(el('a', {
      id: 'con-meeting-recordings',
      className: 'con-button con-button-quiet',
      href: url('/console/recordings', { meeting: meeting.id }),
    }, t('meetingRecordings', { count })), group.firstChild);
  }

  // ---- recordings ------------------------------------------------------------------

  // Meeting topics by id, for the recordings' "Meeting" column (null: not visible or gone).
  const meetingTopics = new Map();

  function meetingTopic(id) {
    if (!meetingTopics.has(id)) {
      meetingTopics.set(id, api('GET', '/api/meetings/' + encodeURIComponent(id))
        .then((meeting) => meeting.topic)
        .catch(() => null));
    }
    return meetingTopics.get(id);
  }

  function recordingStatus(status) {
    return el('span', { className: 'con-status con-status-rec-' + status }, label('recordingStatus', status));
  }

  async function recordingsPage(me) {
    const heading = $('con-heading');
    if (me && me.org) heading.textContent = t('recordingsOf', { org: me.org.name });
    const query = new URLSearchParams({ limit: '200' });
    if (config.meeting) query.set('meeting', String(config.meeting));
    const [reply, recorder] = await Promise.all([
      api('GET', '/api/recordings?' + query.toString()),
      api('GET', '/api/recordings/status'),
    ]);
    if (recorder.enabled && !recorder.recording) {
      const alert = $('con-recording-alert');
      alert.textContent = t('recordingStopped', {
        time: dateTime(recorder.stopped_at),
        reason: label('recordingStopReason', recorder.stopped_reason),
      });
      alert.hidden = false;
    }
    const ids = new Set(reply.recordings.map((r) => r.meeting_id).filter((id) => id !== null && id !== undefined));
    if (config.meeting) ids.add(config.meeting);
    const topics = new Map();
    await eachLimited([...ids], 6, async (id) => topics.set(id, await meetingTopic(id)));
    if (config.meeting) {
      const topic = topics.get(config.meeting) || t('meetingNumber', { id: config.meeting });
      $('con-recordings-filter-text').textContent = t('recordingsOfMeeting', { topic });
      $('con-recordings-all').href = url('/console/recordings');
      $('con-recordings-filter').hidden = false;
    }
    // what it was a recording of, for people: the meeting (type, topic), the emergency
    // call (village, time) or the standing room's name, never a room id
    function occasion(recording) {
      const what = recording.occasion || {};
      if (what.kind === 'meeting') return [what.topic, label('meetingType', what.meeting_type)];
      if (what.kind === 'emergency') return [what.place + ' · ' + dateTime(what.at), t('emergencyCall')];
      const meeting = recording.meeting_id === null || recording.meeting_id === undefined
        ? (what.name || DASH) : topics.get(recording.meeting_id) || t('meetingNumber', { id: recording.meeting_id });
      return [meeting, t('standingRoom')];
    }
    const rows = reply.recordings.map((recording) => {
      const href = url('/console/recordings/' + recording.id);
      const [title, kind] = occasion(recording);
      const row = el('tr', { dataset: { recordingId: String(recording.id) } }, [
        el('td', {}, el('a', { href, className: 'con-row-link' }, orDash(recording.venue_name))),
        el('td', {}, title),
        el('td', { className: 'con-muted' }, kind),
        el('td', {}, dateTime(recording.started_at)),
        el('td', { className: 'num' }, mmss(recording.duration_s, true)),
        el('td', {}, recordingStatus(recording.status)),
        el('td', { className: 'num' }, fileSize(recording.bytes)),
      ]);
      clickableRow(row, href);
      return row;
    });
    fillTable($('con-recordings'), rows, 'con-recordings-empty');
  }

  async function recordingPage() {
    sectionLinks(null);
    const recording = await api('GET', '/api/recordings/' + config.recordingId);
    const venue = orDash(recording.venue_name);
    document.title = venue + ' · ' + document.title;
    $('rec-heading').textContent = t('recordingOf', { venue });
    const status = $('rec-status');
    status.className = 'con-status con-status-rec-' + recording.status;
    status.textContent = label('recordingStatus', recording.status);
    $('rec-room').textContent = orDash(recording.room_id);
    $('rec-started').textContent = dateTimeSeconds(recording.started_at);
    $('rec-ended').textContent = dateTimeSeconds(recording.ended_at);
    $('rec-duration').textContent = mmss(recording.duration_s, true);
    $('rec-size').textContent = fileSize(recording.bytes);
    if (recording.segments.length > 0) {
      const download = $('rec-download');
      download.href = '/api/recordings/' + recording.id + '/download';
      download.hidden = false;
    }
    recordingPlayer(recording);
    if (recording.meeting_id !== null && recording.meeting_id !== undefined) {
      const id = recording.meeting_id;
      const topic = await meetingTopic(id);
      const cell = $('rec-meeting');
      cell.textContent = '';
      cell.appendChild(topic
        ? el('a', { href: url('/console/meetings/' + id) }, topic)
        : document.createTextNode(t('meetingNumber', { id })));
    }
  }

  const EVENT_KINDS = new Set(['joined', 'left', 'signin', 'snapshot', 'recording_stopped', 'recording_resumed']);
  const SEEK_STEP_S = 10;

  /**
   * The player: the venue's segment files played one after another as one timeline.
   * Only one file is open at a time (each opening is audited, so the next part is not
   * fetched ahead): at a part's end the <video> switches `src` to the next one and plays
   * on; a seek anywhere loads the part whose range holds that time and sets
   * currentTime = t - offset_s. The bar below spans the whole recording, with a mark for
   * every event (who joined, left, signed in; snapshots).
   *
   * Exposes window.lighthousePlayer = {segment (index of the part loaded, -1 before),
   * time (seconds into the whole recording), duration, playing, ready} for tests.
   */
  function recordingPlayer(recording) {
    const video = $('player-video');
    const bar = $('player-bar');
    const toggle = $('player-toggle');
    const message = $('player-message');
    const segments = (recording.segments || []).map((segment, index) => ({
      index,
      url: segment.url,
      offset: Number(segment.offset_s) || 0,
      duration: Math.max(0, Number(segment.duration_s) || 0),
      start: Date.parse(segment.started_at),
      end: Date.parse(segment.ended_at),
    }));
    const last = segments[segments.length - 1];
    const total = last ? last.offset + last.duration : 0;
    // index: the part in the <video>; pending: a seek waiting for that part's metadata
    const state = { index: -1, pending: null, token: 0, drag: null };
    const player = {
      get segment() { return state.index; },
      get time() { return position(); },
      get duration() { return total; },
      get playing() { return wantsToPlay(); },
      ready: false,
    };
    global.lighthousePlayer = player;

    bar.setAttribute('aria-valuemax', String(Math.round(total)));
    if (segments.length === 0) {
      $('player-empty').hidden = false;
      video.hidden = true;
      drawEvents(recording.timeline || []);
      render();
      player.ready = true;
      return;
    }
    toggle.disabled = false;
    if (segments.length > 1) {
      // a faint line where one part ends and the next begins
      for (const segment of segments.slice(1)) {
        const line = el('span', { className: 'con-player-part-line' });
        line.style.left = percent(segment.offset);
        $('player-parts').appendChild(line);
      }
    }

    function percent(time) {
      return (total > 0 ? Math.min(100, Math.max(0, (time / total) * 100)) : 0) + '%';
    }

    function clamp(time) {
      return Math.min(Math.max(0, time), total);
    }

    function position() {
      if (state.drag && state.drag.time !== null) return state.drag.time;
      if (state.pending) return segments[state.pending.index].offset + state.pending.within;
      if (state.index < 0) return 0;
      const segment = segments[state.index];
      const within = Math.min(video.currentTime || 0, segment.duration);
      // the last part's end is the end, even when its file runs a frame longer or shorter
      if (video.ended && state.index === segments.length - 1) return total;
      return segment.offset + within;
    }

    function wantsToPlay() {
      if (state.pending) return state.pending.play;
      return !video.paused && !video.ended;
    }

    /** Where in the whole recording an event happened: within the part recording then. */
    function eventTime(event) {
      const at = Date.parse(event.at);
      if (!Number.isNaN(at)) {
        for (const segment of segments) {
          if (Number.isNaN(segment.start) || Number.isNaN(segment.end)) break;
          if (at < segment.start) return segment.offset; // between two parts: the next one
          if (at <= segment.end) return segment.offset + Math.min(segment.duration, (at - segment.start) / 1000);
        }
      }
      return clamp(Number(event.offset_s) || 0);
    }

    function play() {
      const started = video.play();
      if (started && started.catch) {
        started.catch((error) => {
          if (error && error.name !== 'AbortError') console.warn('player:', error.name);
          render();
        });
      }
    }

    /** Go to `time` seconds into the whole recording; play on if `play` (default: as now). */
    function seek(time, play) {
      const target = clamp(time);
      let index = segments.findIndex((segment) => target < segment.offset + segment.duration);
      if (index < 0) index = segments.length - 1;
      const within = Math.min(Math.max(0, target - segments[index].offset), segments[index].duration);
      showAlert(message, '');
      show(index, within, play === undefined ? wantsToPlay() : play);
    }

    function show(index, within, play) {
      const token = ++state.token;
      state.pending = { index, within, play };
      if (index !== state.index || video.error) {
        state.index = index;
        video.src = segments[index].url; // resets the element: its metadata comes anew
      }
      if (video.readyState >= 1) {
        settle();
      } else {
        video.addEventListener('loadedmetadata', () => {
          if (token === state.token) settle();
        }, { once: true });
      }
      render();
    }

    function settle() {
      const pending = state.pending;
      state.pending = null;
      if (!pending) return;
      if (Math.abs(video.currentTime - pending.within) > 0.01) video.currentTime = pending.within;
      if (pending.play) play();
      else if (!video.paused) video.pause();
      player.ready = true;
      render();
    }

    function togglePlay() {
      if (state.pending) {
        state.pending.play = !state.pending.play;
      } else if (video.error) {
        // this part cannot be played: go on with the next one, if there is one
        if (state.index < segments.length - 1) show(state.index + 1, 0, true);
      } else if (video.ended || (video.paused && position() >= total - 0.05)) {
        seek(0, true); // from the start again
      } else if (video.paused) {
        play();
      } else {
        video.pause();
      }
      render();
    }

    function render() {
      const time = clamp(position());
      $('player-played').style.width = percent(time);
      $('player-head').style.left = percent(time);
      const atEnd = time >= total - 0.05;
      $('player-time').textContent = mmss(time, atEnd) + ' / ' + mmss(total, true);
      bar.setAttribute('aria-valuenow', String(Math.round(time)));
      bar.setAttribute('aria-valuetext', mmss(time));
      const index = state.pending ? state.pending.index : state.index;
      const segment = segments[Math.max(0, index)];
      $('player-clock').textContent = !segment || Number.isNaN(segment.start)
        ? '' : t('clockAt', { time: clockTime(segment.start + (time - segment.offset) * 1000) });
      $('player-part').textContent = segments.length > 1
        ? t('part', { part: Math.max(0, index) + 1, parts: segments.length }) : '';
      toggle.textContent = wantsToPlay() ? t('pause') : t('play');
      toggle.setAttribute('aria-pressed', wantsToPlay() ? 'true' : 'false');
    }

    function drawEvents(events) {
      const marks = $('player-marks');
      const list = $('player-events');
      for (const event of events) {
        const time = eventTime(event);
        const kind = EVENT_KINDS.has(event.kind) ? event.kind : 'other';
        const reason = event.detail && event.detail.reason;
        const name = event.name || (reason ? label('recordingStopReason', reason) : t('someone'));
        const title = t('eventTitle', { time: mmss(time), kind: label('roomEvent', event.kind), name });
        if (segments.length > 0) {
          const mark = el('span', {
            className: 'con-player-mark con-player-mark-' + kind,
            title,
            dataset: { time: String(time), kind: event.kind },
          });
          mark.style.left = percent(time);
          marks.appendChild(mark);
        }
        const entry = el('button', {
          type: 'button',
          className: 'con-player-event',
          dataset: { time: String(time), kind: event.kind },
          disabled: segments.length === 0,
        }, [
          el('span', { className: 'con-player-event-time' }, mmss(time)),
          el('span', { className: 'con-player-event-kind con-player-event-' + kind }, label('roomEvent', event.kind)),
          el('span', { className: 'con-player-event-name', title: name }, name),
          el('span', { className: 'con-player-event-clock' }, clockTime(Date.parse(event.at))),
        ]);
        entry.addEventListener('click', (click) => {
          seek(time);
          // clicked with the mouse: the keys (space, arrows) go to the player again
          if (click.detail > 0) bar.focus({ preventScroll: true });
        });
        list.appendChild(el('li', {}, entry));
      }
      $('player-events-empty').hidden = events.length > 0;
      list.hidden = events.length === 0;
    }

    // ---- the bar: click or drag to a time; a mark goes to its event -------------------

    function barTime(clientX) {
      const box = bar.getBoundingClientRect();
      return box.width > 0 ? clamp(((clientX - box.left) / box.width) * total) : 0;
    }

    bar.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      const mark = event.target.closest('.con-player-mark');
      state.drag = { x: event.clientX, mark, time: mark ? null : barTime(event.clientX) };
      bar.setPointerCapture(event.pointerId);
      bar.focus({ preventScroll: true });
      render();
    });
    bar.addEventListener('pointermove', (event) => {
      if (!state.drag) return;
      if (state.drag.mark && Math.abs(event.clientX - state.drag.x) < 4) return;
      state.drag.mark = null;
      state.drag.time = barTime(event.clientX);
      render();
    });
    bar.addEventListener('pointerup', (event) => {
      const drag = state.drag;
      if (!drag) return;
      state.drag = null;
      seek(drag.mark ? Number(drag.mark.dataset.time) : barTime(event.clientX));
    });
    bar.addEventListener('pointercancel', () => {
      state.drag = null;
      render();
    });

    // ---- keys: space plays or pauses, ← → step 10 s, Home/End on the bar -------------

    document.addEventListener('keydown', (event) => {
      if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
      const target = event.target instanceof Element ? event.target : document.body;
      if (target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]')) return;
      if (event.key === ' ' || event.key === 'Spacebar') {
        // a focused control does its own thing; so does a focused <video> (its controls
        // toggle on the key whatever a page says: handling it too would toggle twice)
        if (target.closest('a, button') || target === video) return;
        event.preventDefault();
        togglePlay();
      } else if (event.key === 'ArrowLeft' || event.key === 'ArrowRight') {
        event.preventDefault();
        seek(position() + (event.key === 'ArrowLeft' ? -SEEK_STEP_S : SEEK_STEP_S));
      } else if ((event.key === 'Home' || event.key === 'End') && target === bar) {
        event.preventDefault();
        seek(event.key === 'Home' ? 0 : total);
      }
    });

    toggle.addEventListener('click', togglePlay);

    // ---- the <video>: one part after another -----------------------------------------

    video.addEventListener('ended', () => {
      if (state.pending) return;
      if (state.index < segments.length - 1) show(state.index + 1, 0, true);
      else render();
    });
    video.addEventListener('error', () => {
      const failed = state.index;
      const pending = state.pending;
      state.pending = null;
      state.token += 1;
      // mostly 410, the file is gone; a <video> is not told the status, so it says "may"
      showAlert(message, t('partFailed', { part: failed + 1 }), 'warn');
      player.ready = true;
      if (pending && pending.play && failed < segments.length - 1) show(failed + 1, 0, true);
      else render();
    });
    for (const name of ['timeupdate', 'play', 'pause', 'seeked', 'durationchange']) {
      video.addEventListener(name, render);
    }

    drawEvents(recording.timeline || []);
    show(0, 0, false); // opens the first part (an audited viewing), paused on its first frame
  }

  // ---- the audit log ------------------------------------------------------------------------

  const AUDIT_PAGE = 100;

  async function auditPage(me) {
    const form = $('audit-form');
    const unit = $('audit-org');
    const org = await api('GET', '/api/org');
    for (const [index, child] of [org].concat(org.children || []).entries()) {
      unit.appendChild(el('option', { value: String(child.id) },
        index === 0 ? t('allOf', { org: child.name }) : child.name));
    }
    const actions = $('audit-action');
    for (const [value, text] of Object.entries(strings.actions || {})) {
      actions.appendChild(el('option', { value }, text));
    }
    let lastId = null;

    function filters() {
      const query = new URLSearchParams();
      for (const name of ['actor', 'action', 'org', 'from', 'to']) {
        const value = $('audit-' + name).value.trim();
        if (value) query.set(name, value);
      }
      return query;
    }

    function row(entry) {
      const detail = Object.entries(entry.detail || {}).map(([k, v]) => k + '=' +
        (typeof v === 'object' ? JSON.stringify(v) : v)).join(', ');
      return el('tr', { dataset: { entryId: String(entry.id) } }, [
        el('td', {}, dateTimeSeconds(entry.at)),
        el('td', {}, entry.actor + (entry.actor_role ? ' (' + label('role', entry.actor_role) + ')' : '')),
        el('td', {}, (strings.actions || {})[entry.action] || entry.action),
        el('td', {}, orDash([entry.target_type, entry.target_id].filter(Boolean).join(' '))),
        el('td', {}, orDash(entry.org_name)),
        el('td', { className: 'con-muted' }, orDash(entry.remote_addr)),
        el('td', { className: 'con-audit-detail' }, orDash(detail)),
      ]);
    }

    async function search(more) {
      const query = filters();
      $('audit-export').href = url('/api/audit/export.xlsx') + (query.toString() ? '?' + query : '');
      query.set('limit', String(AUDIT_PAGE));
      if (more && lastId !== null) query.set('before', String(lastId));
      const reply = await api('GET', '/api/audit?' + query.toString());
      const rows = reply.entries.map(row);
      const body = $('audit-entries').querySelector('tbody');
      if (more) body.append(...rows);
      else fillTable($('audit-entries'), rows, 'audit-empty');
      if (reply.entries.length) lastId = reply.entries[reply.entries.length - 1].id;
      $('audit-more').hidden = reply.entries.length < AUDIT_PAGE;
      view.auditShown = body.children.length;
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      search(false).catch((error) => showPageError(error));
    });
    $('audit-more').addEventListener('click', () => search(true).catch((error) => showPageError(error)));
    await search(false);
  }

  const PAGES = {
    audit: auditPage,
    tree: treePage,
    members: membersPage,
    terminals: terminalsPage,
    meetings: meetingsPage,
    meeting: meetingPage,
    recordings: recordingsPage,
    recording: recordingPage,
  };

  // Other scripts of a page (supervise.js) add their pages here before the DOM is ready,
  // and build them with the console's own helpers.
  view.registerPage = (name, render) => { PAGES[name] = render; };
  view.kit = {
    api, ApiError, config, t, label, orDash, dateTime, dateTimeSeconds, mmss, el, $, url,
    fillTable, clickableRow, showAlert, showPageError, errorText, loadSites, searchableSites,
  };

  async function start() {
    try {
      if (config.page === 'login') {
        await loginPage();
      } else {
        const me = await loadFrame();
        await PAGES[config.page](me);
      }
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error);
      // A 401 is already on its way to the login page.
      if (!(error instanceof ApiError && error.status === 401)) showPageError(error);
    } finally {
      view.ready = true;
    }
  }

  // deferred scripts after this one register their pages first
  if (document.readyState === 'complete') start();
  else document.addEventListener('DOMContentLoaded', start);
})(window);
