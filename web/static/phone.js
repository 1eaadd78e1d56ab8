/*
 * The secretary's phone (/console/phone): start a meeting, see which TVs joined, mute all
 * or call the roll, end it, and complete the meeting record. Everything goes through the
 * JSON API with the session cookie; the server checks each call against the org tree.
 * The emergency call publishes the phone's (rear) camera into an emergency room that the
 * county command sees at once (/console/command), and shows when they acknowledge it.
 * Exposes window.lighthousePhone = {ready, meeting, emergency} for tests; `emergency` is
 * {id, state: connecting | sending | acknowledged | ended | no_camera} during a call.
 * Duty alerts of the caller's villages (late, absent) show above every screen as they are
 * raised (an EventSource on /api/duty/events), each with a box to explain it; `dutyAlerts`
 * holds the ids shown, `dutyLive` whether the stream is open.
 */
(function (global) {
  'use strict';

  const document = global.document;
  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($('ph-config').textContent);
  const strings = JSON.parse($('ph-strings').textContent);
  const t = (key, values) => String(strings[key] || key).replace(/\{(\w+)\}/g,
    (whole, name) => (values && name in values ? String(values[name]) : whole));
  // mainVenue: null, or connecting | live | no_camera while this phone is the main venue
  const state = {
    ready: false, meeting: null, live: null, emergency: null, mainVenue: null, dutyAlerts: [], dutyLive: false,
  };
  global.lighthousePhone = state;
  let pollTimer = null;

  class ApiError extends Error {
    constructor(status, code) {
      super(code);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const options = { method, credentials: 'same-origin', cache: 'no-store', headers: {} };
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await global.fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (response.status === 401) {
      global.location.replace(config.loginPath + '?next=' + encodeURIComponent(global.location.pathname));
    }
    if (!response.ok) throw new ApiError(response.status, (data && data.error && data.error.code) || 'http_' + response.status);
    return data;
  }

  function showError(element, error) {
    element.textContent = t('error', { code: error.code || String(error) });
    element.hidden = false;
  }

  function show(sectionId) {
    for (const id of ['ph-home', 'ph-create', 'ph-live', 'ph-record', 'ph-emergency']) {
      $(id).hidden = id !== sectionId;
    }
    clearTimeout(pollTimer);
    if (sectionId !== 'ph-emergency') hangUp();
    global.scrollTo(0, 0);
  }

  function button(text, className, onClick) {
    const element = document.createElement('button');
    element.type = 'button';
    element.className = 'ph-button ' + (className || '');
    element.textContent = text;
    element.addEventListener('click', onClick);
    return element;
  }

  // ---- home: recent meetings ------------------------------------------------------------

  async function loadHome() {
    show('ph-home');
    const list = $('ph-meetings');
    const { meetings } = await api('GET', '/api/meetings?limit=20');
    list.replaceChildren();
    for (const meeting of meetings) {
      const item = document.createElement('li');
      item.className = 'ph-item';
      item.dataset.meetingId = meeting.id;
      const title = document.createElement('span');
      title.className = 'ph-item-title';
      title.textContent = meeting.topic;
      const status = document.createElement('span');
      status.className = 'ph-status ph-status-' + meeting.status;
      status.textContent = t(meeting.status);
      item.append(title, status);
      if (meeting.status === 'live' || meeting.status === 'scheduled') {
        item.append(button(t('open'), '', () => openLive(meeting.id, meeting.status === 'scheduled' ? meeting.main_venue : null)));
      }
      item.append(button(t('record'), '', () => openRecord(meeting.id)));
      list.appendChild(item);
    }
  }

  // ---- create and start -----------------------------------------------------------------

  let me = null;

  async function openCreate() {
    show('ph-create');
    $('ph-create-error').hidden = true;
    const organiser = $('ph-organiser');
    organiser.replaceChildren(); // the form is filled afresh for each meeting
    const own = await api('GET', '/api/org');
    // a village's meetings are its branches'; a town or the county organises its own
    const organisers = own.kind === 'village' ? own.children.filter((c) => c.kind === 'branch') : [own];
    for (const org of organisers.length ? organisers : [own]) {
      organiser.appendChild(new Option(org.name, org.id));
    }
    // a village's branch meets in its own room; a town or the county runs it from here
    $('ph-main-venue').value = own.kind === 'village' ? 'none' : 'phone';
    const sites = own.kind === 'village' ? [] : own.children;
    $('ph-sites').hidden = sites.length === 0;
    const siteList = $('ph-site-list');
    siteList.replaceChildren();
    for (const site of sites) {
      const label = document.createElement('label');
      label.className = 'ph-check';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = site.id;
      box.checked = true;
      box.dataset.site = '';
      label.append(box, ' ' + site.name);
      siteList.appendChild(label);
    }
  }

  function chosenSites() {
    return Array.from(document.querySelectorAll('[data-site]')).filter((b) => b.checked).map((b) => Number(b.value));
  }

  async function createAndStart(event) {
    event.preventDefault();
    const error = $('ph-create-error');
    error.hidden = true;
    const topic = $('ph-topic').value.trim();
    if (!topic) {
      error.textContent = t('needTopic');
      error.hidden = false;
      return;
    }
    const body = { type: $('ph-type').value, topic, organiser_id: Number($('ph-organiser').value) };
    if (!$('ph-sites').hidden) {
      body.site_ids = chosenSites();
      if (body.site_ids.length === 0) {
        error.textContent = t('needSites');
        error.hidden = false;
        return;
      }
    }
    $('ph-start').disabled = true;
    try {
      const meeting = await api('POST', '/api/meetings', body);
      await openLive(meeting.id, $('ph-main-venue').value);
    } catch (failure) {
      showError(error, failure);
    } finally {
      $('ph-start').disabled = false;
    }
  }

  // ---- a live meeting -------------------------------------------------------------------

  /** Open a meeting's live view; with `mainVenue` (phone | link | none), start it. */
  async function openLive(meetingId, mainVenue) {
    show('ph-live');
    state.meeting = meetingId;
    const live = mainVenue
      ? await api('POST', '/api/meetings/' + meetingId + '/start', { main_venue: mainVenue })
      : await api('GET', '/api/meetings/' + meetingId + '/live');
    renderLive(live);
    if (mainVenue === 'phone' && live.main_url) startMainVenue(live.main_url);
  }

  // ---- this phone as the main venue ---------------------------------------------------------

  const MAIN_MEDIA = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { facingMode: { ideal: 'user' }, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25 } },
  };
  let mainClient = null;

  /** Publish this phone's camera and microphone as the meeting's main venue (the page at
   * the main-venue link would do the same); it hears whichever venue has the floor. */
  function startMainVenue(mainUrl) {
    stopMainVenue();
    const token = new URLSearchParams(new URL(mainUrl, global.location.href).hash.slice(1)).get('token');
    const Client = global.LighthouseClient;
    const client = new Client({
      token,
      // minted just now for this signed-in person's own action: it moves here
      takeOver: true,
      mediaConstraints: MAIN_MEDIA,
      policy: (publications) => publications.filter((p) => p.source === 'floor').map((p) => p.publication_id),
      kinds: ['audio'],
    });
    mainClient = client;
    state.mainVenue = 'connecting';
    $('ph-main-self').hidden = false;
    $('ph-main-state').textContent = t('mainConnecting');
    client.on('localstream', ({ stream }) => { $('ph-main-preview').srcObject = stream; });
    client.on('mediaerror', () => {
      state.mainVenue = 'no_camera';
      $('ph-main-state').textContent = t('mainNoCamera');
    });
    client.on('published', () => {
      state.mainVenue = 'live';
      $('ph-main-state').textContent = t('mainLive');
    });
    client.on('subscriptionadded', ({ subscription }) => {
      subscription.videoElement.hidden = true; // the floor's sound; its picture is on the TVs
      $('ph-main-self').appendChild(subscription.videoElement);
    });
    client.start();
  }

  function stopMainVenue() {
    if (mainClient) mainClient.leave();
    mainClient = null;
    state.mainVenue = null;
    $('ph-main-self').hidden = true;
    $('ph-main-preview').srcObject = null;
  }

  function renderLive(live) {
    state.live = live;
    $('ph-live-title').textContent = live.meeting.topic;
    const venues = live.venues || [];
    const joined = venues.filter((v) => v.state === 'in_meeting').length;
    const offline = venues.filter((v) => v.state === 'offline').length;
    $('ph-live-summary').textContent = t('summary', { joined, total: venues.length, offline });
    const list = $('ph-venues');
    list.replaceChildren();
    const floor = live.control && live.control.floor ? live.control.floor.peer_id : null;
    for (const venue of venues) {
      const item = document.createElement('li');
      item.className = 'ph-item ph-venue ph-venue-' + venue.state;
      item.dataset.terminalId = venue.terminal_id;
      item.dataset.state = venue.state;
      const name = document.createElement('span');
      name.className = 'ph-item-title';
      // a TV with its site: two TVs of one village are told apart by name and place
      name.textContent = venue.name && venue.name !== venue.org_name
        ? venue.name + ' · ' + venue.org_name : venue.org_name || venue.name;
      const status = document.createElement('span');
      status.className = 'ph-status';
      status.textContent = t({ in_meeting: 'inMeeting', online: 'online', offline: 'offline' }[venue.state]);
      item.append(name, status);
      if (venue.peer_id) {
        const call = button(t('rollCall'), venue.peer_id === floor ? 'is-on' : '', () => control('roll_call', venue.peer_id));
        call.dataset.rollCall = venue.peer_id;
        item.append(call);
      }
      list.appendChild(item);
    }
    const link = $('ph-main-link');
    link.hidden = !live.main_url;
    if (live.main_url) link.href = live.main_url;
    for (const element of document.querySelectorAll('#ph-live [data-control], #ph-end')) element.hidden = !live.live;
    if (live.live) pollTimer = setTimeout(refreshLive, 3000);
  }

  async function refreshLive() {
    if ($('ph-live').hidden || state.meeting === null) return;
    try {
      renderLive(await api('GET', '/api/meetings/' + state.meeting + '/live'));
    } catch (error) {
      pollTimer = setTimeout(refreshLive, 5000);
    }
  }

  async function control(action, peerId) {
    try {
      const body = { action };
      if (peerId) body.peer_id = peerId;
      await api('POST', '/api/meetings/' + state.meeting + '/control', body);
      clearTimeout(pollTimer);
      await refreshLive();
    } catch (error) {
      showError($('ph-error'), error);
    }
  }

  async function endMeeting() {
    if (!global.confirm(t('confirmEnd'))) return;
    try {
      await api('POST', '/api/meetings/' + state.meeting + '/end');
      stopMainVenue();
      await openRecord(state.meeting);
    } catch (error) {
      showError($('ph-error'), error);
    }
  }

  // ---- the meeting record -----------------------------------------------------------------

  async function openRecord(meetingId) {
    show('ph-record');
    state.meeting = meetingId;
    $('ph-record-result').hidden = true;
    const meeting = await api('GET', '/api/meetings/' + meetingId);
    $('ph-record-title').textContent = meeting.topic;
    $('ph-host').value = meeting.host || '';
    $('ph-recorder').value = meeting.recorder || '';
    $('ph-content').value = meeting.content || '';
    $('ph-export').href = '/api/meetings/' + meetingId + '/export.xlsx';
    // 应到: the invited venues' members who are not excused, with their sign-ins (face or
    // by hand) and what a saved record says; grouped by venue, searchable by name
    const sheet = await api('GET', '/api/meetings/' + meetingId + '/signins');
    const list = $('ph-attendance');
    list.replaceChildren();
    const venues = new Map();
    for (const member of sheet.members) {
      if (!venues.has(member.venue)) venues.set(member.venue, []);
      venues.get(member.venue).push(member);
    }
    for (const [venue, members] of venues) {
      const group = document.createElement('li');
      group.className = 'ph-venue-group';
      group.dataset.venue = venue;
      const heading = document.createElement('h3');
      heading.className = 'ph-venue-name';
      heading.textContent = venue + ' (' + members.length + ')';
      const rows = document.createElement('ul');
      rows.className = 'ph-list';
      for (const member of members) rows.appendChild(attendanceRow(member));
      group.append(heading, rows);
      list.appendChild(group);
    }
    $('ph-attendance-search').value = '';
    $('ph-attendance-count').textContent = t('expected', { count: sheet.expected });
  }

  function attendanceRow(member) {
    const saved = member.attendance;
    const signedIn = Boolean(member.signin && member.signin.review !== 'rejected');
    const item = document.createElement('li');
    item.className = 'ph-item';
    item.dataset.memberId = member.member_id;
    item.dataset.name = member.name;
    const label = document.createElement('label');
    label.className = 'ph-check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = saved ? saved.status === 'present' : signedIn;
    label.append(box, ' ' + member.name);
    const where = document.createElement('small');
    where.className = 'ph-member-branch';
    where.textContent = ' ' + (member.group || member.branch);
    label.append(where);
    if (signedIn) {
      const how = document.createElement('small');
      how.textContent = ' (' + t('signedIn') + ')';
      label.append(how);
    }
    const reason = document.createElement('input');
    reason.className = 'ph-input ph-reason';
    reason.placeholder = t('reason');
    reason.maxLength = 200;
    reason.value = (saved && saved.absence_reason) || '';
    reason.hidden = box.checked;
    box.addEventListener('change', () => {
      reason.hidden = box.checked;
    });
    item.append(label, reason);
    return item;
  }

  function filterAttendance() {
    const query = $('ph-attendance-search').value.trim();
    for (const group of document.querySelectorAll('#ph-attendance .ph-venue-group')) {
      let shown = 0;
      for (const item of group.querySelectorAll('[data-member-id]')) {
        item.hidden = Boolean(query) && !item.dataset.name.includes(query);
        if (!item.hidden) shown += 1;
      }
      group.hidden = shown === 0;
    }
  }

  async function saveRecord(event) {
    event.preventDefault();
    const attendance = Array.from(document.querySelectorAll('#ph-attendance [data-member-id]')).map((item) => {
      const present = item.querySelector('input[type="checkbox"]').checked;
      const reason = item.querySelector('.ph-reason').value.trim();
      return {
        member_id: Number(item.dataset.memberId),
        status: present ? 'present' : 'absent',
        absence_reason: present || !reason ? null : reason,
      };
    });
    const result = $('ph-record-result');
    try {
      await api('PATCH', '/api/meetings/' + state.meeting, {
        host: $('ph-host').value.trim() || null,
        recorder: $('ph-recorder').value.trim() || null,
        content: $('ph-content').value.trim() || null,
        attendance,
      });
      result.textContent = t('saved');
      result.hidden = false;
    } catch (error) {
      showError(result, error);
    }
  }

  // ---- emergency call ---------------------------------------------------------------------

  const SOS_POLL_MS = 2000;
  // the scene, not the caller's face: the rear camera, at a size a village uplink carries
  const SOS_MEDIA = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { facingMode: { ideal: 'environment' }, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20 } },
  };
  let sosClient = null;

  function sosState(name, values) {
    state.emergency.state = name;
    $('ph-sos-state').textContent = t({
      connecting: 'sosConnecting', sending: 'sosSending', acknowledged: 'sosAcknowledged',
      ended: 'sosEnded', no_camera: 'sosNoCamera',
    }[name], values);
  }

  function hangUp() {
    if (sosClient) sosClient.leave();
    sosClient = null;
    $('ph-sos-preview').srcObject = null;
    $('ph-sos-remote').replaceChildren();
  }

  async function raiseEmergency() {
    if (!global.confirm(t('confirmSos'))) return;
    const reply = await api('POST', '/api/emergencies', {});
    show('ph-emergency');
    const emergency = reply.emergency;
    state.emergency = { id: emergency.id, state: 'connecting' };
    $('ph-sos-title').textContent = t('sosTitle', { place: emergency.org.name });
    sosState('connecting');
    const Client = global.LighthouseClient;
    const client = new Client({
      token: reply.token,
      // minted just now for this signed-in person's own action: it moves here
      takeOver: true,
      mediaConstraints: SOS_MEDIA,
      policy: Client.policies.all, // the command may talk back
    });
    sosClient = client;
    client.on('localstream', ({ stream }) => { $('ph-sos-preview').srcObject = stream; });
    client.on('mediaerror', () => sosState('no_camera'));
    client.on('published', () => {
      if (state.emergency.state === 'connecting') sosState('sending');
    });
    client.on('subscriptionadded', ({ subscription }) => {
      subscription.videoElement.className = 'ph-sos-remote-media';
      $('ph-sos-remote').appendChild(subscription.videoElement);
    });
    client.start();
    followEmergency(emergency.id);
  }

  async function followEmergency(id) {
    if (!state.emergency || state.emergency.id !== id || !sosClient) return;
    try {
      const emergency = await api('GET', '/api/emergencies/' + id);
      if (emergency.status === 'ended') {
        hangUp();
        sosState('ended');
        return;
      }
      if (emergency.acknowledged_by && state.emergency.state !== 'no_camera') {
        sosState('acknowledged', { name: emergency.acknowledged_by });
      }
    } catch (error) {
      /* the network dropped: the next poll tries again */
    }
    pollTimer = setTimeout(() => followEmergency(id), SOS_POLL_MS);
  }

  async function endEmergency() {
    if (!state.emergency || !global.confirm(t('confirmEndSos'))) return;
    try {
      await api('POST', '/api/emergencies/' + state.emergency.id + '/end');
    } catch (error) {
      if (error.code !== 'emergency_over') throw error;
    }
    hangUp();
    sosState('ended');
    await loadHome();
  }

  // ---- wiring -----------------------------------------------------------------------------

  $('ph-new').addEventListener('click', () => openCreate().catch((e) => showError($('ph-error'), e)));
  $('ph-create').addEventListener('submit', createAndStart);
  $('ph-record').addEventListener('submit', saveRecord);
  $('ph-attendance-search').addEventListener('input', filterAttendance);
  $('ph-end').addEventListener('click', endMeeting);
  $('ph-sos').addEventListener('click', () => raiseEmergency().catch((e) => showError($('ph-error'), e)));
  $('ph-sos-end').addEventListener('click', () => endEmergency().catch((e) => showError($('ph-error'), e)));
  global.addEventListener('pagehide', hangUp);
  $('ph-sites-all').addEventListener('change', (event) => {
    for (const box of document.querySelectorAll('[data-site]')) box.checked = event.target.checked;
  });
  for (const element of document.querySelectorAll('[data-control]')) {
    element.addEventListener('click', () => control(element.dataset.control));
  }
  for (const element of document.querySelectorAll('[data-back]')) {
    element.addEventListener('click', () => loadHome().catch((e) => showError($('ph-error'), e)));
  }

  // ---- duty alerts ------------------------------------------------------------------------

  function dutyItem(alert) {
    const item = document.createElement('li');
    item.className = 'ph-item';
    item.dataset.alertId = alert.id;
    item.dataset.memberId = alert.member_id;
    const title = document.createElement('span');
    title.className = 'ph-item-title';
    title.textContent = t('dutyAlert', {
      name: alert.name, village: alert.village || '', date: alert.date,
      kind: t(alert.kind === 'absent' ? 'dutyAbsent' : 'dutyLate'),
    });
    item.append(title);
    if (alert.explanation) {
      const said = document.createElement('span');
      said.className = 'ph-duty-explanation ph-hint';
      said.textContent = t('dutyExplained', { text: alert.explanation });
      item.append(said);
    } else if (me.capabilities.includes('duty:explain')) {
      item.append(button(t('dutyExplain'), '', () => explainDuty(item, alert)));
    }
    return item;
  }

  function explainDuty(item, alert) {
    if (item.querySelector('textarea')) return;
    const text = document.createElement('textarea');
    text.className = 'ph-input ph-duty-explanation';
    text.maxLength = 500;
    text.rows = 2;
    text.placeholder = t('dutyExplanation');
    text.setAttribute('aria-label', t('dutyExplanation'));
    const message = document.createElement('p');
    message.className = 'ph-alert ph-duty-explanation';
    message.hidden = true;
    const send = button(t('dutySend'), 'ph-button-primary', async () => {
      if (!text.value.trim()) return text.focus();
      try {
        await api('POST', '/api/duty/alerts/' + alert.id + '/explanation', { text: text.value.trim() });
        await loadDutyAlerts();
      } catch (error) {
        showError(message, error);
      }
    });
    item.append(text, send, message);
    text.focus();
  }

  async function loadDutyAlerts() {
    const [open, explained] = await Promise.all([
      api('GET', '/api/duty/alerts?status=open'), api('GET', '/api/duty/alerts?status=explained'),
    ]);
    // today's and yesterday's: older ones are the console's business
    const since = new Date(Date.now() - 2 * 86400000).toISOString().slice(0, 10);
    const alerts = open.alerts.concat(explained.alerts)
      .filter((alert) => String(alert.date) >= since)
      .sort((a, b) => (a.raised_at < b.raised_at ? 1 : -1));
    $('ph-duty-alerts').replaceChildren(...alerts.map(dutyItem));
    $('ph-duty').hidden = alerts.length === 0;
    state.dutyAlerts = alerts.map((alert) => alert.id);
  }

  function listenForDuty() {
    const events = new global.EventSource('/api/duty/events');
    events.addEventListener('ready', () => {
      state.dutyLive = true;
      loadDutyAlerts().catch((e) => showError($('ph-error'), e));
    });
    const raised = () => {
      if (global.navigator.vibrate) global.navigator.vibrate([300, 150, 300]);
      loadDutyAlerts().catch((e) => showError($('ph-error'), e));
    };
    events.addEventListener('duty.late', raised);
    events.addEventListener('duty.absent', raised);
    events.addEventListener('error', () => { state.dutyLive = false; }); // it reconnects
  }

  (async function init() {
    try {
      me = await api('GET', '/api/me');
      $('ph-user').textContent = me.name || '';
      // the stream's `ready` loads the alerts; nothing raised meanwhile is missed
      if ((me.capabilities || []).includes('duty:read')) listenForDuty();
      await loadHome();
    } catch (error) {
      showError($('ph-error'), error);
    }
    state.ready = true;
  })();
})(window);
