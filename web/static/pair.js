/*
 * The TV pairing screen (/tv/pair): get a code (POST /api/terminals/pairing), show it with
 * its QR code, ask every 2 s whether an admin has bound it
 * (POST /api/terminals/pairing/claim), then keep the terminal token in localStorage and
 * open /tv. An expired or unknown code is replaced by a new one without any key press.
 *
 * The code and its secret are kept in localStorage too, so a TV that reloads the page (a
 * power cut, a kiosk watchdog) keeps showing the code an admin may be typing right now.
 *
 * Exposes window.lighthousePairing = {state, code} for tests; state is
 * starting | requesting | waiting | paired | error.
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
      return true;
    } catch (error) {
      return false;
    }
  }

  function storageRemove(key) {
    try {
      global.localStorage.removeItem(key);
    } catch (error) {
      /* nothing to remove */
    }
  }

  const config = readJson('lh-config');
  const strings = readJson('lh-pair-strings');
  const t = (key, values) => format(strings[key] || key, values || {});
  const POLL_MS = config.pollMs || 2000;
  const RATE_LIMIT_WAIT_MS = 60000;
  const RETRY_MS = 5000;

  const root = document.getElementById('lh-pair');
  const codeElement = document.getElementById('lh-pair-code');
  const statusElement = document.getElementById('lh-pair-status');
  const expiryElement = document.getElementById('lh-pair-expiry');
  const qr = document.getElementById('lh-pair-qr');

  const pairing = { state: 'starting', code: null };
  global.lighthousePairing = pairing;
  let current = null; // {code, secret, expiresAt (server ms), skew (server - local ms)}
  let timer = null;

  function setState(state, text) {
    pairing.state = state;
    root.dataset.state = state;
    if (text !== undefined) statusElement.textContent = text;
  }

  function later(fn, ms) {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  }

  /** The server's clock minus ours, from the Date header: TVs often have no clock sync. */
  function skewOf(response) {
    const date = Date.parse(response.headers.get('Date') || '');
    return Number.isNaN(date) ? 0 : date - Date.now();
  }

  async function post(path, body) {
    const response = await global.fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
      credentials: 'omit',
      cache: 'no-store',
    });
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    return { status: response.status, data, skew: skewOf(response) };
  }

  function showCode(code) {
    pairing.code = code;
    codeElement.dataset.code = code;
    codeElement.textContent = '';
    for (const char of code) {
      const span = document.createElement('span');
      span.className = 'pair-char';
      span.textContent = char;
      codeElement.appendChild(span);
    }
    qr.src = (config.qrPath || '/tv/pair/qr.svg') + '?code=' + encodeURIComponent(code);
    qr.hidden = false;
  }

  function renderExpiry() {
    if (!current) {
      expiryElement.textContent = '';
      return;
    }
    const left = current.expiresAt - (Date.now() + current.skew);
    // Rounded down: better to promise a minute less than the server will allow.
    const minutes = Math.max(1, Math.floor(left / 60000));
    expiryElement.textContent = left > 0 ? t('validFor', { minutes }) : '';
  }

  function forget() {
    current = null;
    pairing.code = null;
    storageRemove(config.pairingKey);
  }

  function restore() {
    let saved = null;
    try {
      saved = JSON.parse(storageGet(config.pairingKey) || 'null');
    } catch (error) {
      saved = null;
    }
    if (!saved || !saved.code || !saved.secret || !saved.expiresAt) return null;
    // Keep a code only while it has a useful life left; the server has the last word anyway.
    if (saved.expiresAt - (Date.now() + (saved.skew || 0)) < 60000) return null;
    return saved;
  }

  async function requestCode() {
    setState('requesting', t('getting'));
    let reply;
    try {
      reply = await post(config.pairingPath);
    } catch (error) {
      setState('error', t('unreachable'));
      later(requestCode, RETRY_MS);
      return;
    }
    if (reply.status === 201 && reply.data && reply.data.code) {
      current = {
        code: reply.data.code,
        secret: reply.data.secret,
        expiresAt: Date.parse(reply.data.expires_at),
        skew: reply.skew,
      };
      storageSet(config.pairingKey, JSON.stringify(current));
      wait();
    } else if (reply.status === 429) {
      setState('error', t('rateLimited'));
      later(requestCode, RATE_LIMIT_WAIT_MS);
    } else {
      setState('error', t('unreachable'));
      later(requestCode, RETRY_MS);
    }
  }

  function wait() {
    showCode(current.code);
    renderExpiry();
    setState('waiting', t('waiting'));
    later(claim, POLL_MS);
  }

  async function claim() {
    if (!current) return;
    let reply;
    try {
      reply = await post(config.claimPath, { code: current.code, secret: current.secret });
    } catch (error) {
      // Keep the code on screen: the admin may be typing it while the Wi-Fi blinks.
      statusElement.textContent = t('unreachable');
      later(claim, RETRY_MS);
      return;
    }
    renderExpiry();
    if (reply.status === 202) {
      if (pairing.state !== 'waiting') setState('waiting', t('waiting'));
      later(claim, POLL_MS);
    } else if (reply.status === 200 && reply.data && reply.data.token) {
      storageSet(config.terminalTokenKey, reply.data.token);
      const terminal = reply.data.terminal || {};
      const org = reply.data.org || {};
      storageSet(config.terminalTokenKey + '.info',
        JSON.stringify({ id: terminal.id, name: terminal.name, org: org.name }));
      forget();
      setState('paired', t('paired'));
      goToTv();
    } else if (reply.status === 410 || reply.status === 404 || reply.status === 409 ||
               reply.status === 422) {
      // Expired, unknown (the database was reset) or already collected: start over.
      forget();
      setState('requesting', t('expired'));
      later(requestCode, 1000);
    } else {
      statusElement.textContent = t('unreachable');
      later(claim, RETRY_MS);
    }
  }

  function goToTv() {
    const lang = config.keepLang ? '?lang=' + encodeURIComponent(config.keepLang) : '';
    global.location.replace((config.tvPath || '/tv') + lang);
  }

  // Already paired (a kiosk that starts here after a reboot): the TV page takes over, and
  // sends the TV back here only if its token has been revoked.
  if (storageGet(config.terminalTokenKey)) {
    setState('paired', t('paired'));
    goToTv();
    return;
  }
  const saved = restore();
  if (saved) {
    current = saved;
    wait();
  } else {
    forget();
    requestCode();
  }
  setInterval(renderExpiry, 15000);
})(window);
