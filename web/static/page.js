/*
 * Wires a meeting page (tv.html, main.html, join.html) to a LighthouseClient: the
 * stage, the self-view, the status line, the control bar and the overlays.
 * The page's settings and translated strings arrive as JSON in #lh-config and
 * #lh-strings (no inline script, so the page's CSP can forbid them).
 *
 * Exposes the client as window.lighthouse (tests read its state from there), and
 * window.LighthousePage.start(overrides) for terminal mode (terminal.js), where the page
 * has no meeting token until the TV's terminal token has been traded for one, and
 * window.LighthousePage.pageToken() (the token of the page's link, if any).
 */
(function (global) {
  'use strict';

  const document = global.document;
  const PAGE_TOKEN_KEY = 'lighthouse.pageToken:';

  /**
   * The meeting token of this page. Links carry it in the fragment (/join#token=…), which
   * no request carries, so neither this server's nor a proxy's log, nor a Referer, holds
   * it. It is kept in the tab's sessionStorage (a reload keeps the seat) and taken out of
   * the address bar (a photo of the screen does not give it away).
   */
  function pageToken() {
    const key = PAGE_TOKEN_KEY + global.location.pathname;
    const params = new URLSearchParams(global.location.hash.slice(1));
    let token = params.get('token');
    try {
      if (token) global.sessionStorage.setItem(key, token);
      else token = global.sessionStorage.getItem(key);
    } catch (error) {
      /* storage off: the link alone */
    }
    if (params.has('token')) {
      params.delete('token');
      const rest = params.toString();
      const url = global.location.pathname + global.location.search + (rest ? '#' + rest : '');
      global.history.replaceState(null, '', url);
    }
    return token || null;
  }

  /** This tab's instance id, kept across reloads: a reloaded page resumes its seat even
   * before the server has seen the old page's socket close; another tab has its own. */
  function pageInstance() {
    const key = 'lighthouse.instance';
    let instance = null;
    try {
      instance = global.sessionStorage.getItem(key);
    } catch (error) {
      /* storage off: one per page load */
    }
    if (!instance || !/^[A-Za-z0-9_-]{8,64}$/.test(instance)) {
      const bytes = new Uint8Array(16);
      global.crypto.getRandomValues(bytes);
      instance = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      try {
        global.sessionStorage.setItem(key, instance);
      } catch (error) {
        /* as above */
      }
    }
    return instance;
  }

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : {};
  }

  function format(template, values) {
    return String(template).replace(/\{(\w+)\}/g, (whole, key) =>
      (Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole));
  }

  function start(overrides) {
    const config = Object.assign(readJson('lh-config'), { token: pageToken() }, overrides || {});
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
      takeOver: Boolean(config.takeOver),
      instance: pageInstance(),
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
      in_use: 'errorInUse',
      missing_token: 'errorMissingToken',
      codec_not_supported: 'errorCodec',
      meeting_ended: 'errorMeetingEnded',
    };

    // Tiles that show something: the floor slot's tile is hidden while nobody holds the
    // floor, and a stage of hidden tiles is an empty (black) stage.
    function tileCount() {
      return stage.querySelectorAll('.tile:not([hidden])').length;
    }

    // An empty stage on a TV says why and shows the room itself: the self-view large, the
    // meeting's name, and "waiting for the main venue" when one is to come.
    function renderEmptyStage() {
      const empty = tileCount() === 0;
      placeholder.hidden = !empty;
      const alone = empty && mode === 'tv' && client.state === 'joined';
      app.classList.toggle('alone', alone);
      if (client.state !== 'joined') return;
      const room = client.room || {};
      let text = t('waitingVillages');
      if (mode !== 'main') text = room.main_expected === false ? t('ownRoom') : t('waitingMain');
      const title = document.createElement('strong');
      title.className = 'placeholder-title';
      title.textContent = mode === 'main' ? '' : room.name || '';
      const line = document.createElement('span');
      line.className = 'placeholder-text';
      line.textContent = text;
      placeholder.replaceChildren(title, line);
    }

    function renderStatus() {
      const state = client.state;
      app.dataset.state = state;
      const left = client.errorCode === 'left';
      // After an error the fatal panel explains; the status line only says so.
      if (state === 'closed') statusText.textContent = left ? t('left') : t('disconnected');
      else statusText.textContent = t(STATE_TEXT[state] || 'connecting');
      // With nothing on the stage, say why in the middle of the screen.
      if (state === 'closed') placeholder.textContent = left ? t('left') : '';
      else if (state !== 'joined') placeholder.textContent = t(STATE_TEXT[state] || 'connecting');
      renderEmptyStage();
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

    // A meeting that ended is no problem to take to the administrator, and nothing to
    // rejoin: say it has ended, and only that.
    const OVER = new Set(['meeting_ended']);

    function showFatal(code) {
      if (!fatal) return;
      fatalText.textContent = t(ERROR_TEXT[code] || 'errorGeneric', { code });
      fatal.dataset.code = code;
      const hint = fatal.querySelector('.fatal-hint');
      if (hint) hint.hidden = OVER.has(code);
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
      renderEmptyStage();
    }

    // ---- meeting layouts (a meeting its main venue runs) ------------------------------
    // TVs and phones: the main venue large with the floor venue beside it; on a roll call
    // the floor venue large; shared content large whenever it is on. The big one is the
    // tile with .is-main-view.

    function tileKind(publication) {
      if (publication.source === 'content') return 'content';
      if (publication.source === 'floor') return 'floor';
      return publication.role === 'main' ? 'main' : 'venue';
    }

    function applyMeetingLayout() {
      const state = client.meetingState || {};
      const controlled = Boolean(client.room && client.room.controlled);
      const tiles = Array.from(stage.querySelectorAll('.tile'));
      const floorTile = stage.querySelector('.tile[data-kind="floor"]');
      if (floorTile) {
        floorTile.hidden = !state.floor;
        const label = floorTile.querySelector('.tile-label');
        label.textContent = state.floor ? state.floor.name : '';
        layoutStage();
      }
      if (!controlled || mode === 'main') {
        delete stage.dataset.layout;
        for (const tile of tiles) tile.classList.remove('is-main-view', 'is-side');
        return;
      }
      const contentTile = stage.querySelector('.tile[data-kind="content"]');
      const mainTile = stage.querySelector('.tile[data-kind="main"]');
      // no main venue (yet, or none at all): the venue holding the floor is the big one
      let big = mainTile || (floorTile && !floorTile.hidden ? floorTile : null);
      let layout = 'main';
      if (contentTile) {
        big = contentTile;
        layout = 'content';
      } else if (state.spotlight && state.floor && floorTile) {
        big = floorTile;
        layout = 'spotlight';
      }
      stage.dataset.layout = layout;
      let side = 0;
      for (const tile of tiles) {
        const isBig = tile === big;
        tile.classList.toggle('is-main-view', isBig);
        tile.classList.toggle('is-side', !isBig && !tile.hidden);
        if (!isBig && !tile.hidden) tile.dataset.side = String(side++);
      }
    }

    client.on('subscriptionadded', ({ subscription }) => {
      const tile = document.createElement('div');
      tile.className = 'tile';
      tile.dataset.subscriptionId = subscription.subscriptionId;
      tile.dataset.publicationId = subscription.publicationId;
      const publication = subscription.publication || {};
      tile.dataset.kind = tileKind(publication);
      tile.dataset.peerId = publication.peer_id || '';
      const label = document.createElement('span');
      label.className = 'tile-label';
      label.textContent = tile.dataset.kind === 'content' ? t('content')
        : publication.name || (publication.role === 'main' ? t('mainVenue') : '');
      tile.appendChild(subscription.videoElement);
      tile.appendChild(label);
      stage.appendChild(tile);
      layoutStage();
      applyMeetingLayout();
      renderPanel();
    });

    client.on('subscriptionremoved', ({ subscription }) => {
      const tile = stage.querySelector('.tile[data-subscription-id="' +
        CSS.escape(subscription.subscriptionId) + '"]');
      if (tile) tile.remove();
      layoutStage();
      applyMeetingLayout();
    });

    // ---- what the main venue decided, as this venue sees it -----------------------------

    function renderMeetingState() {
      const state = client.meetingState || {};
      const mine = client.peerId;
      const mutedByMain = Boolean(mine && (state.muted || []).includes(mine));
      app.classList.toggle('muted-by-main', mutedByMain);
      if (mode !== 'main') showNotice(mutedByMain ? t('mutedByMain') : '');
      const banner = document.getElementById('lh-banner');
      if (banner) {
        let text = '';
        if (state.floor && state.spotlight) text = t('onRollCall', { name: state.floor.name });
        else if (state.floor) text = t('hasFloor', { name: state.floor.name });
        banner.textContent = text;
        banner.hidden = !text;
      }
      const hand = buttons.hand;
      if (hand) {
        const controlled = Boolean(client.room && client.room.controlled);
        hand.hidden = !controlled || mode === 'main' || client.state !== 'joined';
        const raised = (state.hands || []).some((h) => h.peer_id === mine);
        setLabel(hand, raised ? t('lowerHand') : t('raiseHand'), raised);
      }
      applyMeetingLayout();
      renderPanel();
    }

    client.on('meetingstate', renderMeetingState);

    // ---- the main venue's control panel ------------------------------------------------

    const panel = document.getElementById('lh-panel');

    function panelButton(text, action, peerId) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'ctl panel-button';
      button.dataset.focusable = '';
      button.dataset.panel = action;
      if (peerId) button.dataset.peerId = peerId;
      button.textContent = text;
      return button;
    }

    function renderPanel() {
      if (!panel || mode !== 'main') return;
      const controlled = Boolean(client.room && client.room.controlled);
      panel.hidden = !controlled || client.state !== 'joined';
      if (panel.hidden) return;
      const state = client.meetingState || {};
      const muted = new Set(state.muted || []);
      const floorId = state.floor ? state.floor.peer_id : null;
      const hands = document.getElementById('lh-panel-hands');
      hands.replaceChildren();
      for (const hand of state.hands || []) {
        const item = document.createElement('li');
        item.dataset.peerId = hand.peer_id;
        const name = document.createElement('span');
        name.textContent = hand.name;
        item.append(name, panelButton(t('giveFloor'), 'give_floor', hand.peer_id));
        hands.appendChild(item);
      }
      if (!hands.children.length) {
        const none = document.createElement('li');
        none.className = 'panel-empty';
        none.textContent = t('noHands');
        hands.appendChild(none);
      }
      const venues = document.getElementById('lh-panel-venues');
      venues.replaceChildren();
      const others = Object.values(client.peers).filter((p) => p.role !== 'main');
      others.sort((a, b) => String(a.name).localeCompare(String(b.name), 'zh'));
      for (const peer of others) {
        const item = document.createElement('li');
        item.dataset.peerId = peer.peer_id;
        item.classList.toggle('has-floor', peer.peer_id === floorId);
        item.classList.toggle('is-muted', muted.has(peer.peer_id));
        const name = document.createElement('span');
        name.className = 'panel-name';
        name.textContent = peer.name;
        item.append(
          name,
          panelButton(t('rollCall'), 'roll_call', peer.peer_id),
          panelButton(t('giveFloor'), 'give_floor', peer.peer_id),
          muted.has(peer.peer_id)
            ? panelButton(t('unmuteVenue'), 'unmute', peer.peer_id)
            : panelButton(t('muteVenue'), 'mute', peer.peer_id),
        );
        venues.appendChild(item);
      }
      const share = panel.querySelector('[data-panel="share"]');
      share.textContent = client.contentPublicationId ? t('stopSharing') : t('shareScreen');
      for (const tile of stage.querySelectorAll('.tile')) {
        tile.classList.toggle('has-floor', Boolean(floorId) && tile.dataset.peerId === floorId);
        tile.classList.toggle('is-muted', muted.has(tile.dataset.peerId));
      }
    }

    async function shareScreen() {
      if (client.contentPublicationId) {
        await client.stopContent();
        return;
      }
      const devices = global.navigator.mediaDevices;
      if (!devices || !devices.getDisplayMedia) return;
      const stream = await devices.getDisplayMedia({ video: true, audio: false });
      await client.shareContent(stream);
    }

    if (panel) {
      panel.addEventListener('click', (event) => {
        const button = event.target.closest('[data-panel]');
        if (!button || button.disabled) return;
        const action = button.dataset.panel;
        const done = action === 'share' ? shareScreen() : client.control(action, button.dataset.peerId);
        Promise.resolve(done).catch((error) => {
          console.warn('lighthouse: control failed', error);
          showNotice(t('errorGeneric', { code: error.code || 'control' }));
        }).finally(renderPanel);
      });
      client.on('contentchange', renderPanel);
    }

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
      const inUse = away && client.errorCode === 'in_use';
      setLabel(buttons.leave, inUse ? t('takeOver') : away ? t('rejoin') : t('leave'));
      if (buttons.leave) {
        buttons.leave.classList.toggle('is-danger', !away);
        buttons.leave.hidden = away && (OVER.has(client.errorCode) || !client.token);
      }
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
      hand() {
        const state = client.meetingState || {};
        const raised = (state.hands || []).some((h) => h.peer_id === client.peerId);
        client.raiseHand(!raised).catch(() => {});
      },
      leave() {
        if (client.state === 'closed') {
          if (fatal) fatal.hidden = true;
          if (client.errorCode === 'in_use') client.takeOver();
          else client.rejoin();
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
      renderMeetingState();
    });
    client.on('peerschange', () => {
      renderStatus();
      renderPanel();
    });
    client.on('joined', renderStatus);
    client.on('mutechange', renderButtons);
    client.on('fatal', ({ code }) => {
      showFatal(code);
      renderStatus();
      // The only useful key now is "rejoin"; keep it reachable.
      if (isTv) showControls();
    });
    client.on('declined', ({ kinds, videoCodec }) => {
      if (kinds.includes('video')) {
        showNotice(t('declinedVideo', { codec: String(videoCodec || '').toUpperCase() }));
      }
    });
    let downlinkNotice = false;
    client.on('videopaused', ({ paused, reason, videoCodec }) => {
      if (paused && reason === 'codec') {
        showNotice(t('videoPausedCodec', { codec: String(videoCodec || '').toUpperCase() }));
      } else if (paused) showNotice(t('videoPausedDownlink'));
      else if (downlinkNotice) showNotice('');
      downlinkNotice = paused;
    });
    client.on('servererror', ({ code }) => {
      if (code === 'codec_not_supported') showNotice(t('errorCodec'));
    });

    if (!config.token) {
      // a link without its token: nothing to join; say so (and do not ask for the camera)
      showFatal('missing_token');
      renderStatus();
      return client;
    }
    client.start(); // first, so that the camera request is pending when buttons render
    renderStatus();
    layoutStage();
    // TVs start on the first button; on phones a focus ring at load would only confuse.
    if (isTv) global.LighthouseRemote.focusFirst();
    return client;
  }

  global.LighthousePage = { start, pageToken };
  // A TV page with a meeting token in its link is a meeting page; without one, terminal.js
  // runs the paired TV and calls start() once it holds a meeting token.
  if (!readJson('lh-config').terminal || pageToken()) {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => start());
    else start();
  }
})(window);
