/*
 * The command view (/console/command): emergency calls from the villages, live.
 *
 * An EventSource on /api/emergencies/events (the session cookie signs it) tells the page
 * of every call raised, acknowledged or ended below the caller's unit; on each event and
 * on every (re)connection the page reloads the list from the API, so a dropped stream
 * loses nothing. A call not yet acknowledged raises the alert: a red banner, a repeating
 * tone and a marked tab title. Each active call's camera plays at once through
 * lighthouse.js (POST /api/emergencies/{id}/watch gives the token).
 *
 * Exposes window.lighthouseCommand = {ready, connected, alerting, active: [ids],
 * playing: {id: true once its video plays}, events} for tests.
 */
(function (global) {
  'use strict';

  const view = global.lighthouseConsole;
  const kit = view.kit;
  const { api, t, el, $, dateTime, orDash, fillTable } = kit;
  const document = global.document;
  const ALARM_EVERY_MS = 1500;

  const command = {
    ready: false, connected: false, alerting: false, active: [], playing: {}, events: 0,
  };
  global.lighthouseCommand = command;

  // ---- the alarm tone ---------------------------------------------------------------------

  class Alarm {
    constructor() {
      this.context = null;
      this.timer = null;
    }

    start() {
      if (this.timer) return;
      const AudioContext = global.AudioContext || global.webkitAudioContext;
      if (!AudioContext) return;
      if (!this.context) this.context = new AudioContext();
      // without a click on this page first, browsers may keep the context suspended
      $('cmd-sound').hidden = this.context.state === 'running';
      this.timer = global.setInterval(() => this.beep(), ALARM_EVERY_MS);
      this.beep();
    }

    beep() {
      const context = this.context;
      if (!context || context.state !== 'running') return;
      const tone = context.createOscillator();
      const gain = context.createGain();
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, context.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, context.currentTime + 0.5);
      tone.connect(gain).connect(context.destination);
      tone.start();
      tone.stop(context.currentTime + 0.5);
    }

    stop() {
      global.clearInterval(this.timer);
      this.timer = null;
      $('cmd-sound').hidden = true;
    }

    async unlock() {
      if (this.context) await this.context.resume();
      $('cmd-sound').hidden = true;
    }
  }

  // ---- one call: its card and its media ---------------------------------------------------

  class CallCard {
    constructor(emergency, onChange) {
      this.id = emergency.id;
      this.client = null;
      this.talking = false;
      this.onChange = onChange;
      this.stage = el('div', { className: 'con-emergency-video' }, t('waitingVideo'));
      this.title = el('h3', { className: 'con-emergency-title' });
      this.detail = el('p', { className: 'con-emergency-detail' });
      this.status = el('p', { className: 'con-emergency-status' });
      // the alert asks for an acknowledgement: that is the primary (solid) button
      this.ackButton = el('button', {
        type: 'button', className: 'con-button', dataset: { ack: '' },
      }, t('acknowledge'));
      this.talkButton = el('button', {
        type: 'button', className: 'con-button con-button-quiet', dataset: { talk: '' },
      }, t('talk'));
      this.endButton = el('button', {
        type: 'button', className: 'con-button con-button-quiet', dataset: { end: '' },
      }, t('end'));
      this.element = el('article', {
        className: 'con-emergency', dataset: { emergencyId: String(this.id) },
      }, [
        this.stage,
        el('div', { className: 'con-emergency-info' }, [
          this.title, this.detail, this.status,
          el('div', { className: 'con-emergency-actions' }, [this.ackButton, this.talkButton, this.endButton]),
        ]),
      ]);
      this.ackButton.addEventListener('click', () => this.act('acknowledge'));
      this.endButton.addEventListener('click', () => {
        if (global.confirm(t('confirmEnd'))) this.act('end');
      });
      this.talkButton.addEventListener('click', () => this.connect(true));
      this.update(emergency);
    }

    update(emergency) {
      this.emergency = emergency;
      this.title.textContent = emergency.org.name;
      this.detail.textContent = [emergency.reporter_name, t('since', { time: dateTime(emergency.started_at) }),
        emergency.note || ''].filter(Boolean).join(' · ');
      this.status.textContent = emergency.acknowledged_by
        ? t('acknowledged', { name: emergency.acknowledged_by }) : t('notAcknowledged');
      this.ackButton.hidden = Boolean(emergency.acknowledged_at);
      this.element.classList.toggle('con-emergency-new', !emergency.acknowledged_at);
    }

    async act(action) {
      try {
        await api('POST', '/api/emergencies/' + this.id + '/' + action);
        kit.showPageError(null);
      } catch (error) {
        kit.showPageError(error);
      }
      await this.onChange();
    }

    /** See and hear the caller; with `talk`, the command's microphone goes out too. */
    async connect(talk) {
      if (this.talking && talk) return;
      const grant = await api('POST', '/api/emergencies/' + this.id + '/watch');
      if (this.client) this.client.leave();
      this.talking = Boolean(talk);
      this.talkButton.textContent = this.talking ? t('talking') : t('talk');
      this.talkButton.disabled = this.talking;
      const Client = global.LighthouseClient;
      const client = new Client({
        token: grant.token,
        // minted just now for this signed-in person's own action: it moves here
        takeOver: true,
        publish: this.talking,
        mediaConstraints: { audio: true, video: false },
        policy: Client.policies.all,
      });
      this.client = client;
      client.on('subscriptionadded', ({ subscription }) => {
        const video = subscription.videoElement;
        video.className = 'con-emergency-player';
        this.stage.textContent = '';
        this.stage.appendChild(video);
        video.addEventListener('playing', () => { command.playing[this.id] = true; }, { once: true });
      });
      client.on('autoplayblocked', () => { $('cmd-sound').hidden = false; });
      client.start();
    }

    close() {
      if (this.client) this.client.leave();
      this.client = null;
      delete command.playing[this.id];
      this.element.remove();
    }
  }

  // ---- the page -----------------------------------------------------------------------------

  async function commandPage() {
    const alarm = new Alarm();
    const cards = new Map(); // emergency id -> CallCard
    const title = document.title;
    let loading = null;

    function raiseAlert(waiting) {
      const banner = $('cmd-alert');
      command.alerting = waiting.length > 0;
      banner.hidden = !command.alerting;
      if (!command.alerting) {
        alarm.stop();
        document.title = title;
        return;
      }
      const first = waiting[0];
      $('cmd-alert-text').textContent = waiting.length === 1
        ? t('alert', { place: first.org.name, caller: first.reporter_name })
        : t('alertMany', { count: waiting.length });
      document.title = '【!】' + title;
      alarm.start();
    }

    async function load() {
      const { emergencies } = await api('GET', '/api/emergencies');
      const active = emergencies.filter((e) => e.status === 'active');
      for (const [id, card] of cards) {
        if (!active.some((e) => e.id === id)) {
          card.close();
          cards.delete(id);
        }
      }
      for (const emergency of active) {
        let card = cards.get(emergency.id);
        if (card) {
          card.update(emergency);
          continue;
        }
        card = new CallCard(emergency, reload);
        cards.set(emergency.id, card);
        $('cmd-list').prepend(card.element);
        card.connect(false).catch((error) => kit.showPageError(error));
      }
      command.active = active.map((e) => e.id);
      $('cmd-empty').hidden = active.length > 0;
      raiseAlert(active.filter((e) => !e.acknowledged_at));
      const earlier = emergencies.filter((e) => e.status !== 'active').map((e) => el('tr', {}, [
        el('td', {}, e.org.name),
        el('td', {}, e.reporter_name),
        el('td', {}, orDash(e.note)),
        el('td', {}, dateTime(e.started_at)),
        el('td', {}, orDash(e.acknowledged_by)),
        el('td', {}, dateTime(e.ended_at)),
      ]));
      fillTable($('cmd-history'), earlier, 'cmd-history-empty');
    }

    // one load at a time; events that come during a load ask for one more
    async function reload() {
      if (loading) {
        loading.again = true;
        return loading.promise;
      }
      loading = { again: false };
      loading.promise = (async () => {
        try {
          do {
            loading.again = false;
            await load();
          } while (loading.again);
        } finally {
          loading = null;
        }
      })();
      return loading.promise;
    }

    $('cmd-sound').addEventListener('click', () => {
      alarm.unlock();
      for (const card of cards.values()) if (card.client) card.client.resumePlayback();
    });
    const link = $('cmd-link');
    const events = new global.EventSource('/api/emergencies/events');
    events.addEventListener('ready', () => {
      command.connected = true;
      link.textContent = t('linkUp');
      reload().catch((error) => kit.showPageError(error));
    });
    events.addEventListener('emergency', () => {
      command.events += 1;
      reload().catch((error) => kit.showPageError(error));
    });
    events.addEventListener('error', () => {
      command.connected = false;
      link.textContent = t('linkDown'); // EventSource reconnects by itself
    });
    global.addEventListener('pagehide', () => {
      events.close();
      for (const card of cards.values()) card.close();
    });
    await reload();
    command.ready = true;
  }

  view.registerPage('command', commandPage);
})(window);
