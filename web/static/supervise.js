/*
 * Supervision pages of the console: the live meetings, a hidden drop-in, the patrol wall
 * and the supervision log. Registered with console.js (window.lighthouseConsole) and built
 * with its helpers; the media side is lighthouse.js's LighthouseClient, joined with a
 * supervisor token (POST /api/supervision/view) so the server hides this viewer.
 *
 * The patrol wall exposes window.lighthousePatrol for tests: {ready, page, pages,
 * shown: [room ids on screen], history: [[room ids] per group shown], enlarged}.
 */
(function (global) {
  'use strict';

  const view = global.lighthouseConsole;
  const kit = view.kit;
  const { api, t, label, orDash, dateTime, el, $, url, fillTable } = kit;
  const LIVE_REFRESH_MS = 10000;

  /** A hidden viewer of one room: a token for it, then a receive-only client. */
  async function hiddenClient(roomId, mode, options) {
    const grant = await api('POST', '/api/supervision/view', { room_id: roomId, mode });
    const Client = global.LighthouseClient;
    const client = new Client(Object.assign({
      token: grant.token,
      iceServers: kit.config.iceServers || [],
      publish: false,
      policy: Client.policies.tv, // the main venue, else whoever sends
    }, options || {}));
    client.roomName = grant.room_name;
    return client;
  }

  // ---- the live meetings ---------------------------------------------------------------

  function watchUrl(roomId) {
    return url('/console/supervision/watch/' + encodeURIComponent(roomId));
  }

  async function supervisionPage(me) {
    $('sup-log-link').href = url('/console/supervision/log');
    const scope = $('sup-scope');
    const org = await api('GET', '/api/org');
    const areas = [org].concat(org.children || []);
    areas.forEach((unit, index) => {
      const text = index === 0 ? t('allOfArea', { org: unit.name }) : unit.name;
      scope.appendChild(el('option', { value: String(unit.id) }, text));
    });
    const form = $('sup-patrol-form');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      global.location.href = url('/console/supervision/patrol', {
        grid: $('sup-grid').value, interval: $('sup-interval').value, scope: scope.value,
      });
    });

    async function refresh() {
      const reply = await api('GET', '/api/supervision/live');
      const rows = reply.meetings.map((meeting) => el('tr', { dataset: { roomId: meeting.room_id } }, [
        el('td', {}, meeting.org.name),
        el('td', {}, meeting.meeting ? label('meetingType', meeting.meeting.type) : '—'),
        el('td', {}, meeting.meeting ? meeting.meeting.topic : meeting.room_name),
        el('td', {}, dateTime(meeting.started_at)),
        el('td', { className: 'num' }, String(meeting.venues_online)),
        el('td', { className: 'num' }, String(meeting.signed_in)),
        el('td', {}, el('a', {
          className: 'con-button con-button-small', href: watchUrl(meeting.room_id),
        }, t('watch'))),
      ]));
      fillTable($('sup-live'), rows, 'sup-live-empty');
    }
    await refresh();
    setInterval(() => refresh().catch(() => {}), LIVE_REFRESH_MS);
  }

  // ---- a hidden drop-in ------------------------------------------------------------------

  async function watchPage() {
    const stage = $('watch-stage');
    const state = $('watch-state');
    const message = $('watch-message');
    state.textContent = t('connecting');
    let client;
    try {
      client = await hiddenClient(kit.config.roomId, 'drop_in');
    } catch (error) {
      if (error.code === 'out_of_scope') {
        kit.showAlert(message, t('outOfScope'), 'error');
        state.textContent = '';
        return;
      }
      throw error;
    }
    global.lighthouseWatch = client;
    $('watch-heading').textContent = t('watching', { room: client.roomName });
    client.on('joined', () => {
      state.textContent = t('live');
      kit.showAlert(message, Object.keys(client.publications).length ? '' : t('nothingShown'), 'info');
    });
    client.on('subscriptionadded', ({ subscription }) => {
      kit.showAlert(message, '');
      stage.textContent = '';
      subscription.videoElement.className = 'con-watch-video';
      stage.appendChild(subscription.videoElement);
    });
    client.on('autoplayblocked', () => { $('watch-sound').hidden = false; });
    $('watch-sound').addEventListener('click', () => {
      client.resumePlayback();
      $('watch-sound').hidden = true;
    });
    $('watch-leave').addEventListener('click', () => {
      client.leave();
      global.location.href = url('/console/supervision');
    });
    global.addEventListener('pagehide', () => client.leave());
    client.start();
  }

  // ---- the patrol wall ----------------------------------------------------------------------

  async function patrolPage() {
    const grid = kit.config.grid;
    const perPage = grid * grid;
    const intervalMs = kit.config.intervalS * 1000;
    const wall = $('patrol-wall');
    wall.style.setProperty('--patrol-columns', String(grid));
    const status = $('patrol-status');
    const patrol = {
      ready: false, page: 0, pages: 0, shown: [], history: [], enlarged: null, paused: false,
    };
    global.lighthousePatrol = patrol;

    let scopePath = null;
    if (kit.config.scope) scopePath = (await api('GET', '/api/org/' + kit.config.scope)).path;

    // one tile per slot; each holds at most one hidden client (one room) at a time
    const tiles = [];
    for (let i = 0; i < perPage; i += 1) {
      const video = el('div', { className: 'con-patrol-video' });
      const caption = el('span', { className: 'con-patrol-caption' });
      const tile = el('div', {
        className: 'con-patrol-tile', tabIndex: 0, role: 'gridcell', dataset: { slot: String(i) },
      }, [video, caption]);
      wall.appendChild(tile);
      tiles.push({ element: tile, video, caption, client: null, roomId: null });
      tile.addEventListener('click', () => (patrol.enlarged === i ? shrink() : enlarge(i)));
    }

    let meetings = [];
    let timer = null;

    async function loadMeetings() {
      const reply = await api('GET', '/api/supervision/live');
      meetings = reply.meetings.filter((m) => m.main_publication
        && (!scopePath || m.org.path.startsWith(scopePath)));
      patrol.pages = Math.max(1, Math.ceil(meetings.length / perPage));
      $('patrol-empty').hidden = meetings.length > 0;
    }

    function release(tile) {
      if (tile.client) tile.client.leave();
      tile.client = null;
      tile.roomId = null;
      tile.video.textContent = '';
      tile.caption.textContent = '';
      tile.element.classList.remove('con-patrol-live');
    }

    async function fill(tile, meeting) {
      if (tile.roomId === meeting.room_id) return;
      release(tile);
      tile.roomId = meeting.room_id;
      tile.caption.textContent = meeting.org.name + ' · ' + (meeting.meeting ? meeting.meeting.topic : meeting.room_name);
      tile.video.textContent = t('waiting');
      const client = await hiddenClient(meeting.room_id, 'patrol', { kinds: ['video'] });
      if (tile.roomId !== meeting.room_id) { // the wall moved on while the token came
        return;
      }
      tile.client = client;
      client.on('subscriptionadded', ({ subscription }) => {
        const video = subscription.videoElement;
        video.muted = patrol.enlarged === null || tiles[patrol.enlarged] !== tile;
        tile.video.textContent = '';
        tile.video.appendChild(video);
        tile.element.classList.add('con-patrol-live');
      });
      client.start();
    }

    async function show(page) {
      patrol.page = page;
      const group = meetings.slice(page * perPage, (page + 1) * perPage);
      patrol.shown = group.map((m) => m.room_id);
      patrol.history.push(patrol.shown.slice());
      status.textContent = t('pageOf', { page: page + 1, pages: patrol.pages, count: meetings.length });
      // tiles without a meeting in this group let go of theirs first: fewer at once
      tiles.forEach((tile, i) => { if (!group[i]) release(tile); });
      await Promise.all(group.map((meeting, i) => fill(tiles[i], meeting).catch((error) => {
        console.warn('patrol tile', meeting.room_id, error);
        release(tiles[i]);
      })));
    }

    async function advance() {
      await loadMeetings();
      await show(meetings.length ? (patrol.page + 1) % patrol.pages : 0);
    }

    function schedule() {
      clearTimeout(timer);
      if (patrol.paused || patrol.enlarged !== null) return;
      timer = setTimeout(() => advance().catch((e) => console.warn(e)).finally(schedule), intervalMs);
    }

    function enlarge(i) {
      const tile = tiles[i];
      if (!tile.client) return;
      shrink();
      patrol.enlarged = i;
      tile.element.classList.add('con-patrol-enlarged');
      tile.client.setKinds(['audio', 'video']); // its sound too, only for this one
      clearTimeout(timer); // the wall holds still while one is looked at closely
    }

    function shrink() {
      if (patrol.enlarged === null) return;
      const tile = tiles[patrol.enlarged];
      patrol.enlarged = null;
      tile.element.classList.remove('con-patrol-enlarged');
      if (tile.client) tile.client.setKinds(['video']);
      schedule();
    }

    function togglePause() {
      patrol.paused = !patrol.paused;
      $('patrol-pause').textContent = patrol.paused ? t('resume') : t('pause');
      if (patrol.paused) status.textContent = t('paused');
      schedule();
    }

    $('patrol-pause').addEventListener('click', togglePause);
    $('patrol-next').addEventListener('click', () => advance().then(schedule));
    wall.addEventListener('keydown', (event) => {
      const focused = tiles.findIndex((tile) => tile.element === global.document.activeElement);
      const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -grid, ArrowDown: grid };
      if (event.key in moves && focused >= 0) {
        event.preventDefault();
        const next = focused + moves[event.key];
        if (next >= 0 && next < tiles.length) tiles[next].element.focus();
      } else if (event.key === 'Enter' && focused >= 0) {
        event.preventDefault();
        enlarge(focused);
      }
    });
    global.document.addEventListener('keydown', (event) => {
      if (event.target.closest && event.target.closest('input, select, textarea')) return;
      if (event.key === 'Escape') shrink();
      else if (event.key === ' ' && !event.target.closest('button')) { event.preventDefault(); togglePause(); }
      else if (event.key === 'n' || event.key === 'N' || event.key === 'PageDown') advance().then(schedule);
    });
    global.addEventListener('pagehide', () => tiles.forEach(release));

    await loadMeetings();
    await show(0);
    tiles[0].element.focus();
    patrol.ready = true;
    schedule();
  }

  // ---- the supervision log ------------------------------------------------------------------

  async function supervisionLogPage() {
    const form = $('log-form');
    async function search() {
      const query = new URLSearchParams();
      for (const name of ['q', 'from', 'to']) {
        const value = $('log-' + name).value.trim();
        if (value) query.set(name, value);
      }
      const reply = await api('GET', '/api/supervision/views?' + query.toString());
      const rows = reply.views.map((v) => el('tr', {}, [
        el('td', {}, v.supervisor_name),
        el('td', {}, orDash(v.room_name)),
        el('td', {}, t(v.mode)),
        el('td', {}, dateTime(v.started_at)),
        el('td', {}, v.ended_at ? dateTime(v.ended_at) : t('stillWatching')),
        el('td', { className: 'num' }, v.duration_s === null || v.duration_s === undefined
          ? '—' : kit.mmss(v.duration_s, true)),
      ]));
      fillTable($('log-views'), rows, 'log-empty');
    }
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      search().catch((error) => kit.showPageError(error));
    });
    await search();
  }

  view.registerPage('supervision', supervisionPage);
  view.registerPage('watch', watchPage);
  view.registerPage('patrol', patrolPage);
  view.registerPage('supervisionLog', supervisionLogPage);
})(window);
