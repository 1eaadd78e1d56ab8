/*
 * Wires a meeting page (tv.html, main.html, join.html) to a LighthouseClient: the
 * stage, the self-view, the status line, the control bar and the overlays.
 * The page's settings and translated strings arrive as JSON in #lh-config and
 * #lh-strings (no inline script, so the page's CSP can forbid them).
 *
 * Exposes the client as window.lighthouse (tests read its state from there), and
 * window.LighthousePage.start(overrides) for terminal mode (terminal.js), where the page
 * has no meeting token until the TV's terminal token has been traded for one.
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

  function start(overrides) {
    const config = Object.assign(readJson('lh-config'), overrides || {});
    const strings = readJson('lh-strings');
    const t = (key, values) => format(strings[key] || key, values || {});
    const mode = config.mode || 'join';
    const isTv = mode === 'tv' || mode === 'main';

    const app = document.getElementById('lh-app');
    const stage = document.getElementById('lh-stage');
    const placeholder = document.getElementById('lh-placeholder');
    const statusText = document.getElementById('lh-status');
    const notice = document.getElementById('lh-notice');
    const controls = document.getElementById('lh-controls');
    const localVideo = document.getElementById('lh-local');
    const selfView = document.getElementById('lh-self');
    const overlay = document.getElementById('lh-autoplay');
    const fatal = document.getElementById('lh-fatal');
    const fatalText = document.getElementById('lh-fatal-text');
    const buttons = {};
    for (const button of controls.querySelectorAll('[data-action]')) {
      buttons[button.dataset.action] = button;
    }

    const client = new global.LighthouseClient({
      token: config.token,
      iceServers: config.iceServers || [],
      wsPath: config.wsPath || '/ws',
      policy: global.LighthouseClient.policies[mode] || global.LighthouseClient.policies.join,
    });
    global.lighthouse = client;

    // ---- status line, placeholder, fatal panel ----------------------------------

    const STATE_TEXT = { connecting: 'connecting', joined: 'connected', reconnecting: 'reconnecting' };
    const ERROR_TEXT = {
      invalid_token: 'errorInvalidToken',
      token_expired: 'errorTokenExpired',
      unknown_room: 'errorUnknownRoom',
      replaced: 'errorReplaced',
      codec_not_supported: 'errorCodec',
    };

    function tileCount() {
      return stage.querySelectorAll('.tile').length;
    }

    function renderStatus() {
      const state = client.state;
      app.dataset.state = state;
      const left = client.errorCode === 'left';
      // After an error the fatal panel explains; the status line only says so.
      if (state === 'closed') statusText.textContent = left ? t('left') : t('disconnected');
      else statusText.textContent = t(STATE_TEXT[state] || 'connecting');
      // With nothing on the stage, say why in the middle of the screen.
      let waiting = '';
      if (state === 'joined') waiting = mode === 'main' ? t('waitingVillages') : t('waitingMain');
      else if (state === 'closed') waiting = left ? t('left') : '';
      else waiting = t(STATE_TEXT[state] || 'connecting');
      placeholder.textContent = waiting;
      placeholder.hidden = tileCount() > 0;
      for (const element of document.querySelectorAll('[data-room-name]')) {
        if (client.room && client.room.name) element.textContent = client.room.name;
      }
      const online = Object.keys(client.peers).length + (state === 'joined' ? 1 : 0);
      for (const element of document.querySelectorAll('[data-online-count]')) {
        element.textContent = state === 'joined' ? t('online', { count: online }) : '';
      }
      renderButtons();
    }

    function showNotice(text) {
      if (!notice) return;
      notice.textContent = text || '';
      notice.hidden = !text;
    }

    function showFatal(code) {
      if (!fatal) return;
      fatalText.textContent = t(ERROR_TEXT[code] || 'errorGeneric', { code });
      fatal.hidden = false;
    }

    // ---- stage ------------------------------------------------------------------

    function layoutStage() {
      const count = tileCount();
      // Near-square grid, e.g. 5 villages -> 3 x 2, 10 -> 4 x 3.
      const columns = Math.max(1, Math.ceil(Math.sqrt(count)));
      const rows = Math.max(1, Math.ceil(count / columns));
      stage.style.setProperty('--columns', String(columns));
      stage.style.setProperty('--rows', String(rows));
      stage.dataset.tiles = String(count);
      placeholder.hidden = count > 0;
    }

    client.on('subscriptionadded', ({ subscription }) => {
      const tile = document.createElement('div');
      tile.className = 'tile';
      tile.dataset.subscriptionId = subscription.subscriptionId;
      tile.dataset.publicationId = subscription.publicationId;
      const label = document.createElement('span');
      label.className = 'tile-label';
      const publication = subscription.publication || {};
      label.textContent = publication.name || (publication.role === 'main' ? t('mainVenue') : '');
      tile.appendChild(subscription.videoElement);
      tile.appendChild(label);
      stage.appendChild(tile);
      layoutStage();
    });

    client.on('subscriptionremoved', ({ subscription }) => {
      const tile = stage.querySelector('.tile[data-subscription-id="' +
        CSS.escape(subscription.subscriptionId) + '"]');
      if (tile) tile.remove();
      layoutStage();
    });

    // ---- self-view ----------------------------------------------------------------

    client.on('localstream', ({ stream }) => {
      localVideo.srcObject = stream;
      selfView.hidden = !stream;
      if (stream) {
        const played = localVideo.play();
        if (played && played.catch) played.catch(() => {});
        showNotice('');
      }
      renderButtons();
    });

    client.on('mediaerror', () => {
      selfView.hidden = true;
      showNotice(t('noCamera'));
      renderButtons();
    });

    // ---- controls -----------------------------------------------------------------

    function setLabel(button, text, pressed) {
      if (!button) return;
      button.querySelector('.ctl-label').textContent = text;
      if (pressed !== undefined) {
        button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
        button.classList.toggle('is-off', pressed);
      }
    }

    function renderButtons() {
      const stream = client.localStream;
      const hasAudio = Boolean(stream && stream.getAudioTracks().length);
      const hasVideo = Boolean(stream && stream.getVideoTracks().length);
      // While the camera is still being opened the buttons stay usable (the flags
      // apply once it arrives), so the first button can take the focus at load.
      const pending = client.mediaState === 'pending';
      setLabel(buttons.mic, client.micMuted ? t('unmute') : t('mute'), client.micMuted);
      setLabel(buttons.camera, client.cameraOff ? t('cameraOn') : t('cameraOff'), client.cameraOff);
      if (buttons.mic) buttons.mic.disabled = !(hasAudio || pending);
      if (buttons.camera) buttons.camera.disabled = !(hasVideo || pending);
      const inFullscreen = Boolean(document.fullscreenElement);
      setLabel(buttons.fullscreen, inFullscreen ? t('exitFullscreen') : t('fullscreen'), inFullscreen);
      const away = client.state === 'closed';
      setLabel(buttons.leave, away ? t('rejoin') : t('leave'));
      if (buttons.leave) buttons.leave.classList.toggle('is-danger', !away);
      app.classList.toggle('mic-muted', client.micMuted && hasAudio);
      app.classList.toggle('camera-off', client.cameraOff || !hasVideo);
      // A button that just became disabled cannot keep the focus: move it on.
      if (isTv && document.activeElement && document.activeElement.disabled) {
        global.LighthouseRemote.focusFirst();
      }
    }

    const actions = {
      mic() {
        client.setMicMuted(!client.micMuted);
      },
      camera() {
        client.setCameraOff(!client.cameraOff);
      },
      fullscreen() {
        if (document.fullscreenElement) {
          document.exitFullscreen().catch(() => {});
        } else if (document.documentElement.requestFullscreen) {
          document.documentElement.requestFullscreen().catch(() => {});
        }
      },
      leave() {
        if (client.state === 'closed') {
          if (fatal) fatal.hidden = true;
          client.rejoin();
        } else {
          client.leave();
        }
      },
    };

    controls.addEventListener('click', (event) => {
      const button = event.target.closest('[data-action]');
      if (button && !button.disabled && actions[button.dataset.action]) {
        actions[button.dataset.action]();
      }
    });

    if (buttons.fullscreen && !document.fullscreenEnabled) {
      // iPhones and some kiosk shells: the page is as full-screen as it will get.
      buttons.fullscreen.hidden = true;
    }
    document.addEventListener('fullscreenchange', renderButtons);

    // ---- control bar visibility (TV: Back hides it, any key brings it back) ----------

    let lastFocused = null;

    function controlsHidden() {
      return app.classList.contains('controls-hidden');
    }

    function hideControls() {
      if (controlsHidden()) return;
      if (controls.contains(document.activeElement)) {
        lastFocused = document.activeElement;
        document.activeElement.blur();
      }
      app.classList.add('controls-hidden');
    }

    function showControls() {
      app.classList.remove('controls-hidden');
      const focus = () => {
        const target = lastFocused && !lastFocused.disabled && !lastFocused.hidden ? lastFocused : null;
        if (target) target.focus({ preventScroll: true });
        else global.LighthouseRemote.focusFirst();
        return controls.contains(document.activeElement);
      };
      // A browser that has not restyled the bar yet refuses the focus: retry next frame.
      if (!focus()) global.requestAnimationFrame(focus);
    }

    // ---- autoplay overlay -----------------------------------------------------------

    function overlayVisible() {
      return Boolean(overlay) && !overlay.hidden;
    }

    function showOverlay() {
      if (!overlay) return;
      overlay.hidden = false;
      overlay.querySelector('button').focus({ preventScroll: true });
    }

    function hideOverlay() {
      if (!overlay || overlay.hidden) return;
      overlay.hidden = true;
      if (isTv) showControls();
    }

    function startPlayback() {
      client.resumePlayback();
      hideOverlay();
    }

    client.on('autoplayblocked', showOverlay);
    if (overlay) overlay.querySelector('button').addEventListener('click', startPlayback);

    // ---- remote control ---------------------------------------------------------------

    global.LighthouseRemote.install({
      autofocus: false, // after the first render below
      onBack() {
        if (overlayVisible()) return; // the overlay must be answered with OK
        if (isTv) hideControls();
      },
      onWake(event) {
        if (overlayVisible()) {
          if (event.key === 'Enter' || event.keyCode === 13) {
            event.preventDefault();
            startPlayback();
            return true;
          }
          return false;
        }
        if (controlsHidden()) {
          showControls();
          return true;
        }
        return false;
      },
    });
    // A tap or click on the picture brings a hidden bar back (PCs, touch TVs).
    stage.addEventListener('click', () => {
      if (controlsHidden()) showControls();
    });

    // ---- client events ---------------------------------------------------------------

    client.on('statechange', ({ state }) => {
      if (state !== 'closed' && fatal) fatal.hidden = true;
      renderStatus();
    });
    client.on('peerschange', renderStatus);
    client.on('joined', renderStatus);
    client.on('mutechange', renderButtons);
    client.on('fatal', ({ code }) => {
      showFatal(code);
      renderStatus();
      // The only useful key now is "rejoin"; keep it reachable.
      if (isTv) showControls();
    });
    client.on('servererror', ({ code }) => {
      if (code === 'codec_not_supported') showNotice(t('errorCodec'));
    });

    client.start(); // first, so that the camera request is pending when buttons render
    renderStatus();
    layoutStage();
    // TVs start on the first button; on phones a focus ring at load would only confuse.
    if (isTv) global.LighthouseRemote.focusFirst();
    return client;
  }

  global.LighthousePage = { start };
  // A terminal-mode TV page starts only once terminal.js holds a meeting token.
  if (!readJson('lh-config').terminal) {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => start());
    else start();
  }
})(window);
