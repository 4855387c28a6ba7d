/* kchat browser client: the HTTP API and the live SSE event stream.
 *
 * The page's scripts are loaded in order by index.html (core.js, api.js,
 * session.js, friends.js, rooms.js, room-view.js, reads.js, app.js). They
 * share one namespace object, window.kchat, set up by core.js: each file adds
 * what the others use to it at its end. Names from core.js are copied into a
 * file when it loads; names from the other files are looked up on the
 * namespace (k.name) when called, so files may call each other either way.
 *
 * Security rule for this file: every piece of text that comes from a user or
 * from the server is put into the page with textContent / createTextNode or as
 * an attribute value via setAttribute/dataset. Never innerHTML with data, no
 * inline handlers, no eval.
 */
(function (k) {
  'use strict';

  var dom = k.dom, state = k.state, showError = k.showError;

  // ---------- HTTP ----------

  function ApiError(status, errorCode, errorMessage) {
    this.name = 'ApiError';
    this.status = status;
    this.errorCode = errorCode;
    this.message = errorMessage;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function NetworkError(cause) {
    this.name = 'NetworkError';
    this.message = 'Cannot reach the server. Check your connection and try again.';
    this.cause = cause;
  }
  NetworkError.prototype = Object.create(Error.prototype);

  /* api('POST', '/api/login', {..}) -> Promise<body>.
   * Rejects with ApiError (non-2xx) or NetworkError (no answer).
   * A 401 on anything but login/register means the session is gone: the page
   * switches to the sign-in form. */
  function api(method, path, body, opts) {
    opts = opts || {};
    var init = {
      method: method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Accept': 'application/json' }
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (txt) {
        var data = null;
        if (txt) {
          try { data = JSON.parse(txt); } catch (e) { data = null; }
        }
        if (res.ok) return data || {};
        var code = (data && data.errorCode) || ('HTTP_' + res.status);
        var msg = (data && data.errorMessage) || ('Request failed (HTTP ' + res.status + ').');
        var err = new ApiError(res.status, code, msg);
        if (res.status === 401 && !opts.authCall) {
          k.onUnauthenticated(opts.quiet ? '' : (msg || 'Please log in.'));
        }
        throw err;
      });
    }, function (e) {
      throw new NetworkError(e);
    });
  }

  // Friendlier words for the codes of PROTOCOL.md section 5 (and the
  // gateway's TIMEOUT / UNAVAILABLE); the server's sentence is kept too.
  var ERROR_HINTS = {
    NOT_A_MEMBER: 'You are not a member of this room (any more).',
    ROOM_NOT_FOUND: 'This room does not exist.',
    NOT_A_FRIEND: 'Only people on your friends list can be added.',
    USER_NOT_FOUND: 'No such user.',
    TIMEOUT: 'The server did not answer in time. Please try again.',
    UNAVAILABLE: 'The server is unavailable right now. Please try again shortly.'
  };

  /* Shows an error in the banner. `what` (optional) says what failed, e.g.
   * "Could not invite". ApiErrors show the server's sentence and its code. */
  function reportError(e, what) {
    var prefix = typeof what === 'string' && what ? what + ': ' : '';
    if (e instanceof ApiError) {
      if (e.status === 401 && state.me === null && e.errorCode === 'UNAUTHENTICATED') return;
      var text = e.message || ERROR_HINTS[e.errorCode] || 'Request failed.';
      var hint = ERROR_HINTS[e.errorCode];
      if (hint && hint !== text) text = hint + ' ' + text;
      if (e.errorCode && !/^HTTP_/.test(e.errorCode)) text += ' (' + e.status + ' ' + e.errorCode + ')';
      showError(prefix + text);
    } else if (e instanceof NetworkError) {
      showError(prefix + e.message);
    } else {
      showError(prefix + 'Something went wrong: ' + (e && e.message ? e.message : String(e)));
      if (window.console) console.error(e);
    }
  }

  function busy(button, on) {
    if (!button) return;
    button.disabled = !!on;
    if (on) button.setAttribute('aria-busy', 'true');
    else button.removeAttribute('aria-busy');
  }

  // ---------- live events ----------

  function setConn(s) {
    var c = dom['conn-state'];
    c.dataset.state = s;
    c.textContent = s;
    c.title = {
      connected: 'Live updates are on',
      connecting: 'Connecting to live updates…',
      reconnecting: 'Connection lost; reconnecting…',
      disconnected: 'Live updates are off; retrying…',
      offline: 'Not signed in'
    }[s] || s;
  }

  function openEvents() {
    closeEvents();
    if (typeof window.EventSource !== 'function') {
      setConn('disconnected');
      showError('This browser does not support live updates (EventSource).');
      return;
    }
    setConn('connecting');
    var es = new EventSource('/api/events');
    state.es = es;
    es.addEventListener('open', function () {
      if (state.es !== es) return;
      setConn('connected');
      if (state.esWasClosed) {
        // A new EventSource has no Last-Event-ID: catch up by re-reading.
        state.esWasClosed = false;
        k.refreshRooms().catch(reportError);
        if (state.currentRoomId) k.openRoom(state.currentRoomId);
      }
    });
    es.addEventListener('error', function () {
      if (state.es !== es) return;
      if (es.readyState === EventSource.CONNECTING) {
        setConn('reconnecting'); // the browser retries with Last-Event-ID
        return;
      }
      // CLOSED: the server refused (e.g. 401) or answered with a non-SSE body.
      setConn('disconnected');
      es.close();
      state.es = null;
      state.esWasClosed = true;
      // find out whether the session is still good; if so, try again later
      api('GET', '/api/friends', undefined, { quiet: false }).then(function () {
        if (state.me === null || state.es) return;
        state.esManualRetry = setTimeout(function () {
          state.esManualRetry = null;
          if (state.me !== null && !state.es) openEvents();
        }, 3000);
      }, function (e) {
        if (state.me === null || state.es) return;
        if (e instanceof ApiError && e.status === 401) return; // onUnauthenticated ran
        state.esManualRetry = setTimeout(function () {
          state.esManualRetry = null;
          if (state.me !== null && !state.es) openEvents();
        }, 5000);
      });
    });
    es.addEventListener('chat', function (ev) {
      if (state.es !== es) return;
      var d = parseEvent(ev);
      if (d) onChatEvent(d);
    });
    es.addEventListener('room', function (ev) {
      if (state.es !== es) return;
      var d = parseEvent(ev);
      if (d) onRoomEvent(d);
    });
    es.addEventListener('members', function (ev) {
      if (state.es !== es) return;
      var d = parseEvent(ev);
      if (d) onMembersEvent(d);
    });
    es.addEventListener('read', function (ev) {
      if (state.es !== es) return;
      var d = parseEvent(ev);
      if (d) onReadEvent(d);
    });
    es.addEventListener('presence', function (ev) {
      if (state.es !== es) return;
      var d = parseEvent(ev);
      if (d) k.onPresenceEvent(d);
    });
    // The gateway could not resume from our Last-Event-ID (the log was reset
    // or is behind it): the stream goes on live; re-read what we show.
    es.addEventListener('reset', function () {
      if (state.es !== es) return;
      k.refreshRooms().catch(reportError);
      if (state.currentRoomId) k.openRoom(state.currentRoomId);
    });
  }

  function closeEvents() {
    if (state.esManualRetry) { clearTimeout(state.esManualRetry); state.esManualRetry = null; }
    if (state.es) { state.es.close(); state.es = null; }
    state.esWasClosed = false;
  }

  function parseEvent(ev) {
    try {
      var d = JSON.parse(ev.data);
      return (d && typeof d === 'object') ? d : null;
    } catch (e) {
      return null;
    }
  }

  function onChatEvent(d) {
    if (!d.roomId || typeof d.seq !== 'number') return;
    if (state.gone.has(d.roomId)) return;   // sent before we left
    var r = state.rooms.get(d.roomId);
    var known = !!r;
    if (!r) {
      // a room we have not heard of (its room event may still be coming)
      r = k.upsertRoom({ roomId: d.roomId, roomName: '', participants: [] }, true);
      k.refreshRooms().catch(reportError);
    }
    var before = k.unreadOf(r);
    // shows it when the room is open, settles our own pending send, moves
    // lastSeq (and our cursor for our own message), marks it read if in view
    k.addMessage(d.roomId, d);
    if (!known || k.unreadOf(r) !== before) k.renderRooms();
  }

  // room event: a room we are in was created, or we were invited
  function onRoomEvent(d) {
    if (!d.roomId) return;
    var known = state.rooms.has(d.roomId);
    k.upsertRoom({ roomId: d.roomId, roomName: d.roomName, participants: d.participants }, true);
    k.renderRooms();
    // an invitee's cursor starts at the room's lastSeq: learn both
    if (!known) k.refreshRooms().catch(reportError);
  }

  // members event {roomId, participants, added, removed}
  function onMembersEvent(d) {
    if (!d.roomId) return;
    var removed = Array.isArray(d.removed) ? d.removed : [];
    if (removed.indexOf(state.me) >= 0) {
      k.dropRoom(d.roomId, 'You left %s.');   // only we can take ourselves out
      return;
    }
    var r = state.rooms.get(d.roomId);
    if (!r) {
      if (!state.gone.has(d.roomId)) k.refreshRooms().catch(reportError);
      return;
    }
    if (Array.isArray(d.participants)) r.participants = d.participants.slice();
    var v = state.view;
    if (v && v.roomId === d.roomId) removed.forEach(function (id) { v.reads.delete(id); });
    k.renderRooms();
    k.noteNewMembers(d.roomId, Array.isArray(d.added) ? d.added : []);
    k.renderSeenBy();
  }

  // read event {roomId, readerId, readSeq}: our own cursor (from any tab) or a receipt
  function onReadEvent(d) {
    if (!d.roomId || !d.readerId || typeof d.readSeq !== 'number') return;
    var r = state.rooms.get(d.roomId);
    if (d.readerId === state.me) {
      if (r && d.readSeq > r.readSeq) {
        r.readSeq = d.readSeq;
        k.renderRooms();
      }
      return;
    }
    var v = state.view;
    if (v && v.roomId === d.roomId && !(v.reads.get(d.readerId) >= d.readSeq)) {
      v.reads.set(d.readerId, d.readSeq);
      k.renderSeenBy();
    }
  }

  // ---------- shared through window.kchat ----------

  k.ApiError = ApiError;
  k.NetworkError = NetworkError;
  k.api = api;
  k.busy = busy;
  k.closeEvents = closeEvents;
  k.openEvents = openEvents;
  k.reportError = reportError;
  k.setConn = setConn;
})(window.kchat);
