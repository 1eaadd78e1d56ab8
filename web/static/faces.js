/*
 * Face sign-in pages of the console: a meeting's live sign-in sheet (/console/meetings/{id}/
 * signins) and a member's enrolment photos (/console/members/{id}/faces). Registered with
 * console.js (window.lighthouseConsole) and built with its helpers. Photos are <img>s of
 * the API's JPEG endpoints, sent with the session cookie: the server decides who sees them.
 *
 * The sheet exposes window.lighthouseSignins for tests: {ready, polls, sheet} (the latest
 * GET /api/meetings/{id}/signins reply).
 */
(function (global) {
  'use strict';

  const view = global.lighthouseConsole;
  const kit = view.kit;
  const { api, t, el, $, fillTable, showAlert, dateTimeSeconds, errorText } = kit;
  const SHEET_POLL_MS = 2000;
  const MAX_PHOTOS = 5;
  const MAX_PHOTO_BYTES = 5 * 1024 * 1024; // web/api/faces.py MAX_PHOTO_BYTES
  // refusals whose message (from web/api/faces.py) names each photo and what to change
  const UPLOAD_ERRORS = new Set(['photo_rejected', 'too_many_photos', 'file_too_large', 'recognition_off']);

  function photo(src, alt, className) {
    if (!src) return null;
    return el('a', { href: src, target: '_blank', rel: 'noopener' },
      el('img', { src, alt, className: className || 'con-evidence-thumb', loading: 'lazy' }));
  }

  // ---- the sign-in sheet -----------------------------------------------------------------

  function signinState(signin) {
    if (!signin) return 'none';
    if (signin.review === 'rejected') return 'rejected';
    return signin.method;
  }

  function reviewCell(row, sheet, act) {
    const signin = row.signin;
    if (signin && signin.review === 'confirmed' && signin.method === 'face') {
      return el('td', {}, t('confirmedBy', { name: signin.reviewed_by || '' }));
    }
    if (signin && signin.review === 'rejected') {
      const cell = el('td', {}, t('rejectedBy', { name: signin.reviewed_by || '' }));
      if (sheet.can_review) {
        cell.appendChild(document.createTextNode(' '));
        cell.appendChild(el('button', {
          type: 'button', className: 'con-button con-button-small', onclick: () => act('add', row),
        }, t('signInByHand')));
      }
      return cell;
    }
    if (!sheet.can_review) return el('td', {}, signin && signin.review === 'pending' ? t('pending') : '');
    if (!signin) {
      return el('td', {}, el('button', {
        type: 'button', className: 'con-button con-button-small', dataset: { action: 'add' },
        onclick: () => act('add', row),
      }, t('signInByHand')));
    }
    if (signin.method === 'face' && signin.review === 'pending') {
      return el('td', {}, [
        el('button', {
          type: 'button', className: 'con-button con-button-small', dataset: { action: 'confirm' },
          onclick: () => act('confirm', row),
        }, t('confirm')),
        ' ',
        el('button', {
          type: 'button', className: 'con-button con-button-small con-button-danger',
          dataset: { action: 'reject' }, onclick: () => act('reject', row),
        }, t('reject')),
      ]);
    }
    return el('td', {}, '');
  }

  function evidenceCard(item) {
    const kind = item.kind === 'still_picture' ? t('stillPicture')
      : item.kind === 'unknown_face' ? t('unknownFace') : t('scene');
    const lines = [
      el('strong', {}, kind),
      el('span', {}, dateTimeSeconds(item.at) + ' · ' + (item.venue || '')),
    ];
    if (item.closest_member) {
      lines.push(el('span', {}, t('closest', {
        name: item.closest_member, similarity: (item.similarity || 0).toFixed(2),
      })));
    }
    return el('figure', { className: 'con-evidence', dataset: { kind: item.kind, snapshotId: String(item.id) } }, [
      el('div', { className: 'con-evidence-photos' }, [
        photo(item.face_url, t('face')),
        photo(item.scene_url, t('scene'), 'con-evidence-scene'),
      ]),
      el('figcaption', {}, lines),
    ]);
  }

  async function signinsPage() {
    const state = { ready: false, polls: 0, sheet: null };
    global.lighthouseSignins = state;
    const meetingId = kit.config.meetingId;
    const path = '/api/meetings/' + meetingId + '/signins';
    const message = $('sig-message');
    let busy = false;

    async function act(action, row) {
      if (busy) return;
      if (action === 'reject' && !global.confirm(t('confirmReject', { name: row.name }))) return;
      busy = true;
      try {
        if (action === 'add') await api('POST', path, { member_id: row.member_id });
        else await api('POST', path + '/' + row.member_id + '/review', { decision: action });
        showAlert(message, null);
        await refresh();
      } catch (error) {
        showAlert(message, errorText(error), 'error');
      } finally {
        busy = false;
      }
    }

    function render(sheet) {
      $('sig-title').textContent = t('sheetTitle', { topic: sheet.topic });
      document.title = sheet.topic + ' · ' + document.title.split(' · ').slice(-2).join(' · ');
      $('sig-counts').textContent = t('counts', {
        signed: sheet.signed_in, expected: sheet.expected, face: sheet.by_face,
      });
      const rows = sheet.members.map((row) => {
        const signin = row.signin;
        const stateName = signinState(signin);
        const status = stateName === 'face' ? t('byFace') : stateName === 'manual' ? t('byHand')
          : stateName === 'rejected' ? t('rejected') : t('notSignedIn');
        return el('tr', { dataset: { memberId: String(row.member_id), state: stateName } }, [
          el('td', { className: 'con-strong' }, row.name),
          el('td', {}, el('span', { className: 'con-status con-signin-' + stateName }, status)),
          el('td', {}, signin ? dateTimeSeconds(signin.at) : ''),
          el('td', {}, signin && signin.venue ? signin.venue : ''),
          el('td', { className: 'num' }, signin && signin.similarity !== null ? signin.similarity.toFixed(2) : ''),
          el('td', { className: 'con-evidence-photos' }, !signin ? []
            : signin.evidence_expired && sheet.can_see_photos
              ? el('span', { className: 'con-expired' }, t('evidenceExpired'))
              : [
                photo(signin.face_url, t('face')),
                photo(signin.scene_url, t('scene'), 'con-evidence-scene'),
              ]),
          reviewCell(row, sheet, act),
        ]);
      });
      fillTable($('sig-members'), rows, 'sig-members-empty');
      const unknown = $('sig-unknown');
      unknown.replaceChildren(...sheet.unknown_faces.slice().reverse().map(evidenceCard));
      $('sig-unknown-card').hidden = sheet.unknown_faces.length === 0;
      const scenes = $('sig-snapshots');
      scenes.replaceChildren(...sheet.snapshots.slice().reverse().map(evidenceCard));
      $('sig-snapshots-card').hidden = sheet.snapshots.length === 0;
      if (!sheet.can_see_photos) showAlert(message, t('noPhotos'), 'info');
    }

    async function refresh() {
      const sheet = await api('GET', path);
      state.sheet = sheet;
      state.polls += 1;
      render(sheet);
    }

    await refresh();
    state.ready = true;
    // live while the meeting runs; a finished meeting's sheet still changes on review
    global.setInterval(() => {
      if (!busy && document.visibilityState !== 'hidden') {
        refresh().catch((error) => showAlert(message, errorText(error), 'error'));
      }
    }, SHEET_POLL_MS);
  }

  // ---- a member's enrolment photos --------------------------------------------------------

  async function facesPage() {
    const memberId = kit.config.memberId;
    const member = await api('GET', '/api/members/' + memberId);
    $('fac-title').textContent = t('facesOf', { name: member.name });
    document.title = member.name + ' · ' + document.title;
    const message = $('fac-message');
    const rejected = $('fac-rejected');

    async function load() {
      const reply = await api('GET', '/api/members/' + memberId + '/faces');
      $('fac-count').textContent = t('photoCount', { count: reply.faces.length, max: reply.max_photos });
      $('fac-photos').replaceChildren(...reply.faces.map((face) => el('figure', {
        className: 'con-evidence', dataset: { faceId: String(face.id) },
      }, [
        el('img', { src: face.photo_url, alt: t('facePhotos'), className: 'con-evidence-thumb' }),
        el('figcaption', {}, [
          el('span', {}, dateTimeSeconds(face.created_at)),
          face.current ? null : el('span', { className: 'con-warn' }, t('otherModel')),
          el('button', {
            type: 'button', className: 'con-button con-button-small con-button-danger',
            onclick: async () => {
              if (!global.confirm(t('confirmDelete'))) return;
              try {
                await api('DELETE', '/api/faces/' + face.id);
                await load();
              } catch (error) {
                showAlert(message, errorText(error), 'error');
              }
            },
          }, t('deletePhoto')),
        ]),
      ])));
      $('fac-empty').hidden = reply.faces.length > 0;
    }

    $('fac-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const files = Array.from($('fac-files').files || []);
      rejected.hidden = true;
      rejected.replaceChildren();
      if (files.length === 0 || files.length > MAX_PHOTOS) {
        showAlert(message, t('chooseFiles'), 'error');
        return;
      }
      if (files.some((file) => file.size > MAX_PHOTO_BYTES)) {
        showAlert(message, t('tooLarge'), 'error');
        return;
      }
      const form = new global.FormData();
      for (const file of files) form.append('photo', file, file.name);
      $('fac-submit').disabled = true;
      try {
        const reply = await api('POST', '/api/members/' + memberId + '/faces', form);
        showAlert(message, t('uploaded', { count: reply.enrolled.length }), 'ok');
        for (const item of reply.rejected) {
          rejected.appendChild(el('li', {}, t('notSaved', { file: item.file, message: item.message })));
        }
        rejected.hidden = reply.rejected.length === 0;
        $('fac-files').value = '';
      } catch (error) {
        // a refused upload's message names each photo and what to change
        showAlert(message, UPLOAD_ERRORS.has(error.code) ? error.message : errorText(error), 'error');
      } finally {
        $('fac-submit').disabled = false;
      }
      await load();
    });
    await load();
  }

  view.registerPage('signins', signinsPage);
  view.registerPage('faces', facesPage);
})(window);
