/*
 * TV-remote navigation: the arrow keys move focus to the nearest [data-focusable]
 * element in that direction, OK/Enter presses it (native button behaviour), Back runs
 * the page's onBack. A visible element with [data-focus-scope] (a modal overlay)
 * confines navigation to itself.
 *
 * Defines window.LighthouseRemote = {install, focusFirst, move, focusables}.
 */
(function (global) {
  'use strict';

  const document = global.document;

  const DIRECTIONS = {
    ArrowLeft: 'left', ArrowRight: 'right', ArrowUp: 'up', ArrowDown: 'down',
    Left: 'left', Right: 'right', Up: 'up', Down: 'down', // pre-2017 key names
  };
  // Old TV browsers report only keyCode.
  const KEYCODE_DIRECTIONS = { 37: 'left', 38: 'up', 39: 'right', 40: 'down' };
  // Escape on PCs; GoBack/BrowserBack and 461 (webOS), 10009 (Tizen), 8 on TV remotes.
  const BACK_KEYS = new Set(['Escape', 'Esc', 'GoBack', 'BrowserBack', 'Backspace']);
  const BACK_KEYCODES = new Set([27, 461, 10009, 8]);

  function isVisible(element) {
    if (element.disabled || element.closest('[hidden]')) return false;
    const style = global.getComputedStyle(element);
    if (style.visibility === 'hidden' || style.display === 'none') return false;
    const rect = element.getBoundingClientRect();
    return rect.width > 0 && rect.height > 0;
  }

  /** The active scope: the last visible [data-focus-scope] in document order, else the document. */
  function activeScope() {
    const scopes = Array.from(document.querySelectorAll('[data-focus-scope]')).filter(
      (scope) => !scope.hidden && scope.getClientRects().length > 0);
    return scopes.length > 0 ? scopes[scopes.length - 1] : document;
  }

  function focusables() {
    return Array.from(activeScope().querySelectorAll('[data-focusable]')).filter(isVisible);
  }

  function focusFirst() {
    const first = focusables()[0];
    if (first) first.focus({ preventScroll: true });
    return first || null;
  }

  function center(rect) {
    return { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 };
  }

  /**
   * The best candidate in one direction: it must lie ahead of the current element's
   * centre; distance along the direction counts, sideways offset counts double, so
   * a button on the same row wins over a nearer one on another row.
   */
  function nearest(from, candidates, direction) {
    const origin = center(from.getBoundingClientRect());
    let best = null;
    let bestScore = Infinity;
    for (const candidate of candidates) {
      if (candidate === from) continue;
      const point = center(candidate.getBoundingClientRect());
      const dx = point.x - origin.x;
      const dy = point.y - origin.y;
      let along;
      let across;
      if (direction === 'left') { along = -dx; across = Math.abs(dy); }
      else if (direction === 'right') { along = dx; across = Math.abs(dy); }
      else if (direction === 'up') { along = -dy; across = Math.abs(dx); }
      else { along = dy; across = Math.abs(dx); }
      if (along <= 1) continue;
      const score = along + 2 * across;
      if (score < bestScore) {
        bestScore = score;
        best = candidate;
      }
    }
    return best;
  }

  /** The element at the far end of the row (for wrapping left/right). */
  function wrapTarget(from, candidates, direction) {
    const rect = from.getBoundingClientRect();
    const sameRow = candidates.filter((c) => {
      const r = c.getBoundingClientRect();
      return r.top < rect.bottom && r.bottom > rect.top;
    });
    if (sameRow.length < 2) return null;
    const byX = sameRow.slice().sort((a, b) => center(a.getBoundingClientRect()).x -
      center(b.getBoundingClientRect()).x);
    return direction === 'right' ? byX[0] : byX[byX.length - 1];
  }

  function move(direction) {
    const candidates = focusables();
    if (candidates.length === 0) return null;
    const current = document.activeElement;
    if (!current || !candidates.includes(current)) return focusFirst();
    let next = nearest(current, candidates, direction);
    // Wrap along the control bar: pressing right on the last button reaches the first.
    if (!next && (direction === 'left' || direction === 'right')) {
      next = wrapTarget(current, candidates, direction);
    }
    if (next) next.focus({ preventScroll: true });
    return next || current;
  }

  function directionOf(event) {
    return DIRECTIONS[event.key] || KEYCODE_DIRECTIONS[event.keyCode] || null;
  }

  function isBack(event) {
    if (event.key === 'Backspace' || event.keyCode === 8) {
      // Backspace in a text field edits text.
      const target = event.target;
      if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
        return false;
      }
    }
    return BACK_KEYS.has(event.key) || BACK_KEYCODES.has(event.keyCode);
  }

  /**
   * Start listening. Options:
   *   onBack(): Back/Escape was pressed (the page hides its control bar);
   *   onWake(): any navigation key was pressed; return true if it was consumed
   *             (e.g. it showed the hidden control bar) so focus does not move too;
   *   autofocus: focus the first focusable element now (default true).
   */
  function install(options) {
    const opts = options || {};
    document.addEventListener('keydown', (event) => {
      const target = event.target;
      if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) && !isBack(event)) return;
      const direction = directionOf(event);
      if (direction) {
        event.preventDefault();
        if (opts.onWake && opts.onWake(event)) return;
        move(direction);
        return;
      }
      if (isBack(event)) {
        // Keep the kiosk browser from navigating away from the meeting.
        event.preventDefault();
        if (opts.onBack) opts.onBack(event);
        return;
      }
      if (event.key === 'Enter' || event.keyCode === 13) {
        const focused = document.activeElement;
        const onControl = focused && focusables().includes(focused);
        if (opts.onWake && opts.onWake(event)) {
          event.preventDefault();
          return;
        }
        // OK with nothing focused (focus lost to the page) picks up the first control.
        if (!onControl) {
          event.preventDefault();
          focusFirst();
        }
      }
    }, true);
    if (opts.autofocus !== false) focusFirst();
  }

  global.LighthouseRemote = { install, focusFirst, move, focusables };
})(window);
