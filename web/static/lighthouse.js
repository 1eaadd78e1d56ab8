/*
 * Lighthouse browser client: speaks docs/protocol.md over one WebSocket, publishes the
 * camera and microphone on one upstream RTCPeerConnection and receives each chosen
 * publication on its own downstream RTCPeerConnection.
 *
 * Plain ES2020, no build step: village TVs run whatever Chromium their vendor shipped.
 * Defines window.LighthouseClient; the page (page.js) creates one and exposes it as
 * window.lighthouse for tests.
 */
(function (global) {
  'use strict';

  // After these the server has closed the connection on purpose; retrying cannot help.
  // in_use: the token is held by another connection (not this page's): the person
  // chooses whether to take it over (takeOver()), nothing retries on its own
  const FINAL_ERRORS = new Set(['invalid_token', 'token_expired', 'unknown_room', 'replaced', 'in_use']);

  const PING_INTERVAL_MS = 10000;
  // The server answers every ping; this long without a frame means a dead link that
  // TCP has not noticed yet (a TV's Wi-Fi dropping), so reconnect rather than wait.
  const SILENCE_LIMIT_MS = 25000;
  const ICE_GATHERING_CAP_MS = 3000;
  const REQUEST_TIMEOUT_MS = 20000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 15000;
  // a publication whose connection failed is made again alone, backing off to this
  const REPUBLISH_MAX_MS = 30000;
  // A session that lasted this long resets the backoff: the next drop retries fast.
  const STABLE_SESSION_MS = 10000;
  // A media connection that stays "disconnected" this long is treated as failed;
  // browsers take ~30 s to declare "failed" themselves.
  const DISCONNECTED_GRACE_MS = 10000;
  // The server may close a subscription's transport a moment before its
  // subscription_ended/publication_removed arrives: wait before calling a "failed" or
  // "closed" connection a failure, then only if it still matters.
  const CLOSED_GRACE_MS = 2000;
  const RESUBSCRIBE_DELAY_MS = 1000;
  // A receive-only browser knows no round trip (it sends no RTP, so no report comes back
  // to time), so its video jitter buffer never waits for a retransmission: on a lossy
  // village link every frame that lost a packet froze the picture for a round trip. Once
  // packets are being asked for again, the TV holds its video back by a round trip and a
  // half (the STUN round trip of the selected candidate pair) plus a margin, at most
  // PLAYOUT_DELAY_MAX_MS, for PLAYOUT_DELAY_HOLD_MS after the last loss.
  const LINK_WATCH_MS = 2000;
  const PLAYOUT_DELAY_MARGIN_MS = 100;
  const PLAYOUT_DELAY_MAX_MS = 1000;
  const PLAYOUT_DELAY_HOLD_MS = 30000;

  // a camera's lower encoding, for villages whose link cannot carry the first (the
  // server caps it at the room's low_video_kbps too)
  const LOW_VIDEO_HEIGHT = 360;
  const LOW_VIDEO_BPS = 300000;
  const DEFAULT_MEDIA = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 25, max: 30 } },
  };

  class LighthouseError extends Error {
    constructor(code, message) {
      super(message || code);
      this.name = 'LighthouseError';
      this.code = code;
    }
  }

  /** Resolve when ICE gathering is complete, or after capMs: the protocol has no trickle. */
  function waitForIceGathering(pc, capMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      let timer = null;
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', onState);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      };
      const onState = () => {
        if (pc.iceGatheringState === 'complete') done();
      };
      // A null candidate also marks the end (older browsers skip the state event).
      const onCandidate = (event) => {
        if (!event.candidate) done();
      };
      timer = setTimeout(done, capMs);
      pc.addEventListener('icegatheringstatechange', onState);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  function h264ProfileLevelId(fmtp) {
    const match = /profile-level-id=([0-9a-f]{6})/i.exec(fmtp || '');
    return match ? match[1].toLowerCase() : '';
  }

  /**
   * The codec preference list for the room's video codec: the room codec's entries
   * first (for H.264 only constrained baseline 42e0xx, then baseline 4200xx, with
   * packetization-mode=1, which is what the SFU relays), then RTX. Empty when the
   * browser has no such codec; then the offer keeps its defaults and the server
   * answers codec_not_supported.
   */
  function preferredVideoCodecs(codecs, roomCodec) {
    const mime = (codec) => (codec.mimeType || '').toLowerCase();
    const wanted = (roomCodec || '').toLowerCase();
    let chosen = [];
    if (wanted === 'h264') {
      const usable = codecs.filter((c) => mime(c) === 'video/h264' &&
        /packetization-mode=1/.test(c.sdpFmtpLine || ''));
      const profile = (c) => h264ProfileLevelId(c.sdpFmtpLine);
      chosen = usable.filter((c) => profile(c).startsWith('42e0'))
        .concat(usable.filter((c) => profile(c).startsWith('4200')));
    } else if (wanted === 'vp8') {
      chosen = codecs.filter((c) => mime(c) === 'video/vp8');
    }
    if (chosen.length === 0) return [];
    // Capabilities carry no payload types, so "apt=" cannot be matched here; the
    // browser pairs the RTX entry with each chosen codec itself.
    return chosen.concat(codecs.filter((c) => mime(c) === 'video/rtx'));
  }

  function defaultWsUrl(path) {
    const scheme = global.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + global.location.host + (path || '/ws');
  }

  /** Which publications a page receives: (publications, client) => publication ids. */
  // In a meeting run by its main venue (room.controlled) the venue with the floor comes
  // through one virtual publication, the floor slot, switched by the server.
  const FLOOR_SLOT = 'floor';

  function isFollowed(p) {
    return p.role === 'main' || p.source === 'content' || p.source === 'floor';
  }

  const policies = {
    // A village TV shows the main venue, shared content and the floor; in a room nobody
    // runs and with no main venue yet, whoever is there.
    tv(publications) {
      const followed = publications.filter(isFollowed);
      if (followed.some((p) => p.role === 'main' || p.source === 'floor')) {
        return followed.map((p) => p.publication_id);
      }
      const cameras = publications.filter((p) => p.source !== 'floor');
      return cameras.length > 0 ? [cameras[0].publication_id] : [];
    },
    // The main venue watches every village (the floor slot would only repeat one).
    main(publications) {
      return publications
        .filter((p) => p.role !== 'main' && p.source !== 'floor')
        .map((p) => p.publication_id);
    },
    // Phones and PCs follow the main venue, shared content and the floor.
    join(publications) {
      return publications.filter(isFollowed).map((p) => p.publication_id);
    },
    all(publications) {
      return publications.map((p) => p.publication_id);
    },
  };

  function randomInstance() {
    const bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** The video playout delay (ms) for a link with this round trip (s), lossy or not. */
  function playoutDelayFor(rttSeconds, lossy) {
    if (!lossy || !(rttSeconds > 0)) return 0;
    return Math.min(PLAYOUT_DELAY_MAX_MS, Math.round(3500 * rttSeconds + PLAYOUT_DELAY_MARGIN_MS));
  }

  /**
   * Events (CustomEvent, data in `detail`): statechange {state, previous}, joined,
   * localstream {stream}, mediaerror {error}, published {publicationId},
   * subscriptionadded / subscriptionremoved {subscription}, publicationschange,
   * peerschange, autoplayblocked, fatal {code, message}, servererror {code, message},
   * declined {subscriptionId, kinds, videoCodec} (media this browser cannot decode),
   * videopaused {subscriptionId, paused, reason} (the server paused a venue's video for
   * this link, or resumed it).
   */
  class LighthouseClient extends EventTarget {
    constructor(options) {
      super();
      const opts = options || {};
      this.token = opts.token;
      // replaced by the server's list (TURN credentials minted for this client) on join
      this.iceServers = opts.iceServers || [];
      // 'relay' sends everything through the TURN server (networks that block direct UDP)
      this.iceTransportPolicy = opts.iceTransportPolicy || 'all';
      // this page's instance: a reconnection with it resumes the seat silently; another
      // page holding the same token is refused (in_use) unless it takes the seat over
      this.instance = opts.instance || randomInstance();
      this.takeOverOnJoin = Boolean(opts.takeOver);
      this.wsUrl = opts.wsUrl || defaultWsUrl(opts.wsPath);
      this.policy = opts.policy || policies.all;
      this.publishMedia = opts.publish !== false;
      // what to receive of each publication: null for everything, or e.g. ['video'] (a
      // patrol wall's tiles, silent until one is enlarged)
      this.kinds = opts.kinds || null;
      this.mediaConstraints = opts.mediaConstraints || DEFAULT_MEDIA;

      // Public state, read by the page and by tests.
      this.state = 'closed'; // connecting | joined | reconnecting | closed
      this.peerId = null;
      this.role = null;
      this.room = null; // {id, name, video_codec, audio_codec}
      this.publicationId = null; // our own publication
      this.publications = {}; // publication_id -> publication (other peers' only)
      this.peers = {}; // peer_id -> {peer_id, name, role}
      this.subscriptions = {}; // subscription_id -> {publicationId, videoElement, ...}
      this.localStream = null;
      this.mediaState = 'idle'; // idle | pending | ready | unavailable
      this.micMuted = false;
      this.cameraOff = false;
      this.errorCode = null; // why the state is "closed": an error code or "left"
      this.autoplayBlocked = false;
      this.joinCount = 0; // successful joins, reconnections included
      // the meeting's control state: {floor, spotlight, mute_all, muted, hands, content}
      this.meetingState = {};
      this.contentPublicationId = null; // our shared screen, if we share one
      this._contentPc = null;
      this._contentStream = null;
      this.reconnectAttempt = 0;
      this.nextRetryAt = 0; // Date.now() of the next reconnection attempt
      // The server may say when to come back (its worker_lost handover): used once,
      // instead of the backoff.
      this._retryAfterMs = null;

      this._ws = null;
      this._nextId = 1;
      this._pending = new Map(); // request id -> {resolve, reject, timer}
      this._publishPc = null;
      // second encodings of our camera the server asked for (encoding_wanted):
      // video codec -> {pc, publicationId}
      this._encodings = {};
      this._subscribing = new Set(); // publication ids with a subscribe in flight
      // Every teardown bumps the generation; async work of an older session sees the
      // change after each await and drops its results.
      this._generation = 0;
      this.publishAttempt = 0; // failed publications in a row (backs the next one off)
      this.republishCount = 0; // publications made again alone (read by tests)
      this.resubscribeCount = 0; // subscriptions made again alone (read by tests)
      this._resubscribeFailures = 0; // in a row: the back-off's exponent
      this._republishTimer = null;
      this._stopped = true;
      this._final = false;
      this._reconnectTimer = null;
      this._pingTimer = null;
      this._watchdogTimer = null;
      this._policyTimer = null;
      this._lastHeard = 0;
      this._joinedAt = 0;
      this._mediaPromise = null;
      this._mediaEpoch = 0; // bumped by each acquisition and release: late cameras are stopped
      this._closedByUs = new WeakSet(); // PCs we closed: their "closed" is expected

      this._onOnline = () => {
        // Network is back: skip the rest of the backoff wait.
        if (this.state === 'reconnecting' && this._reconnectTimer !== null) {
          clearTimeout(this._reconnectTimer);
          this._reconnectTimer = null;
          this._connect();
        }
      };
    }

    // ---- public API ---------------------------------------------------------

    start() {
      if (!this._stopped) return;
      this._stopped = false;
      this._final = false;
      this.errorCode = null;
      this.reconnectAttempt = 0;
      this._mediaPromise = this._acquireMedia();
      global.addEventListener('online', this._onOnline);
      this._connect();
    }

    /** Leave on purpose: tell the server, release camera and microphone, do not retry. */
    leave() {
      if (this._stopped) return;
      this._send({ type: 'leave' });
      this._stop('left');
    }

    /** After in_use: join here and end the other connection's use of this token (the
     * server audits it and tells the other device). */
    takeOver() {
      this.takeOverOnJoin = true;
      this.rejoin();
    }

    /** Join again after leave() or after a final error (a new token may be in place). */
    rejoin() {
      this._stop(this.errorCode || 'left');
      this.start();
    }

    setMicMuted(muted) {
      this.micMuted = Boolean(muted);
      this._applyTrackFlags();
      this._emit('mutechange', { micMuted: this.micMuted, cameraOff: this.cameraOff });
    }

    setCameraOff(off) {
      this.cameraOff = Boolean(off);
      this._applyTrackFlags();
      this._emit('mutechange', { micMuted: this.micMuted, cameraOff: this.cameraOff });
    }

    /** Receive other kinds from now on (e.g. ['audio', 'video'] for an enlarged tile):
     * every subscription is made again with them. */
    setKinds(kinds) {
      this.kinds = kinds || null;
      for (const id of Object.keys(this.subscriptions)) this._unsubscribe(id);
      this._applyPolicy();
    }

    /** Choose what to receive from now on (a function of the publications, as in
     * `policies`): subscriptions it no longer wants end, new ones are made. */
    setPolicy(policy) {
      this.policy = policy;
      this._applyPolicy();
    }

    /** The main venue's decisions (docs/protocol.md, "Meeting control"). */
    control(action, peerId) {
      const message = { type: 'control', action };
      if (peerId) message.peer_id = peerId;
      return this._request(message);
    }

    raiseHand(raised) {
      return this._request({ type: 'raise_hand', raised: Boolean(raised) });
    }

    /** Share a screen (or any stream) as the meeting's content: a second publication. */
    async shareContent(stream) {
      const generation = this._generation;
      const video = stream.getVideoTracks()[0];
      if (!video) throw new LighthouseError('no_media', 'nothing to share');
      await this.stopContent();
      const pc = this._newPc(generation, 'content');
      this._contentPc = pc;
      this._contentStream = stream;
      const transceiver = pc.addTransceiver(video, { direction: 'sendonly', streams: [stream] });
      this._preferRoomCodec(transceiver);
      video.addEventListener('ended', () => this.stopContent());
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc, ICE_GATHERING_CAP_MS);
      const reply = await this._request({
        type: 'publish', sdp: pc.localDescription.sdp, source: 'content',
      });
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      this.contentPublicationId = reply.publication_id;
      this._emit('contentchange', { publicationId: this.contentPublicationId });
      return reply.publication_id;
    }

    async stopContent() {
      const id = this.contentPublicationId;
      const pc = this._contentPc;
      this.contentPublicationId = null;
      this._contentPc = null;
      if (this._contentStream) for (const track of this._contentStream.getTracks()) track.stop();
      this._contentStream = null;
      if (pc) this._closePc(pc);
      if (id && this.state === 'joined') {
        try {
          await this._request({ type: 'unpublish', publication_id: id });
        } catch (error) {
          /* gone already */
        }
      }
      if (id) this._emit('contentchange', { publicationId: null });
    }

    /** Retry play() on every remote video; call it from a user gesture. */
    resumePlayback() {
      this.autoplayBlocked = false;
      for (const sub of Object.values(this.subscriptions)) this._play(sub.videoElement);
    }

    on(type, listener) {
      this.addEventListener(type, (event) => listener(event.detail, event));
      return this;
    }

    // ---- connection lifecycle -------------------------------------------------

    _connect() {
      this._reconnectTimer = null;
      const generation = ++this._generation;
      this._setState(this.reconnectAttempt > 0 ? 'reconnecting' : 'connecting');
      let ws;
      try {
        ws = new WebSocket(this.wsUrl);
      } catch (error) {
        this._lostConnection('websocket: ' + error);
        return;
      }
      this._ws = ws;
      ws.onopen = () => {
        if (generation !== this._generation) return;
        this._lastHeard = Date.now();
        this._startTimers(generation);
        const join = { type: 'join', token: this.token, instance: this.instance };
        if (this.takeOverOnJoin) join.take_over = true;
        this._request(join)
          .then((msg) => this._onJoined(msg, generation))
          .catch((error) => {
            // Final errors were handled when the frame arrived.
            if (generation === this._generation && !this._final) {
              this._lostConnection('join: ' + error.message);
            }
          });
      };
      ws.onmessage = (event) => {
        if (generation !== this._generation) return;
        this._lastHeard = Date.now();
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch (error) {
          console.warn('lighthouse: unparsable frame', error);
          return;
        }
        if (msg && typeof msg.type === 'string') this._onMessage(msg);
      };
      ws.onclose = (event) => {
        if (generation !== this._generation) return;
        this._lostConnection('websocket closed (' + event.code + ')');
      };
      ws.onerror = () => {}; // onclose follows and decides
    }

    _onJoined(msg, generation) {
      if (generation !== this._generation) return;
      this.peerId = msg.peer_id;
      this.role = msg.role;
      this.room = msg.room || null;
      if (Array.isArray(msg.ice_servers)) this.iceServers = msg.ice_servers;
      this.peers = {};
      for (const peer of msg.peers || []) this.peers[peer.peer_id] = peer;
      this.publications = {};
      for (const pub of msg.publications || []) {
        if (pub.peer_id !== this.peerId) this.publications[pub.publication_id] = pub;
      }
      if (this.room && this.room.controlled) {
        this.publications[FLOOR_SLOT] = {
          publication_id: FLOOR_SLOT, peer_id: null, name: '', role: 'floor',
          kinds: ['audio', 'video'], source: 'floor',
        };
      }
      this.meetingState = msg.meeting_state || {};
      this._emit('meetingstate', { state: this.meetingState });
      this._joinedAt = Date.now();
      this.joinCount += 1;
      this._setState('joined');
      this._emit('joined', msg);
      this._emit('peerschange', { peers: this.peers });
      this._emit('publicationschange', { publications: this.publications });
      this._publish(generation).catch((error) => this._onMediaSetupError('publish', error, generation));
      this._applyPolicy();
    }

    /** The link or a media connection broke: start over from join after a backoff. */
    _lostConnection(reason) {
      if (this._stopped || this._final) return;
      console.info('lighthouse: reconnecting:', reason);
      if (this._joinedAt && Date.now() - this._joinedAt >= STABLE_SESSION_MS) {
        this.reconnectAttempt = 0;
      }
      this._teardown();
      let delay;
      if (this._retryAfterMs !== null) {
        delay = Math.min(BACKOFF_MAX_MS, this._retryAfterMs);
        this._retryAfterMs = null;
      } else {
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.reconnectAttempt);
        // ±25 % jitter so that a whole county's TVs do not return in the same second.
        delay = Math.min(BACKOFF_MAX_MS, base * (0.75 + Math.random() * 0.5));
        this.reconnectAttempt += 1;
      }
      this.nextRetryAt = Date.now() + delay;
      this._setState('reconnecting');
      this._reconnectTimer = setTimeout(() => this._connect(), delay);
    }

    _finish(code, message) {
      this._final = true;
      this._stop(code);
      this._emit('fatal', { code, message });
    }

    _stop(reason) {
      this._stopped = true;
      this.errorCode = reason;
      global.removeEventListener('online', this._onOnline);
      if (this._reconnectTimer !== null) clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._teardown();
      this._releaseMedia();
      this._setState('closed');
    }

    /** Close the socket and every PC and forget the session (not the local media). */
    _teardown() {
      this._generation += 1;
      clearTimeout(this._republishTimer);
      this._republishTimer = null;
      clearInterval(this._pingTimer);
      clearInterval(this._watchdogTimer);
      clearTimeout(this._policyTimer);
      this._pingTimer = this._watchdogTimer = this._policyTimer = null;
      for (const pending of this._pending.values()) {
        clearTimeout(pending.timer);
        pending.reject(new LighthouseError('closed', 'connection closed'));
      }
      this._pending.clear();
      if (this._ws) {
        const ws = this._ws;
        this._ws = null;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try {
          ws.close(1000);
        } catch (error) {
          /* already closing */
        }
      }
      if (this._publishPc) this._closePc(this._publishPc);
      this._publishPc = null;
      this._closeEncodings();
      if (this._contentPc) {
        // a shared screen does not survive a reconnection: the presenter shares again
        this._closePc(this._contentPc);
        this._contentPc = null;
        if (this._contentStream) for (const track of this._contentStream.getTracks()) track.stop();
        this._contentStream = null;
        this.contentPublicationId = null;
      }
      for (const id of Object.keys(this.subscriptions)) this._endSubscription(id, 'teardown');
      this._subscribing.clear();
      this.publications = {};
      this.peers = {};
      this.peerId = null;
      this.publicationId = null;
      this._joinedAt = 0;
    }

    _startTimers(generation) {
      this._pingTimer = setInterval(() => {
        if (generation === this._generation) this._send({ type: 'ping', id: this._nextId++ });
      }, PING_INTERVAL_MS);
      this._watchdogTimer = setInterval(() => {
        if (generation !== this._generation) return;
        if (Date.now() - this._lastHeard > SILENCE_LIMIT_MS) this._lostConnection('server silent');
      }, PING_INTERVAL_MS / 2);
    }

    // ---- messages ---------------------------------------------------------------

    _send(msg) {
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
      this._ws.send(JSON.stringify(msg));
      return true;
    }

    /** Send a request with a fresh id; resolves with the reply, rejects on `error`. */
    _request(msg) {
      const id = this._nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new LighthouseError('timeout', msg.type + ' got no reply'));
        }, REQUEST_TIMEOUT_MS);
        this._pending.set(id, { resolve, reject, timer });
        if (!this._send(Object.assign({}, msg, { id }))) {
          clearTimeout(timer);
          this._pending.delete(id);
          reject(new LighthouseError('closed', 'not connected'));
        }
      });
    }

    _onMessage(msg) {
      if (msg.type === 'error' && FINAL_ERRORS.has(msg.code)) {
        this._finish(msg.code, msg.message);
        return;
      }
      if (msg.id !== undefined && msg.id !== null && this._pending.has(msg.id)) {
        const pending = this._pending.get(msg.id);
        this._pending.delete(msg.id);
        clearTimeout(pending.timer);
        if (msg.type === 'error') pending.reject(new LighthouseError(msg.code, msg.message));
        else pending.resolve(msg);
        return;
      }
      switch (msg.type) {
        case 'pong':
          break;
        case 'peer_joined':
          this.peers[msg.peer_id] = { peer_id: msg.peer_id, name: msg.name, role: msg.role };
          this._emit('peerschange', { peers: this.peers });
          break;
        case 'peer_left':
          delete this.peers[msg.peer_id];
          this._emit('peerschange', { peers: this.peers });
          break;
        case 'publication_added':
          if (msg.peer_id === this.peerId || msg.publication_id === this.publicationId) break;
          if (msg.publication_id === this.contentPublicationId) break;
          this.publications[msg.publication_id] = {
            publication_id: msg.publication_id, peer_id: msg.peer_id, name: msg.name,
            role: msg.role, kinds: msg.kinds, source: msg.source || 'camera',
          };
          this._emit('publicationschange', { publications: this.publications });
          this._applyPolicy();
          break;
        case 'publication_removed':
          this._onPublicationRemoved(msg.publication_id);
          break;
        case 'meeting_state':
          this.meetingState = msg;
          this._emit('meetingstate', { state: msg });
          break;
        case 'meeting_ended':
          // over for everyone: no reconnecting into a room that is gone
          this._finish('meeting_ended', 'the meeting has ended');
          break;
        case 'video_paused':
        case 'video_resumed': {
          // the server paused a venue's video: this link cannot carry it, or (reason
          // "codec") this browser cannot decode the venue's codec until the venue sends
          // a second encoding; audio goes on
          const sub = this.subscriptions[msg.subscription_id];
          if (sub) {
            sub.videoPaused = msg.type === 'video_paused';
            this._emit('videopaused', {
              subscriptionId: msg.subscription_id, paused: sub.videoPaused, reason: msg.reason,
              videoCodec: msg.video_codec,
            });
          }
          break;
        }
        case 'encoding_wanted': {
          // a subscriber cannot decode our codec (video_codec: send it in that one too),
          // or its link cannot carry our video (quality "low": send it lower too)
          const key = msg.quality === 'low' ? 'low' : msg.video_codec;
          this._publishEncoding(msg.publication_id, msg.video_codec, this._generation, key)
            .catch((error) => {
              console.warn('lighthouse: second encoding', key, 'failed', error);
              this._closeEncoding(key);
            });
          break;
        }
        case 'subscription_ended':
          if (this.subscriptions[msg.subscription_id]) {
            this._endSubscription(msg.subscription_id, msg.reason || 'ended');
            // If the publication is still there and wanted, subscribe again shortly.
            this._schedulePolicy(RESUBSCRIBE_DELAY_MS);
          }
          break;
        case 'error':
          console.warn('lighthouse: server error', msg.code, msg.message);
          if (Number.isFinite(msg.retry_after_ms) && msg.retry_after_ms >= 0) {
            this._retryAfterMs = msg.retry_after_ms;
          }
          this._emit('servererror', { code: msg.code, message: msg.message });
          break;
        default:
          // Late replies to requests already given up on, or newer server events.
          break;
      }
    }

    _onPublicationRemoved(publicationId) {
      if (publicationId === this.contentPublicationId) {
        this.stopContent();
        return;
      }
      if (publicationId === this.publicationId) {
        this._republishLater('own publication removed'); // the rest of the session stays
        return;
      }
      delete this.publications[publicationId];
      for (const [id, sub] of Object.entries(this.subscriptions)) {
        if (sub.publicationId === publicationId) this._endSubscription(id, 'publication_removed');
      }
      this._emit('publicationschange', { publications: this.publications });
      this._applyPolicy();
    }

    // ---- local media and publishing ---------------------------------------------

    async _acquireMedia() {
      if (!this.publishMedia) return null;
      const devices = global.navigator.mediaDevices;
      if (!devices || !devices.getUserMedia) {
        // Also the case on plain http:// from another host: browsers allow cameras
        // only in secure contexts (https:// or localhost).
        this.mediaState = 'unavailable';
        this._emit('mediaerror', { error: new LighthouseError('no_media', 'getUserMedia unavailable') });
        return null;
      }
      const epoch = ++this._mediaEpoch;
      this.mediaState = 'pending';
      const wanted = this.mediaConstraints;
      // A TV may lack a camera or a microphone: take what there is.
      const attempts = [wanted, { audio: wanted.audio, video: false }, { audio: false, video: wanted.video }];
      let lastError = null;
      for (const constraints of attempts) {
        if (!constraints.audio && !constraints.video) continue;
        try {
          const stream = await devices.getUserMedia(constraints);
          if (this._stopped || epoch !== this._mediaEpoch) {
            for (const track of stream.getTracks()) track.stop();
            return null;
          }
          this.localStream = stream;
          this.mediaState = 'ready';
          this._applyTrackFlags();
          this._emit('localstream', { stream });
          return stream;
        } catch (error) {
          lastError = error;
        }
      }
      if (epoch === this._mediaEpoch) {
        this.mediaState = 'unavailable';
        this._emit('mediaerror', { error: lastError });
      }
      return null;
    }

    _releaseMedia() {
      this._mediaEpoch += 1;
      this.mediaState = 'idle';
      if (this.localStream) {
        for (const track of this.localStream.getTracks()) track.stop();
        this.localStream = null;
        this._emit('localstream', { stream: null });
      }
      this._mediaPromise = null;
    }

    _applyTrackFlags() {
      if (!this.localStream) return;
      for (const track of this.localStream.getAudioTracks()) track.enabled = !this.micMuted;
      for (const track of this.localStream.getVideoTracks()) track.enabled = !this.cameraOff;
    }

    async _publish(generation) {
      const stream = await this._mediaPromise;
      if (generation !== this._generation || !stream) return;
      const audio = stream.getAudioTracks()[0];
      const video = stream.getVideoTracks()[0];
      if (!audio && !video) return;
      const pc = this._newPc(generation, 'publish');
      this._publishPc = pc;
      if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
      if (video) {
        const transceiver = pc.addTransceiver(video, { direction: 'sendonly', streams: [stream] });
        this._preferRoomCodec(transceiver);
      }
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitForIceGathering(pc, ICE_GATHERING_CAP_MS);
      if (generation !== this._generation) return;
      const reply = await this._request({ type: 'publish', sdp: pc.localDescription.sdp });
      if (generation !== this._generation) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      this.publicationId = reply.publication_id;
      this._emit('published', { publicationId: this.publicationId });
    }

    /** Send the room's codec, or else the other one the server relays (a Firefox
     * without H.264 sends VP8: the server gets it to those who cannot decode it). */
    _preferRoomCodec(transceiver) {
      const roomCodec = this.room && this.room.video_codec;
      if (!roomCodec) return;
      const other = roomCodec === 'h264' ? 'vp8' : 'h264';
      if (!this._preferCodec(transceiver, roomCodec) && !this._preferCodec(transceiver, other)) {
        console.warn('lighthouse: this browser offers neither', roomCodec, 'nor', other);
      }
    }

    /** Only `codec` (and RTX) on this transceiver; false if this browser has none. */
    _preferCodec(transceiver, codec) {
      if (typeof transceiver.setCodecPreferences !== 'function') return false;
      // Older Chromium checks preferences against the receiver's capabilities, newer
      // against sender and receiver: try the receiver's first, then the sender's.
      const sources = [global.RTCRtpReceiver, global.RTCRtpSender];
      for (const source of sources) {
        const caps = source && source.getCapabilities && source.getCapabilities('video');
        const preferred = caps ? preferredVideoCodecs(caps.codecs, codec) : [];
        if (preferred.length === 0) continue;
        try {
          transceiver.setCodecPreferences(preferred);
          return true;
        } catch (error) {
          console.warn('lighthouse: setCodecPreferences refused', error);
        }
      }
      return false;
    }

    /** A subscriber cannot decode our camera's codec, or its link cannot carry our
     * video: send the camera again in `codec` (key: the codec), or lower in our own
     * codec (key "low": at most 360 lines, LOW_VIDEO_BPS), on a connection of its own
     * (video only). The server gives it to those who need it and ends it with the
     * camera's publication. */
    async _publishEncoding(publicationId, codec, generation, key) {
      if (publicationId !== this.publicationId || this._encodings[key]) return;
      const video = this.localStream && this.localStream.getVideoTracks()[0];
      if (!video) return;
      const pc = this._newPc(generation, 'encoding');
      const entry = { pc, publicationId: null, codec };
      this._encodings[key] = entry;
      const init = { direction: 'sendonly' };
      if (key === 'low') {
        const height = (video.getSettings && video.getSettings().height) || 720;
        init.sendEncodings = [{
          scaleResolutionDownBy: Math.max(1, height / LOW_VIDEO_HEIGHT), maxBitrate: LOW_VIDEO_BPS,
        }];
      }
      const transceiver = pc.addTransceiver(video, init);
      if (!this._preferCodec(transceiver, codec)) {
        console.warn('lighthouse: asked for a second encoding in', codec, 'which this browser lacks');
        this._closeEncoding(key);
        return;
      }
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitForIceGathering(pc, ICE_GATHERING_CAP_MS);
      if (generation !== this._generation || this._encodings[key] !== entry) return;
      const request = { type: 'publish', sdp: pc.localDescription.sdp, encoding_of: publicationId };
      if (key === 'low') request.quality = 'low';
      const reply = await this._request(request);
      if (generation !== this._generation || this._encodings[key] !== entry) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      entry.publicationId = reply.publication_id;
      console.info('lighthouse: sending the camera', key === 'low' ? 'lower' : 'in ' + codec, 'too');
    }

    _closeEncoding(key, unpublish) {
      const entry = this._encodings[key];
      if (!entry) return;
      delete this._encodings[key];
      this._closePc(entry.pc);
      if (unpublish && entry.publicationId && this.state === 'joined') {
        this._send({ type: 'unpublish', id: this._nextId++, publication_id: entry.publicationId });
      }
    }

    _closeEncodings() {
      for (const key of Object.keys(this._encodings)) this._closeEncoding(key);
    }

    /** Video codecs of our camera's second encodings being sent (read by tests). */
    get encodingCodecs() {
      return Object.keys(this._encodings).filter((key) => key !== 'low');
    }

    /** Whether our camera is sent lower too, for weak village links (read by tests). */
    get sendsLower() {
      return Boolean(this._encodings.low);
    }

    /** Publish the camera again after a back-off (1 s doubling to 30 s, ±25 %), with a
     * new connection; the session and its subscriptions are left alone. */
    _republishLater(reason) {
      if (this._stopped || this._final || this._republishTimer !== null) return;
      const pc = this._publishPc;
      this._publishPc = null;
      if (pc) this._closePc(pc);
      this._closeEncodings(); // the server ends them with the camera's publication
      const old = this.publicationId;
      this.publicationId = null;
      if (old && this.state === 'joined') {
        this._send({ type: 'unpublish', id: this._nextId++, publication_id: old });
      }
      this.publishAttempt += 1;
      const base = Math.min(REPUBLISH_MAX_MS, 1000 * 2 ** (this.publishAttempt - 1));
      const delay = base * (0.75 + Math.random() * 0.5);
      console.info('lighthouse: publishing again in', Math.round(delay), 'ms:', reason);
      const generation = this._generation;
      clearTimeout(this._republishTimer);
      this._republishTimer = setTimeout(() => {
        this._republishTimer = null;
        if (generation !== this._generation || this.state !== 'joined' || this._publishPc) return;
        this.republishCount += 1;
        this._publish(generation).catch((error) => this._onMediaSetupError('publish', error, generation));
      }, delay);
    }

    _onMediaSetupError(what, error, generation) {
      if (generation !== this._generation) return;
      const code = error && error.code;
      if (code === 'closed') return; // the session ended under it
      console.warn('lighthouse:', what, 'failed', error);
      // A refused offer would be refused again: report it and keep watching.
      this._emit('servererror', { code: code || 'media_setup', message: String(error && error.message) });
      if (code === 'timeout') this._lostConnection(what + ' timed out');
    }

    // ---- subscriptions -----------------------------------------------------------

    _schedulePolicy(delayMs) {
      clearTimeout(this._policyTimer);
      this._policyTimer = setTimeout(() => this._applyPolicy(), delayMs);
    }

    /** Subscribe to what the policy wants and drop what it no longer wants. */
    _applyPolicy() {
      if (this.state !== 'joined') return;
      const wanted = new Set(this.policy(Object.values(this.publications), this) || []);
      const have = new Set();
      for (const [id, sub] of Object.entries(this.subscriptions)) {
        if (wanted.has(sub.publicationId)) have.add(sub.publicationId);
        else this._unsubscribe(id);
      }
      for (const publicationId of wanted) {
        if (have.has(publicationId) || this._subscribing.has(publicationId)) continue;
        if (!this.publications[publicationId]) continue;
        this._subscribe(publicationId);
      }
    }

    async _subscribe(publicationId) {
      const generation = this._generation;
      this._subscribing.add(publicationId);
      let offer;
      try {
        const request = { type: 'subscribe', publication_id: publicationId };
        if (this.kinds) request.kinds = this.kinds;
        offer = await this._request(request);
      } catch (error) {
        if (generation !== this._generation) return;
        this._subscribing.delete(publicationId);
        if (error.code === 'timeout') this._lostConnection('subscribe timed out');
        else if (error.code !== 'unknown_publication') this._onMediaSetupError('subscribe', error, generation);
        return;
      }
      if (generation !== this._generation) return;
      this._subscribing.delete(publicationId);
      try {
        await this._acceptSubscription(offer, generation);
      } catch (error) {
        if (generation !== this._generation) return;
        if (this.subscriptions[offer.subscription_id]) {
          this._unsubscribe(offer.subscription_id);
        }
        this._onMediaSetupError('subscription', error, generation);
      }
    }

    async _acceptSubscription(msg, generation) {
      const subscriptionId = msg.subscription_id;
      const publicationId = msg.publication_id;
      const publication = this.publications[publicationId];
      const wanted = new Set(this.policy(Object.values(this.publications), this) || []);
      if (!publication || !wanted.has(publicationId)) {
        // It went away (or stopped mattering) while the offer was on its way.
        this._send({ type: 'unsubscribe', id: this._nextId++, subscription_id: subscriptionId });
        return;
      }
      const pc = this._newPc(generation, 'subscription', subscriptionId);
      const stream = new MediaStream();
      const video = global.document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      video.setAttribute('playsinline', '');
      video.dataset.publicationId = publicationId;
      video.dataset.subscriptionId = subscriptionId;
      video.dataset.role = publication.role || '';
      video.dataset.peerId = publication.peer_id || '';
      video.srcObject = stream;
      const sub = {
        subscriptionId, publicationId, publication, videoElement: video, stream, pc,
        // what the link watch (see LINK_WATCH_MS) last saw and set
        link: { rtt: null, nacks: 0, lossyUntil: 0, playoutDelayMs: 0 },
      };
      sub.linkTimer = setInterval(() => {
        this._watchLink(sub).catch(() => {});
      }, LINK_WATCH_MS);
      this.subscriptions[subscriptionId] = sub;
      pc.addEventListener('track', (event) => {
        stream.addTrack(event.track);
        this._play(video);
      });
      this._emit('subscriptionadded', { subscription: sub });

      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await waitForIceGathering(pc, ICE_GATHERING_CAP_MS);
      if (generation !== this._generation || !this.subscriptions[subscriptionId]) return;
      const reply = await this._request({
        type: 'subscription_answer', subscription_id: subscriptionId, sdp: pc.localDescription.sdp,
      });
      if (reply && Array.isArray(reply.declined) && reply.declined.length) {
        // this browser cannot decode these (e.g. no H.264): the rest goes on
        console.warn('lighthouse: declined', reply.declined.join('+'), '(room codec ' + reply.video_codec + ')');
        this._emit('declined', { subscriptionId, kinds: reply.declined, videoCodec: reply.video_codec });
      }
    }

    /** Hold the video back for retransmissions while the link loses packets. */
    async _watchLink(sub) {
      const stats = await sub.pc.getStats();
      let pairId = null;
      let nacks = 0;
      stats.forEach((r) => {
        if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
        if (r.type === 'inbound-rtp' && r.kind === 'video') nacks = r.nackCount || 0;
      });
      const pair = pairId && stats.get(pairId);
      const link = sub.link;
      if (pair && pair.currentRoundTripTime > 0) link.rtt = pair.currentRoundTripTime;
      const now = Date.now();
      if (nacks > link.nacks) link.lossyUntil = now + PLAYOUT_DELAY_HOLD_MS;
      link.nacks = nacks;
      const delay = playoutDelayFor(link.rtt, now < link.lossyUntil);
      if (delay === link.playoutDelayMs) return;
      link.playoutDelayMs = delay;
      for (const receiver of sub.pc.getReceivers()) {
        if (receiver.track && receiver.track.kind !== 'video') continue;
        if ('jitterBufferTarget' in receiver) receiver.jitterBufferTarget = delay;
        else if ('playoutDelayHint' in receiver) receiver.playoutDelayHint = delay / 1000;
      }
    }

    /** A new connection for a failed subscription, after 1 s doubling to 30 s. (aiortc
     * has no ICE restart, so a new connection is what restarts ICE.) */
    _resubscribeLater(subscriptionId, why) {
      console.info('lighthouse: subscribing again:', why);
      this.resubscribeCount += 1;
      const delay = Math.min(REPUBLISH_MAX_MS, RESUBSCRIBE_DELAY_MS * 2 ** this._resubscribeFailures);
      this._resubscribeFailures += 1;
      this._send({ type: 'unsubscribe', id: this._nextId++, subscription_id: subscriptionId });
      this._endSubscription(subscriptionId, 'connection_failed');
      this._schedulePolicy(delay);
    }

    _unsubscribe(subscriptionId) {
      if (!this.subscriptions[subscriptionId]) return;
      this._send({ type: 'unsubscribe', id: this._nextId++, subscription_id: subscriptionId });
      this._endSubscription(subscriptionId, 'unsubscribed');
    }

    _endSubscription(subscriptionId, reason) {
      const sub = this.subscriptions[subscriptionId];
      if (!sub) return;
      delete this.subscriptions[subscriptionId];
      clearInterval(sub.linkTimer);
      this._closePc(sub.pc);
      sub.videoElement.srcObject = null;
      sub.videoElement.remove();
      this._emit('subscriptionremoved', { subscription: sub, reason });
    }

    _play(video) {
      const played = video.play();
      if (!played || !played.catch) return;
      played.catch((error) => {
        // AbortError only means a newer load replaced this one.
        if (error && error.name === 'NotAllowedError' && !this.autoplayBlocked) {
          this.autoplayBlocked = true;
          this._emit('autoplayblocked', {});
        }
      });
    }

    // ---- peer connections ----------------------------------------------------------

    _newPc(generation, label, subscriptionId) {
      const pc = new RTCPeerConnection({
        iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy,
      });
      let disconnectedTimer = null;
      const broken = (why) => {
        if (generation !== this._generation || this._closedByUs.has(pc)) return;
        if (subscriptionId !== undefined && !this.subscriptions[subscriptionId]) return;
        // the camera's connection alone failed (e.g. its candidates could not reach the
        // server): publish again alone, the subscriptions that work go on
        if (label === 'publish' && this.state === 'joined') this._republishLater('publish ' + why);
        // a second encoding's connection: drop it; the server asks again if still needed
        else if (label === 'encoding') {
          for (const [key, entry] of Object.entries(this._encodings)) {
            if (entry.pc === pc) this._closeEncoding(key, true);
          }
        }
        // a watched venue's connection alone failed (the TV's network changed, an outage
        // outlasted ICE): subscribe to it again alone; the seat and the rest stay
        else if (label === 'subscription' && this.state === 'joined') {
          this._resubscribeLater(subscriptionId, why);
        } else this._lostConnection(label + ' ' + why);
      };
      const check = () => {
        const state = pc.connectionState || pc.iceConnectionState;
        clearTimeout(disconnectedTimer);
        if (label === 'publish' && (state === 'connected' || state === 'completed')) {
          this.publishAttempt = 0;
        }
        if (label === 'subscription' && (state === 'connected' || state === 'completed')) {
          this._resubscribeFailures = 0;
        }
        if (state === 'failed' || state === 'closed') {
          setTimeout(() => broken(state), CLOSED_GRACE_MS);
        } else if (state === 'disconnected') {
          disconnectedTimer = setTimeout(() => {
            const now = pc.connectionState || pc.iceConnectionState;
            if (now === 'disconnected') broken('disconnected');
          }, DISCONNECTED_GRACE_MS);
        }
      };
      // connectionState is missing in some older TV browsers; ICE state is the fallback.
      if ('connectionState' in pc) pc.addEventListener('connectionstatechange', check);
      else pc.addEventListener('iceconnectionstatechange', check);
      return pc;
    }

    _closePc(pc) {
      this._closedByUs.add(pc);
      try {
        pc.close();
      } catch (error) {
        /* already closed */
      }
    }

    // ---- helpers -------------------------------------------------------------------

    _setState(state) {
      if (this.state === state) return;
      const previous = this.state;
      this.state = state;
      this._emit('statechange', { state, previous });
    }

    _emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    }
  }

  LighthouseClient.policies = policies;
  LighthouseClient.FINAL_ERRORS = FINAL_ERRORS;
  LighthouseClient.preferredVideoCodecs = preferredVideoCodecs;
  LighthouseClient.waitForIceGathering = waitForIceGathering;
  LighthouseClient.LighthouseError = LighthouseError;

  global.LighthouseClient = LighthouseClient;
})(window);
