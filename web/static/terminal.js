/*
 * Terminal mode of the TV page (/tv without ?token=): a paired TV keeps its long-lived
 * terminal token in localStorage and trades it for a meeting token
 * (POST /api/meeting-token) whenever it needs one. No meeting: an idle screen that asks
 * again every 15 s. Token revoked (401): forget it and show the pairing screen.
 *
 * Exposes window.lighthouseTerminal = {state, room, lastStatus} for tests; state is
 * starting | checking | idle | meeting | unpaired.
 */
(function (global) {
  'use strict';

  const document = global.document;

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : {};
  }

  function format(template, values) {
    return String(template).replace(/\{(\w+)\}/g, (whole, key) =>
      (Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole));
  }

  function pad(n) {
    return (n < 10 ? '0' : '') + n;
  }

  // Some kiosk browsers throw on localStorage in private or locked-down profiles.
  function storageGet(key) {
    try {
      return global.localStorage.getItem(key);
    } catch (error) {
      return null;
    }
  }

  function storageRemove(key) {
    try {
      global.localStorage.removeItem(key);
    } catch (error) {
      /* nothing stored, nothing to remove */
    }
  }

  const config = readJson('lh-config');
  const strings = readJson('lh-terminal-strings');
  const t = (key, values) => format(strings[key] || key, values || {});
  const retryMs = config.idleRetryMs || 15000;
  // After the meeting client gave up (meeting over, token expired), ask again soon.
  const AFTER_FATAL_MS = 3000;
  const app = document.getElementById('lh-app');
  const idle = document.getElementById('lh-idle');
  const idleTitle = document.getElementById('lh-idle-title');
  const idleHint = document.getElementById('lh-idle-hint');

  const terminal = { state: 'starting', room: null, lastStatus: 0 };
  global.lighthouseTerminal = terminal;
  let client = null;
  let retryTimer = null;
  let countdownTimer = null;

  function langQuery() {
    return config.keepLang ? '?lang=' + encodeURIComponent(config.keepLang) : '';
  }

  function goToPairing() {
    terminal.state = 'unpaired';
    showIdle(t('unpaired'), '');
    global.location.replace((config.pairPath || '/tv/pair') + langQuery());
  }

  function showIdle(title, hint) {
    idle.hidden = false;
    app.dataset.state = 'idle';
    idleTitle.textContent = title;
    idleHint.textContent = hint || '';
  }

  function hideIdle() {
    idle.hidden = true;
    clearInterval(countdownTimer);
  }

  function scheduleCheck(delayMs, title) {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    const due = Date.now() + delayMs;
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      showIdle(title, t('nextCheck', { seconds }));
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    retryTimer = setTimeout(check, delayMs);
  }

  function renderClock() {
    const now = new Date();
    document.getElementById('lh-idle-time').textContent = pad(now.getHours()) + ':' + pad(now.getMinutes());
    document.getElementById('lh-idle-date').textContent =
      now.getFullYear() + '-' + pad(now.getMonth() + 1) + '-' + pad(now.getDate());
  }

  function renderTerminalName() {
    let info = null;
    try {
      info = JSON.parse(storageGet(config.terminalTokenKey + '.info') || 'null');
    } catch (error) {
      info = null;
    }
    const name = info && info.name ? info.name : '';
    for (const element of document.querySelectorAll('[data-terminal-name]')) element.textContent = name;
  }

  async function requestMeetingToken(terminalToken) {
    const response = await global.fetch(config.meetingTokenPath || '/api/meeting-token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + terminalToken },
      body: '{}',
      credentials: 'omit', // the terminal token alone speaks for this TV, never a staff cookie
      cache: 'no-store',
    });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    return { status: response.status, body };
  }

  function joinMeeting(grant) {
    terminal.state = 'meeting';
    terminal.room = { id: grant.room_id, name: grant.room_name };
    hideIdle();
    if (client === null) {
      client = global.LighthousePage.start({ token: grant.token });
      client.on('fatal', ({ code }) => {
        // Another device took this seat: leave the choice to the people in the room.
        if (code === 'replaced') return;
        terminal.state = 'checking';
        clearTimeout(retryTimer);
        retryTimer = setTimeout(check, AFTER_FATAL_MS);
      });
    } else {
      client.token = grant.token;
      client.rejoin();
    }
  }

  async function check() {
    clearTimeout(retryTimer);
    const terminalToken = storageGet(config.terminalTokenKey);
    if (!terminalToken) {
      goToPairing();
      return;
    }
    terminal.state = 'checking';
    let reply;
    try {
      reply = await requestMeetingToken(terminalToken);
    } catch (error) {
      terminal.state = 'idle';
      terminal.lastStatus = 0;
      scheduleCheck(retryMs, t('unreachable'));
      return;
    }
    terminal.lastStatus = reply.status;
    if (reply.status === 200 && reply.body && reply.body.token) {
      joinMeeting(reply.body);
    } else if (reply.status === 401) {
      // Revoked, expired or unknown: this TV has to be paired again.
      storageRemove(config.terminalTokenKey);
      storageRemove(config.terminalTokenKey + '.info');
      goToPairing();
    } else if (reply.status === 404) {
      terminal.state = 'idle';
      scheduleCheck(retryMs, t('idle'));
    } else {
      terminal.state = 'idle';
      scheduleCheck(retryMs, t('unreachable'));
    }
  }

  renderTerminalName();
  renderClock();
  setInterval(renderClock, 10000);
  check();
})(window);
