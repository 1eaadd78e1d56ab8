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
      // minted just now for this signed-in person's own action: it moves here
      takeOver: true,
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
    // the whole area, or one township or village of it: a searchable list, not a dropdown
    // of a thousand places
    const places = await kit.loadSites(me);
    if (places.length) places[0] = Object.assign({}, places[0], { name: t('allOfArea', { org: places[0].name }) });
    kit.searchableSites(scope, places, places.length ? places[0].id : '');
    const form = $('sup-patrol-form');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      global.location.href = url('/console/supervision/patrol', {
        grid: $('sup-grid').value, interval: $('sup-interval').value, scope: scope.value,
        rooms: $('sup-rooms').value,
      });
    });

    async function refresh() {
      const reply = await api('GET', '/api/supervision/live');
      // the duty rooms are the patrol wall's other source, not meetings
      const meetings = reply.meetings.filter((meeting) => meeting.kind !== 'duty');
      const rows = meetings.map((meeting) => el('tr', { dataset: { roomId: meeting.room_id } }, [
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

  // ---- what supervision looks at: the venues' cameras ----------------------------------

  function cameraRank(publication) {
    if (publication.source === 'content') return 1;
    return publication.role === 'main' ? 0 : 2;
  }

  /** A room's cameras (and a shared screen), the main venue first, then by venue name. */
  function venueCameras(publications) {
    return publications
      .filter((p) => p.source !== 'floor' && (p.kinds || []).includes('video'))
      .sort((a, b) => cameraRank(a) - cameraRank(b)
        || String(a.name).localeCompare(String(b.name), 'zh'));
  }

  // ---- a hidden drop-in ------------------------------------------------------------------
  // Every venue's camera in a grid (a page of DROP_IN_PER_PAGE at a time), the one chosen
  // large and heard; the main venue is chosen first.

  const DROP_IN_PER_PAGE = 12;

  async function watchPage() {
    const stage = $('watch-stage');
    const state = $('watch-state');
    const message = $('watch-message');
    state.textContent = t('connecting');
    let page = 0;
    let chosen = null;
    const tiles = new Map(); // publication id -> tile element

    function renderPager(count, pages) {
      $('watch-pager').hidden = pages <= 1;
      $('watch-page').textContent = t('venuesPage', { page: page + 1, pages, count });
      $('watch-prev').disabled = page === 0;
      $('watch-next').disabled = page >= pages - 1;
    }

    function onPage(publications) {
      const cameras = venueCameras(publications);
      const pages = Math.max(1, Math.ceil(cameras.length / DROP_IN_PER_PAGE));
      page = Math.min(page, pages - 1);
      renderPager(cameras.length, pages);
      kit.showAlert(message, cameras.length ? '' : t('nothingShown'), 'info');
      return cameras.slice(page * DROP_IN_PER_PAGE, (page + 1) * DROP_IN_PER_PAGE)
        .map((p) => p.publication_id);
    }

    let client;
    try {
      client = await hiddenClient(kit.config.roomId, 'drop_in', { policy: onPage });
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

    function choose(publicationId) {
      chosen = publicationId;
      for (const [id, tile] of tiles) {
        tile.classList.toggle('is-large', id === chosen);
        tile.querySelector('video').muted = id !== chosen; // only the large one is heard
      }
      global.lighthouseWatch.chosen = chosen;
    }

    function chooseFirst() {
      const order = venueCameras(Array.from(tiles.keys()).map((id) => client.publications[id])
        .filter(Boolean));
      choose(order.length ? order[0].publication_id : null);
    }

    client.on('joined', () => { state.textContent = t('live'); });
    client.on('subscriptionadded', ({ subscription }) => {
      const publication = subscription.publication || client.publications[subscription.publicationId] || {};
      const video = subscription.videoElement;
      video.className = 'con-watch-video';
      const name = publication.source === 'content' ? t('content')
        : (publication.role === 'main' ? t('mainVenue') + ' · ' : '') + (publication.name || '');
      const tile = el('figure', {
        className: 'con-watch-tile', dataset: { publicationId: subscription.publicationId },
      }, [video, el('figcaption', { className: 'con-watch-label' }, name)]);
      tile.addEventListener('click', () => choose(subscription.publicationId));
      tiles.set(subscription.publicationId, tile);
      stage.appendChild(tile);
      if (chosen === null || !tiles.has(chosen) || publication.role === 'main') chooseFirst();
      else video.muted = true;
    });
    client.on('subscriptionremoved', ({ subscription }) => {
      const tile = tiles.get(subscription.publicationId);
      if (tile) tile.remove();
      tiles.delete(subscription.publicationId);
      if (chosen === subscription.publicationId) chooseFirst();
    });
    client.on('autoplayblocked', () => { $('watch-sound').hidden = false; });
    $('watch-sound').addEventListener('click', () => {
      client.resumePlayback();
      $('watch-sound').hidden = true;
    });
    $('watch-prev').addEventListener('click', () => { page = Math.max(0, page - 1); client.setPolicy(onPage); });
    $('watch-next').addEventListener('click', () => { page += 1; client.setPolicy(onPage); });
    $('watch-leave').addEventListener('click', () => {
      client.leave();
      global.location.href = url('/console/supervision');
    });
    global.addEventListener('pagehide', () => client.leave());
    client.start();
  }

  // ---- the patrol wall ----------------------------------------------------------------------
  // Its tiles are the village rooms' cameras of the live meetings, labelled with the
  // venue's name, a page of grid x grid at a time; one hidden viewer per meeting feeds all
  // of its tiles on the page. A tile with nothing to show says why.

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

    const tiles = [];
    for (let i = 0; i < perPage; i += 1) {
      const video = el('div', { className: 'con-patrol-video' });
      const caption = el('span', { className: 'con-patrol-caption' });
      const tile = el('div', {
        className: 'con-patrol-tile', tabIndex: 0, role: 'gridcell', dataset: { slot: String(i) },
      }, [video, caption]);
      wall.appendChild(tile);
      tiles.push({ element: tile, video, caption, entry: null });
      tile.addEventListener('click', () => (patrol.enlarged === i ? shrink() : enlarge(i)));
    }

    let entries = []; // {roomId, name, topic, publicationId}: one per venue of a live meeting
    const viewers = new Map(); // room id -> {client, wanted: Set of publication ids}
    let timer = null;

    async function loadMeetings() {
      const reply = await api('GET', '/api/supervision/live');
      entries = [];
      const duty = kit.config.rooms === 'duty';
      for (const meeting of reply.meetings) {
        if (scopePath && !meeting.org.path.startsWith(scopePath)) continue;
        if ((meeting.kind === 'duty') !== duty) continue;
        if (duty) {
          // one tile per duty room: the village, its camera, who is in now
          const venue = (meeting.venue_cameras || [])[0] || {};
          const inView = meeting.in_view || [];
          entries.push({
            roomId: meeting.room_id,
            name: meeting.org.name + ' ' + t('dutyRoom'),
            topic: inView.length ? t('inNow', { names: inView.join('、') }) : t('nobodyIn'),
            publicationId: venue.publication_id || null,
          });
          continue;
        }
        const topic = meeting.meeting ? meeting.meeting.topic : meeting.room_name;
        for (const venue of meeting.venue_cameras || []) {
          entries.push({
            roomId: meeting.room_id, name: venue.name, topic, publicationId: venue.publication_id,
          });
        }
      }
      patrol.pages = Math.max(1, Math.ceil(entries.length / perPage));
      $('patrol-empty').hidden = entries.length > 0;
      if (duty) $('patrol-empty').textContent = t('noDutyRoom');
    }

    function say(tile, text) {
      tile.video.replaceChildren(el('span', { className: 'con-patrol-why' }, text));
      tile.element.classList.remove('con-patrol-live');
    }

    function attach(roomId, subscription) {
      for (const tile of tiles) {
        if (!tile.entry || tile.entry.roomId !== roomId) continue;
        if (tile.entry.publicationId !== subscription.publicationId) continue;
        const video = subscription.videoElement;
        video.muted = patrol.enlarged === null || tiles[patrol.enlarged] !== tile;
        tile.video.replaceChildren(video);
        tile.element.classList.add('con-patrol-live');
      }
    }

    async function viewer(roomId) {
      let held = viewers.get(roomId);
      if (held) return held;
      held = { client: null, wanted: new Set() };
      viewers.set(roomId, held);
      const client = await hiddenClient(roomId, 'patrol', {
        kinds: ['video'],
        policy: () => Array.from(held.wanted),
      });
      if (viewers.get(roomId) !== held) { // the wall moved on while the token came
        return held;
      }
      held.client = client;
      client.on('subscriptionadded', ({ subscription }) => attach(roomId, subscription));
      client.on('subscriptionremoved', ({ subscription }) => {
        for (const tile of tiles) {
          if (tile.entry && tile.entry.roomId === roomId
            && tile.entry.publicationId === subscription.publicationId) say(tile, t('cameraStopped'));
        }
      });
      client.start();
      return held;
    }

    function letGo(roomId) {
      const held = viewers.get(roomId);
      viewers.delete(roomId);
      if (held && held.client) held.client.leave();
    }

    async function show(page) {
      patrol.page = page;
      const group = entries.slice(page * perPage, (page + 1) * perPage);
      patrol.shown = group.map((entry) => entry.roomId);
      patrol.history.push(patrol.shown.slice());
      status.textContent = t('pageOf', { page: page + 1, pages: patrol.pages, count: entries.length });
      const rooms = new Set(patrol.shown);
      // meetings no longer on the wall let go of their viewers first: fewer at once
      for (const roomId of Array.from(viewers.keys())) if (!rooms.has(roomId)) letGo(roomId);
      tiles.forEach((tile, i) => {
        const entry = group[i] || null;
        tile.entry = entry;
        tile.caption.textContent = entry ? entry.name + ' · ' + entry.topic : '';
        if (!entry) {
          tile.video.replaceChildren();
          tile.element.classList.remove('con-patrol-live');
        } else {
          say(tile, entry.publicationId ? t('waiting') : t('noCamera'));
        }
      });
      await Promise.all(Array.from(rooms).map(async (roomId) => {
        try {
          const held = await viewer(roomId);
          held.wanted = new Set(group.filter((e) => e.roomId === roomId && e.publicationId)
            .map((e) => e.publicationId));
          if (!held.client) return;
          held.client.setPolicy(() => Array.from(held.wanted));
          for (const subscription of Object.values(held.client.subscriptions)) {
            attach(roomId, subscription); // kept from the last page
          }
        } catch (error) {
          console.warn('patrol room', roomId, error);
          letGo(roomId);
          for (const tile of tiles) if (tile.entry && tile.entry.roomId === roomId) say(tile, t('unavailable'));
        }
      }));
    }

    async function advance() {
      await loadMeetings();
      await show(entries.length ? (patrol.page + 1) % patrol.pages : 0);
    }

    function schedule() {
      clearTimeout(timer);
      if (patrol.paused || patrol.enlarged !== null) return;
      timer = setTimeout(() => advance().catch((e) => console.warn(e)).finally(schedule), intervalMs);
    }

    function viewerOf(tile) {
      const held = tile.entry ? viewers.get(tile.entry.roomId) : null;
      return held && held.client ? held.client : null;
    }

    function enlarge(i) {
      const tile = tiles[i];
      const client = viewerOf(tile);
      if (!client || !tile.element.classList.contains('con-patrol-live')) return;
      shrink();
      patrol.enlarged = i;
      tile.element.classList.add('con-patrol-enlarged');
      client.setKinds(['audio', 'video']); // its sound too, only for this one
      clearTimeout(timer); // the wall holds still while one is looked at closely
    }

    function shrink() {
      if (patrol.enlarged === null) return;
      const tile = tiles[patrol.enlarged];
      patrol.enlarged = null;
      tile.element.classList.remove('con-patrol-enlarged');
      const client = viewerOf(tile);
      if (client) client.setKinds(['video']);
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
    global.addEventListener('pagehide', () => Array.from(viewers.keys()).forEach(letGo));

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
