/*
 * Terminal mode of the TV page (/tv without #token=): a paired TV keeps its long-lived
 * terminal token in localStorage and holds the lobby socket (/ws/terminal) with it. The
 * server pushes meeting_started with a meeting token when a meeting calls this TV (it
 * joins by itself) and meeting_ended when it is over (back to the idle screen). Token
 * revoked: forget it and show the pairing screen. Lost socket: reconnect with backoff.
 *
 * While no meeting holds it, the server may put the TV on duty (duty_started): its camera
 * alone, video only, is published to the village's duty room for duty attendance, with a
 * notice on the idle screen, until duty_ended or a meeting's call (the meeting wins).
 *
 * Exposes window.lighthouseTerminal = {state, room, lastStatus, duty, seen} for tests; state
 * is starting | checking | idle | meeting | unpaired; duty is null or {roomId, until,
 * client}; seen lists the names the duty camera recognised (duty_seen), newest last.
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

  function storageSet(key, value) {
    try {
      global.localStorage.setItem(key, value);
    } catch (error) {
      /* kept for this page only: the old token still works until its key is retired */
    }
  }

  function storageRemove(key) {
    try {
      global.localStorage.removeItem(key);
    } catch (error) {
      /* nothing stored, nothing to remove */
    }
  }

  // opened from a meeting link (/tv#token=…): page.js runs that meeting, not the lobby
  if (global.LighthousePage.pageToken()) {
    const idleScreen = document.getElementById('lh-idle');
    if (idleScreen) idleScreen.remove();
    return;
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

  const idleDuty = document.getElementById('lh-idle-duty');
  // duty attendance needs a face, not motion: a modest picture, all day on a village link
  const DUTY_MEDIA = {
    audio: false,
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 10, max: 15 } },
  };
  const COUNTY_CLOCK = new Intl.DateTimeFormat('en-GB', {
    timeZone: config.timeZone || 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  });

  // a duty kiosk (/duty) is only ever on duty: the server sends it no meeting
  const kiosk = Boolean(config.kiosk);
  const idleText = () => t(kiosk ? 'kioskIdle' : 'idle');

  const terminal = { state: 'starting', room: null, lastStatus: 0, duty: null, seen: [] };
  const idleSeen = document.getElementById('lh-idle-seen');
  // a recognised cadre's notice stays long enough to be read from the door
  const SEEN_NOTICE_MS = 15000;
  let seenTimer = null;
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

  // ---- the lobby: an idle socket over which the server calls this TV into meetings ----

  let lobby = null;
  let lobbyAttempt = 0;
  let pingTimer = null;

  function lobbyUrl() {
    const scheme = global.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + global.location.host + (config.lobbyPath || '/ws/terminal');
  }

  // ---- duty attendance: the camera on while no meeting holds the TV ----

  // duty_started that came while a meeting held the TV (the server may send it a moment
  // before that meeting's meeting_ended): started when the TV is idle again
  let dutyAfterMeeting = null;

  function startDuty(message) {
    if (terminal.state === 'meeting') {
      dutyAfterMeeting = message; // a meeting (or a standing room) comes first
      return;
    }
    dutyAfterMeeting = null;
    if (terminal.duty && terminal.duty.roomId === message.room_id && terminal.duty.client.state !== 'closed') {
      terminal.duty.client.token = message.token; // the same duty, a fresher token
      return;
    }
    stopDuty();
    const dutyClient = new global.LighthouseClient({
      token: message.token,
      takeOver: true,
      policy: () => [], // it only publishes
      mediaConstraints: DUTY_MEDIA,
    });
    const duty = { roomId: message.room_id, until: message.until, client: dutyClient };
    terminal.duty = duty;
    dutyClient.addEventListener('mediaerror', () => showDuty(t('dutyNoCamera')));
    dutyClient.addEventListener('fatal', () => {
      if (terminal.duty === duty) terminal.duty = null;
      showDuty('');
    });
    showDuty(t('duty', { until: COUNTY_CLOCK.format(new Date(message.until)) }));
    dutyClient.start();
  }

  function dutyAfterIdle() {
    const pending = dutyAfterMeeting;
    dutyAfterMeeting = null;
    if (pending && terminal.state !== 'meeting' && Date.parse(pending.until) > Date.now()) startDuty(pending);
  }

  function stopDuty() {
    const duty = terminal.duty;
    terminal.duty = null;
    showDuty('');
    if (duty && duty.client.state !== 'closed') duty.client.leave();
  }

  function showDuty(text) {
    if (!idleDuty) return;
    idleDuty.textContent = text;
    idleDuty.hidden = !text;
  }

  function joinMeeting(invite) {
    stopDuty(); // the camera goes to the meeting
    terminal.state = 'meeting';
    terminal.room = { id: invite.room_id, name: invite.room_name, meetingId: invite.meeting_id };
    hideIdle();
    if (client === null) {
      // the lobby knows this TV by its terminal token: the seat is its own, so it takes it
      // over from a page of its own that crashed without closing its socket
      client = global.LighthousePage.start({ token: invite.token, takeOver: true });
      client.on('fatal', ({ code }) => {
        // Another device took this seat: leave the choice to the people in the room.
        if (code === 'replaced') return;
        // Over or refused: back to the idle screen; the lobby says what comes next.
        terminal.state = 'idle';
        terminal.room = null;
        scheduleCheck(AFTER_FATAL_MS, idleText());
        dutyAfterIdle();
      });
    } else {
      if (client.state !== 'closed') client.leave();
      client.token = invite.token;
      client.rejoin();
    }
  }

  function meetingEnded(message) {
    if (!terminal.room || terminal.room.id !== message.room_id) return;
    terminal.room = null;
    terminal.state = 'idle';
    if (client !== null && client.state !== 'closed') client.leave();
    showIdle(idleText(), '');
    dutyAfterIdle();
  }

  function onLobbyMessage(message) {
    switch (message.type) {
      case 'welcome':
        // the server's key is being rotated: keep the token signed with the new one
        if (message.token) storageSet(config.terminalTokenKey, message.token);
        lobbyAttempt = 0;
        terminal.lastStatus = 200;
        if (terminal.state !== 'meeting') {
          terminal.state = 'idle';
          showIdle(idleText(), '');
        }
        break;
      case 'meeting_started':
        if (kiosk) break;
        if (!terminal.room || terminal.room.id !== message.room_id || !client || client.state === 'closed') {
          joinMeeting(message);
        }
        break;
      case 'meeting_ended':
        meetingEnded(message);
        break;
      case 'duty_started':
        startDuty(message);
        break;
      case 'duty_seen':
        terminal.seen.push(message.name);
        if (idleSeen) {
          idleSeen.textContent = t('dutySeen', { name: message.name, time: COUNTY_CLOCK.format(new Date(message.at)) });
          idleSeen.hidden = false;
          clearTimeout(seenTimer);
          seenTimer = setTimeout(() => { idleSeen.hidden = true; }, SEEN_NOTICE_MS);
        }
        break;
      case 'duty_ended':
        if (dutyAfterMeeting && dutyAfterMeeting.room_id === message.room_id) dutyAfterMeeting = null;
        if (terminal.duty && terminal.duty.roomId === message.room_id) stopDuty();
        break;
      case 'error':
        if (message.code === 'invalid_token' || message.code === 'token_expired') {
          // Revoked, expired or unknown: this TV has to be paired again.
          terminal.lastStatus = 401;
          storageRemove(config.terminalTokenKey);
          storageRemove(config.terminalTokenKey + '.info');
          goToPairing();
        }
        break;
      default:
        break;
    }
  }

  function check() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    const terminalToken = storageGet(config.terminalTokenKey);
    if (!terminalToken) {
      goToPairing();
      return;
    }
    if (lobby !== null) {
      lobby.onclose = null;
      lobby.close();
    }
    if (terminal.state !== 'meeting') terminal.state = 'checking';
    const ws = new global.WebSocket(lobbyUrl());
    lobby = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'hello', token: terminalToken }));
      clearInterval(pingTimer);
      pingTimer = setInterval(() => {
        if (ws.readyState === 1) ws.send('{"type":"ping"}');
      }, 10000);
    };
    ws.onmessage = (event) => {
      let message = null;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      onLobbyMessage(message);
    };
    ws.onclose = () => {
      clearInterval(pingTimer);
      if (lobby !== ws || terminal.state === 'unpaired') return;
      lobby = null;
      // ±25 % jitter: a whole county's TVs must not return in the same second
      const delay = Math.min(retryMs, 1000 * 2 ** lobbyAttempt) * (0.75 + Math.random() * 0.5);
      lobbyAttempt += 1;
      if (terminal.state === 'meeting') {
        retryTimer = setTimeout(check, delay); // the meeting goes on; reconnect quietly
      } else {
        terminal.state = 'idle';
        terminal.lastStatus = 0;
        scheduleCheck(delay, t('unreachable'));
      }
    };
  }

  renderTerminalName();
  renderClock();
  setInterval(renderClock, 10000);
  check();
})(window);
