/* kchat browser client.
 *
 * Plain JS, no build step, no external resources. Talks to the kchat gateway
 * (same origin) through the HTTP API of PROTOCOL.md section 8 (v1.1) and
 * listens for live `chat`, `room`, `members`, `read` and `presence` events on
 * the SSE stream /api/events: unread counts, "seen by" receipts, friends'
 * presence, inviting friends into a room and leaving it.
 *
 * Security rule for this file: every piece of text that comes from a user or
 * from the server is put into the page with textContent / createTextNode or as
 * an attribute value via setAttribute/dataset. Never innerHTML with data, no
 * inline handlers, no eval.
 */
(function () {
  'use strict';

  var HISTORY_PAGE = 50;
  var SEND_RETRY_DELAYS = [500, 1000, 2000, 4000, 8000]; // ms, then give up (manual retry)
  var MAX_MESSAGE_BYTES = 4096;

  // ---------- state ----------

  var state = {
    me: null,             // logged-in userId, null when signed out
    friends: [],          // [{userId, userName, userStatus, online, lastSeen}]
    // roomId -> {roomId, roomName, participants, lastSeq, readSeq, sentRead, epoch};
    // unread = lastSeq - max(readSeq, sentRead) (sentRead: a read POST in flight)
    rooms: new Map(),
    roomEpoch: 0,         // bumped per room list fetch and per room learnt from an event
    gone: new Map(),      // roomId -> epoch when we left it / were removed: stale lists must not revive it
    currentRoomId: null,
    roomGen: 0,           // bumped each time a room is opened; stale fetches compare it
    // per open room: {roomId, seqs:Set, minSeq, maxSeq, hasMore, loadingOlder,
    //                 loaded, reads: Map(userId -> readSeq), readBusy}
    view: null,
    pending: new Map(),   // roomId -> Map(clientMsgId -> pending record)
    es: null,             // EventSource
    esManualRetry: null,  // timer for re-creating a closed EventSource
    esWasClosed: false
  };

  // ---------- DOM helpers ----------

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  var dom = {};

  function bindDom() {
    [
      'boot-view', 'auth-view', 'app-view', 'error', 'notice', 'me', 'conn-state',
      'logout', 'login-form', 'login-userId', 'login-userPw', 'login-submit',
      'reg-form', 'reg-userId', 'reg-userPw', 'reg-email', 'reg-userName', 'reg-submit',
      'status-form', 'status-input', 'status-submit', 'status-current',
      'friend-form', 'friend-input', 'friend-submit', 'friend-list', 'friend-empty', 'friend-refresh',
      'room-form', 'room-friends', 'room-friends-empty', 'room-name', 'room-create',
      'room-list', 'room-empty', 'room-refresh',
      'room-view', 'room-back', 'room-title', 'room-participants',
      'message-scroll', 'message-list', 'room-placeholder', 'load-older', 'history-state',
      'message-form', 'message-input', 'message-send',
      'room-actions', 'room-invite', 'room-leave', 'leave-confirm', 'room-leave-confirm', 'room-leave-cancel',
      'invite-form', 'invite-friends', 'invite-empty', 'invite-submit', 'invite-cancel'
    ].forEach(function (id) { dom[id] = $(id); });
  }

  // ---------- messages to the user ----------

  var noticeTimer = null;

  function showError(msg) {
    dom.error.textContent = msg;
    dom.error.hidden = !msg;
  }

  function clearError() { showError(''); }

  function showNotice(msg) {
    dom.notice.textContent = msg;
    dom.notice.hidden = !msg;
    if (noticeTimer) clearTimeout(noticeTimer);
    if (msg) noticeTimer = setTimeout(function () { showNotice(''); }, 6000);
  }

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
          onUnauthenticated(opts.quiet ? '' : (msg || 'Please log in.'));
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

  // ---------- ids ----------

  function newClientMsgId() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') {
      return window.crypto.randomUUID();
    }
    // Fallback (non-secure contexts): RFC 4122 v4 from getRandomValues.
    var b = new Uint8Array(16);
    if (window.crypto && window.crypto.getRandomValues) {
      window.crypto.getRandomValues(b);
    } else {
      for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = '';
    for (var j = 0; j < 16; j++) {
      h += (b[j] < 16 ? '0' : '') + b[j].toString(16);
      if (j === 3 || j === 5 || j === 7 || j === 9) h += '-';
    }
    return h;
  }

  function utf8Length(s) {
    if (window.TextEncoder) return new TextEncoder().encode(s).length;
    return unescape(encodeURIComponent(s)).length;
  }

  // ---------- time ----------

  function formatTime(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) return iso ? String(iso) : '';
    var now = new Date();
    var t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === now.toDateString()) return t;
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + t;
  }

  function fullTime(iso) {
    var d = iso ? new Date(iso) : new Date();
    return isNaN(d.getTime()) ? '' : d.toLocaleString();
  }

  // ---------- sign-in state ----------

  function setView(which) {
    document.body.classList.remove('booting');
    dom['boot-view'].hidden = true;
    dom['auth-view'].hidden = which !== 'auth';
    dom['app-view'].hidden = which !== 'app';
    document.body.classList.toggle('logged-in', which === 'app');
  }

  function remember(id) {
    try {
      if (id) window.localStorage.setItem('kchat.me', id);
      else window.localStorage.removeItem('kchat.me');
    } catch (e) { /* storage disabled: fine */ }
  }

  function remembered() {
    try { return window.localStorage.getItem('kchat.me'); } catch (e) { return null; }
  }

  function enterApp(userId, user) {
    state.me = userId;
    remember(userId);
    dom.me.textContent = userId;
    if (user && typeof user.userStatus === 'string') setStatusCurrent(user.userStatus);
    setView('app');
    closeRoom();
    openEvents();
    refreshFriends().catch(reportError);
    refreshRooms().catch(reportError);
  }

  function resetAppState() {
    state.me = null;
    state.friends = [];
    state.rooms = new Map();
    state.gone = new Map();
    state.pending = new Map();
    state.currentRoomId = null;
    state.roomGen++;
    state.view = null;
    dom.me.textContent = '';
    clear(dom['friend-list']);
    clear(dom['room-list']);
    clear(dom['message-list']);
    clearRoomFriendCheckboxes();
    setStatusCurrent('');
    dom['status-input'].value = '';
    document.body.classList.remove('room-open');
  }

  function onUnauthenticated(msg) {
    closeEvents();
    remember(null);
    var wasIn = state.me !== null;
    resetAppState();
    setView('auth');
    if (msg && wasIn) showError(msg);
    setConn('offline');
  }

  function setStatusCurrent(s) {
    dom['status-current'].textContent = s ? s : '—';
  }

  // ---------- forms: register, login, logout, status ----------

  function onRegister(ev) {
    ev.preventDefault();
    clearError();
    var body = {
      userId: dom['reg-userId'].value.trim(),
      userPw: dom['reg-userPw'].value,
      email: dom['reg-email'].value.trim(),
      userName: dom['reg-userName'].value.trim()
    };
    if (!body.userId || !body.userPw || !body.email || !body.userName) {
      showError('Please fill in user id, password, email and display name.');
      return;
    }
    busy(dom['reg-submit'], true);
    api('POST', '/api/users', body, { authCall: true }).then(function () {
      showNotice('Account "' + body.userId + '" created. You can log in now.');
      dom['login-userId'].value = body.userId;
      dom['reg-userPw'].value = '';
      dom['login-userPw'].focus();
    }).catch(reportError).then(function () { busy(dom['reg-submit'], false); });
  }

  function onLogin(ev) {
    ev.preventDefault();
    clearError();
    var body = {
      userId: dom['login-userId'].value.trim(),
      userPw: dom['login-userPw'].value
    };
    if (!body.userId || !body.userPw) {
      showError('Please enter your user id and password.');
      return;
    }
    busy(dom['login-submit'], true);
    api('POST', '/api/login', body, { authCall: true }).then(function (data) {
      dom['login-userPw'].value = '';
      var user = data && data.user;
      var id = (user && user.userId) || data.userId || body.userId;
      showNotice('');
      enterApp(id, user);
    }).catch(reportError).then(function () { busy(dom['login-submit'], false); });
  }

  function onLogout() {
    clearError();
    busy(dom.logout, true);
    api('POST', '/api/logout', undefined, { quiet: true }).catch(function (e) {
      // 401: already signed out, fine. Anything else: still drop local state.
      if (!(e instanceof ApiError && e.status === 401)) reportError(e);
    }).then(function () {
      busy(dom.logout, false);
      onUnauthenticated('');
      showNotice('Logged out.');
      dom['login-userId'].focus();
    });
  }

  function onStatus(ev) {
    ev.preventDefault();
    clearError();
    var s = dom['status-input'].value;
    busy(dom['status-submit'], true);
    api('PUT', '/api/status', { userStatus: s }).then(function (data) {
      var st = (data && typeof data.userStatus === 'string') ? data.userStatus : s;
      setStatusCurrent(st);
      dom['status-input'].value = '';
      showNotice('Status updated.');
    }).catch(reportError).then(function () { busy(dom['status-submit'], false); });
  }

  // ---------- friends ----------

  function refreshFriends() {
    return api('GET', '/api/friends').then(function (data) {
      state.friends = Array.isArray(data.friend) ? data.friend.slice() : [];
      state.friends.sort(function (a, b) { return a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0; });
      renderFriends();
      return data;
    });
  }

  function renderFriends() {
    var list = dom['friend-list'];
    clear(list);
    state.friends.forEach(function (f) {
      var li = el('li', 'friend');
      li.dataset.userId = f.userId;
      li.setAttribute('data-testid', 'friend-item');
      var dot = el('span', 'presence-dot');
      dot.setAttribute('data-testid', 'friend-dot');
      var name = el('span', 'friend-name', f.userName || f.userId);
      var id = el('span', 'friend-id', '@' + f.userId);
      var seen = el('span', 'friend-presence');
      seen.setAttribute('data-testid', 'friend-presence');
      var status = el('span', 'friend-status', f.userStatus || '');
      if (!f.userStatus) status.hidden = true;
      li.appendChild(dot);
      li.appendChild(name);
      li.appendChild(id);
      li.appendChild(seen);
      li.appendChild(status);
      setFriendPresence(li, f);
      list.appendChild(li);
    });
    dom['friend-empty'].hidden = state.friends.length > 0;
    renderRoomFriendCheckboxes();
    if (!dom['invite-form'].hidden) renderInviteChoices();
    // friend names may make room titles, participant lists and receipts nicer
    renderRooms();
    renderSeenBy();
  }

  // The online dot and "online" / "last seen ..." text of one friend's item.
  function setFriendPresence(li, f) {
    var online = f.online === true;
    li.classList.toggle('online', online);
    li.dataset.online = online ? 'true' : 'false';
    var dot = li.querySelector('.presence-dot');
    var seen = li.querySelector('.friend-presence');
    var text;
    if (online) text = 'online';
    else if (f.lastSeen) text = 'last seen ' + formatTime(f.lastSeen);
    else text = 'offline';
    seen.textContent = text;
    seen.title = (!online && f.lastSeen) ? fullTime(f.lastSeen) : '';
    dot.setAttribute('aria-label', online ? 'online' : 'offline');
    dot.title = online ? 'online' : 'offline';
  }

  // presence event {type, userId, friendId, online, lastSeen}
  function onPresenceEvent(d) {
    if (!d.friendId || typeof d.online !== 'boolean') return;
    var f = null;
    for (var i = 0; i < state.friends.length; i++) {
      if (state.friends[i].userId === d.friendId) { f = state.friends[i]; break; }
    }
    if (!f) { refreshFriends().catch(reportError); return; }  // a friend added in another tab
    f.online = d.online;
    if (typeof d.lastSeen === 'string') f.lastSeen = d.lastSeen;
    var li = dom['friend-list'].querySelector('li[data-user-id="' + cssEscape(f.userId) + '"]');
    if (li) setFriendPresence(li, f);
  }

  function clearRoomFriendCheckboxes() {
    var fs = dom['room-friends'];
    Array.prototype.slice.call(fs.querySelectorAll('label')).forEach(function (l) { fs.removeChild(l); });
    dom['room-friends-empty'].hidden = false;
  }

  function renderRoomFriendCheckboxes() {
    var fs = dom['room-friends'];
    var checked = new Set();
    fs.querySelectorAll('input[type=checkbox]:checked').forEach(function (c) { checked.add(c.dataset.userId); });
    clearRoomFriendCheckboxes();
    state.friends.forEach(function (f) {
      var label = el('label', 'room-friend');
      var cb = document.createElement('input');
      cb.type = 'checkbox';
      cb.name = 'friendId';
      cb.value = f.userId;
      cb.dataset.userId = f.userId;
      cb.checked = checked.has(f.userId);
      label.appendChild(cb);
      label.appendChild(document.createTextNode((f.userName || f.userId) + ' (' + f.userId + ')'));
      fs.appendChild(label);
    });
    dom['room-friends-empty'].hidden = state.friends.length > 0;
  }

  function onAddFriends(ev) {
    ev.preventDefault();
    clearError();
    var ids = dom['friend-input'].value.split(/[\s,;]+/).filter(function (s) { return s.length > 0; });
    if (ids.length === 0) {
      showError('Enter one or more user ids, separated by commas or spaces.');
      return;
    }
    busy(dom['friend-submit'], true);
    api('POST', '/api/friends', { friendId: ids }).then(function (data) {
      dom['friend-input'].value = '';
      var added = (data && Array.isArray(data.friendId)) ? data.friendId : ids;
      showNotice('Added ' + added.join(', ') + '.');
      return refreshFriends();
    }).catch(reportError).then(function () { busy(dom['friend-submit'], false); });
  }

  // ---------- rooms ----------

  function friendName(id) {
    for (var i = 0; i < state.friends.length; i++) {
      if (state.friends[i].userId === id) return state.friends[i].userName || id;
    }
    return id;
  }

  function roomTitle(r) {
    if (r.roomName) return r.roomName;
    var others = (r.participants || []).filter(function (p) { return p !== state.me; });
    if (others.length === 0) return 'Just me';
    return others.map(friendName).join(', ');
  }

  // Participants as people read them: "You" first, then names (ids when no name is known).
  function participantNames(r) {
    var ps = r.participants || [];
    var out = ps.indexOf(state.me) >= 0 ? ['You'] : [];
    ps.forEach(function (p) { if (p !== state.me) out.push(friendName(p)); });
    return out.join(', ');
  }

  function unreadOf(r) {
    var n = r.lastSeq - Math.max(r.readSeq, r.sentRead);
    return n > 0 ? n : 0;
  }

  /* Merge what the server told us about a room. Counters only move forward
   * (a stale answer must not bring back a badge already cleared). `fromEvent`
   * marks a room learnt live, which an older room list must not drop. */
  function upsertRoom(r, fromEvent) {
    if (!r || !r.roomId) return null;
    var cur = state.rooms.get(r.roomId);
    if (!cur) {
      cur = { roomId: r.roomId, roomName: '', participants: [], lastSeq: 0, readSeq: 0, sentRead: 0, epoch: 0 };
      state.rooms.set(r.roomId, cur);
    }
    if (fromEvent) {
      cur.epoch = ++state.roomEpoch;
      state.gone.delete(r.roomId);
    }
    if (typeof r.roomName === 'string') cur.roomName = r.roomName;
    if (Array.isArray(r.participants)) cur.participants = r.participants.slice();
    if (typeof r.lastSeq === 'number' && r.lastSeq > cur.lastSeq) cur.lastSeq = r.lastSeq;
    var readSeq = r.readSeq;
    if (typeof readSeq !== 'number' && typeof r.unread === 'number' && typeof r.lastSeq === 'number') {
      readSeq = r.lastSeq - r.unread;   // a list with unread but no readSeq
    }
    if (typeof readSeq === 'number' && readSeq > cur.readSeq) cur.readSeq = readSeq;
    return cur;
  }

  function refreshRooms() {
    var epoch = ++state.roomEpoch;
    return api('GET', '/api/rooms').then(function (data) {
      var seen = new Set();
      (Array.isArray(data.rooms) ? data.rooms : []).forEach(function (r) {
        if (!r || !r.roomId) return;
        // left (or removed) after this list was asked for: the list is stale
        var goneAt = state.gone.get(r.roomId);
        if (goneAt !== undefined && goneAt > epoch) return;
        state.gone.delete(r.roomId);
        upsertRoom(r);
        seen.add(r.roomId);
      });
      // the server list is authoritative for membership, except for rooms
      // learnt from events after it was asked for
      Array.from(state.rooms.values()).forEach(function (r) {
        if (!seen.has(r.roomId) && r.epoch < epoch) state.rooms.delete(r.roomId);
      });
      renderRooms();
      if (state.currentRoomId && !state.rooms.has(state.currentRoomId)) closeRoom();
      return data;
    });
  }

  /* We are no longer in the room (left it here or in another tab, or the
   * server says NOT_A_MEMBER): forget it and close it if it is open. */
  function dropRoom(roomId, notice) {
    var r = state.rooms.get(roomId);
    state.gone.set(roomId, ++state.roomEpoch);
    state.pending.delete(roomId);
    if (!r) return;
    state.rooms.delete(roomId);
    if (state.currentRoomId === roomId) closeRoom();
    renderRooms();
    if (notice) showNotice(notice.replace('%s', roomTitle(r)));
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function buildRoomItem(roomId) {
    var li = el('li', 'room');
    li.dataset.roomId = roomId;
    li.setAttribute('data-testid', 'room-item');
    var btn = el('button', 'room-btn');
    btn.type = 'button';
    btn.dataset.roomId = roomId;
    var badge = el('span', 'unread-dot');
    badge.setAttribute('data-testid', 'unread-badge');
    badge.setAttribute('aria-hidden', 'true');
    btn.appendChild(el('span', 'room-name'));
    btn.appendChild(badge);
    btn.appendChild(el('span', 'room-participants'));
    li.appendChild(btn);
    return li;
  }

  /* The room list, updated in place: items are reused (a rebuild while the
   * user clicks would swallow the click, and would lose focus). */
  function renderRooms() {
    var list = dom['room-list'];
    var rooms = Array.from(state.rooms.values());
    rooms.sort(function (a, b) { return a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0; });
    var items = new Map();
    Array.prototype.slice.call(list.children).forEach(function (li) {
      if (state.rooms.has(li.dataset.roomId)) items.set(li.dataset.roomId, li);
      else list.removeChild(li);
    });
    var total = 0;
    rooms.forEach(function (r, i) {
      var unread = unreadOf(r);
      total += unread;
      var li = items.get(r.roomId) || buildRoomItem(r.roomId);
      li.classList.toggle('unread', unread > 0);
      li.dataset.unread = String(unread);
      var btn = li.firstChild;
      if (r.roomId === state.currentRoomId) btn.setAttribute('aria-current', 'true');
      else btn.removeAttribute('aria-current');
      setText(btn.querySelector('.room-name'), roomTitle(r));
      setText(btn.querySelector('.room-participants'), participantNames(r));
      setText(btn.querySelector('.unread-dot'), unread > 99 ? '99+' : String(unread));
      btn.setAttribute('aria-label', roomTitle(r) +
        (unread ? ', ' + unread + ' unread message' + (unread === 1 ? '' : 's') : '') +
        '. Participants: ' + participantNames(r));
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
    dom['room-empty'].hidden = rooms.length > 0;
    if (state.currentRoomId) renderRoomHead();
    document.title = total ? '(' + total + ') kchat' : 'kchat';
  }

  function onRoomListClick(ev) {
    var btn = ev.target.closest('.room-btn');
    if (!btn) return;
    openRoom(btn.dataset.roomId);
  }

  function onCreateRoom(ev) {
    ev.preventDefault();
    clearError();
    var ids = [];
    dom['room-friends'].querySelectorAll('input[type=checkbox]:checked').forEach(function (c) {
      ids.push(c.dataset.userId);
    });
    if (ids.length === 0) {
      showError('Select at least one friend for the room.');
      return;
    }
    var body = { friendId: ids };
    var name = dom['room-name'].value.trim();
    if (name) body.roomName = name;
    busy(dom['room-create'], true);
    api('POST', '/api/rooms', body).then(function (data) {
      var participants = [state.me].concat((data.friendId || ids).filter(function (x) { return x !== state.me; }));
      upsertRoom({
        roomId: data.roomId,
        roomName: typeof data.roomName === 'string' ? data.roomName : (name || ''),
        participants: participants
      }, true);
      dom['room-name'].value = '';
      dom['room-friends'].querySelectorAll('input[type=checkbox]').forEach(function (c) { c.checked = false; });
      renderRooms();
      openRoom(data.roomId);
    }).catch(reportError).then(function () { busy(dom['room-create'], false); });
  }

  // ---------- room view ----------

  function renderRoomHead() {
    var r = state.rooms.get(state.currentRoomId);
    if (!r) return;
    dom['room-title'].textContent = roomTitle(r);
    dom['room-participants'].textContent = participantNames(r);
    dom['room-participants'].title = (r.participants || []).join(', ');
    dom['room-actions'].hidden = false;
    if (!dom['invite-form'].hidden) renderInviteChoices();
  }

  function closeRoom() {
    state.currentRoomId = null;
    state.roomGen++;
    state.view = null;
    clear(dom['message-list']);
    dom['room-title'].textContent = 'No room open';
    dom['room-participants'].textContent = '';
    dom['room-participants'].title = '';
    dom['room-actions'].hidden = true;
    hideInvite();
    hideLeaveConfirm();
    dom['room-placeholder'].hidden = false;
    dom['load-older'].hidden = true;
    dom['history-state'].textContent = '';
    dom['message-input'].disabled = true;
    dom['message-send'].disabled = true;
    document.body.classList.remove('room-open');
    dom['message-list'].removeAttribute('data-room-id');
    renderRoomsCurrent();
  }

  function renderRoomsCurrent() {
    dom['room-list'].querySelectorAll('.room-btn').forEach(function (b) {
      if (b.dataset.roomId === state.currentRoomId) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    });
  }

  function openRoom(roomId) {
    var r = state.rooms.get(roomId);
    if (!r) return;
    clearError();
    state.currentRoomId = roomId;
    var gen = ++state.roomGen;
    state.view = { roomId: roomId, seqs: new Set(), minSeq: 0, maxSeq: 0, hasMore: false, loadingOlder: false,
                   loaded: false, reads: new Map(), readBusy: false };
    hideInvite();
    hideLeaveConfirm();
    clear(dom['message-list']);
    dom['message-list'].dataset.roomId = roomId;
    dom['room-placeholder'].hidden = true;
    dom['load-older'].hidden = true;
    dom['history-state'].textContent = 'Loading…';
    dom['message-input'].disabled = false;
    dom['message-send'].disabled = false;
    document.body.classList.add('room-open');
    renderRooms();
    renderRoomHead();
    // pending sends of this room survive switching rooms
    var pend = state.pending.get(roomId);
    if (pend) pend.forEach(function (p) { dom['message-list'].appendChild(p.el); });
    dom['message-input'].focus();

    api('GET', '/api/rooms/' + encodeURIComponent(roomId) + '/messages?limit=' + HISTORY_PAGE).then(function (data) {
      if (gen !== state.roomGen) return;
      var msgs = Array.isArray(data.messages) ? data.messages : [];
      msgs.forEach(function (m) { addMessage(roomId, m, { noScroll: true }); });
      state.view.hasMore = msgs.length >= HISTORY_PAGE && state.view.minSeq > 1;
      mergeReads(state.view, data.reads);
      state.view.loaded = true;
      updateHistoryUi();
      scrollToBottom();
      renderSeenBy();
      fillViewport(gen);
      maybeMarkRead();
    }).catch(function (e) {
      if (gen !== state.roomGen) return;
      dom['history-state'].textContent = '';
      if (isNotMember(e)) {
        dropRoom(roomId, '');
        reportError(e, 'Cannot open this room');
        return;
      }
      reportError(e);
    });
  }

  function updateHistoryUi() {
    var v = state.view;
    if (!v) return;
    dom['load-older'].hidden = !v.hasMore || v.loadingOlder;
    if (v.loadingOlder) dom['history-state'].textContent = 'Loading older messages…';
    else if (!v.hasMore && v.seqs.size > 0) dom['history-state'].textContent = 'Beginning of the conversation';
    else if (!v.hasMore && v.seqs.size === 0) dom['history-state'].textContent = 'No messages yet. Say hello!';
    else dom['history-state'].textContent = '';
  }

  // When the first page does not fill the view there is no scrollbar to reach
  // the top with, so keep loading until it does or history is exhausted.
  function fillViewport(gen) {
    var sc = dom['message-scroll'];
    var v = state.view;
    if (!v || gen !== state.roomGen) return;
    if (v.hasMore && !v.loadingOlder && sc.scrollHeight <= sc.clientHeight + 10) {
      loadOlder().then(function () { fillViewport(gen); });
    }
  }

  function loadOlder() {
    var v = state.view;
    if (!v || v.loadingOlder || !v.hasMore || !v.minSeq) return Promise.resolve();
    var roomId = v.roomId;
    var gen = state.roomGen;
    v.loadingOlder = true;
    updateHistoryUi();
    var sc = dom['message-scroll'];
    var url = '/api/rooms/' + encodeURIComponent(roomId) + '/messages?beforeSeq=' + v.minSeq + '&limit=' + HISTORY_PAGE;
    return api('GET', url).then(function (data) {
      if (gen !== state.roomGen) return;
      var msgs = Array.isArray(data.messages) ? data.messages : [];
      var before = sc.scrollHeight;
      var top = sc.scrollTop;
      msgs.forEach(function (m) { addMessage(roomId, m, { noScroll: true }); });
      // keep the message the user was looking at in place
      sc.scrollTop = top + (sc.scrollHeight - before);
      v.hasMore = msgs.length >= HISTORY_PAGE && v.minSeq > 1;
      mergeReads(v, data.reads);
      renderSeenBy();
    }).catch(function (e) {
      if (gen !== state.roomGen) return;
      if (isNotMember(e)) dropRoom(roomId, '');
      reportError(e);
    }).then(function () {
      if (gen !== state.roomGen) return;
      v.loadingOlder = false;
      updateHistoryUi();
    });
  }

  var stuckToBottom = true;

  function onMessageScroll() {
    var sc = dom['message-scroll'];
    stuckToBottom = isNearBottom();
    if (sc.scrollTop < 60) loadOlder();
    if (stuckToBottom) maybeMarkRead();
  }

  function isNotMember(e) {
    return e instanceof ApiError && (e.errorCode === 'NOT_A_MEMBER' || e.errorCode === 'ROOM_NOT_FOUND');
  }

  // ---------- read cursors: marking read, "seen by" ----------

  // reads: [{userId, readSeq}] from a history answer; cursors only move forward.
  function mergeReads(v, reads) {
    if (!v || !Array.isArray(reads)) return;
    reads.forEach(function (x) {
      if (!x || typeof x.userId !== 'string' || typeof x.readSeq !== 'number') return;
      if (!(v.reads.get(x.userId) >= x.readSeq)) v.reads.set(x.userId, x.readSeq);
    });
  }

  /* The open room shows its newest message and the tab is visible: move our
   * read cursor there (POST .../read). One request at a time per view; a
   * failed one is not retried until a newer message is shown. */
  function maybeMarkRead() {
    var v = state.view;
    if (!v || !v.loaded || v.readBusy || state.me === null) return;
    if (document.visibilityState === 'hidden') return;
    var r = state.rooms.get(v.roomId);
    var target = v.maxSeq;
    if (!r || !target || target <= r.readSeq || target <= (v.readFailedSeq || 0)) return;
    if (!isNearBottom()) return;
    var roomId = v.roomId;
    v.readBusy = true;
    r.sentRead = target;
    renderRooms();
    api('POST', '/api/rooms/' + encodeURIComponent(roomId) + '/read', { readSeq: target }).then(function (data) {
      var rs = (data && typeof data.readSeq === 'number') ? data.readSeq : target;
      if (rs > r.readSeq) r.readSeq = rs;
    }, function (e) {
      v.readFailedSeq = target;
      if (e instanceof ApiError && e.status === 401) return;
      if (isNotMember(e)) dropRoom(roomId, '');
      reportError(e, 'Could not mark messages as read');
    }).then(function () {
      r.sentRead = 0;
      v.readBusy = false;
      renderRooms();
      if (state.view === v) maybeMarkRead();
    });
  }

  /* "Seen by NAME, NAME" under the newest shown message each other
   * participant has read (not counting messages they wrote themselves). */
  function renderSeenBy() {
    var list = dom['message-list'];
    Array.prototype.slice.call(list.querySelectorAll('.seen')).forEach(function (n) {
      n.parentNode.removeChild(n);
    });
    var v = state.view;
    if (!v) return;
    var r = state.rooms.get(v.roomId);
    var members = (r && r.participants.length) ? new Set(r.participants) : null;
    var items = list.querySelectorAll('li[data-seq]');
    if (!items.length) return;
    var under = new Map();   // li -> [userId]
    v.reads.forEach(function (readSeq, uid) {
      if (uid === state.me || (members && !members.has(uid))) return;
      for (var i = items.length - 1; i >= 0; i--) {
        var li = items[i];
        if (Number(li.dataset.seq) > readSeq || li.dataset.writerId === uid) continue;
        if (!under.has(li)) under.set(li, []);
        under.get(li).push(uid);
        break;
      }
    });
    under.forEach(function (uids, li) {
      uids.sort(function (a, b) {
        var x = friendName(a), y = friendName(b);
        return x < y ? -1 : x > y ? 1 : 0;
      });
      var d = el('div', 'seen', 'Seen by ' + uids.map(friendName).join(', '));
      d.setAttribute('data-testid', 'seen-by');
      d.dataset.readers = uids.join(' ');
      d.title = 'Seen by ' + uids.join(', ');
      li.appendChild(d);
    });
  }

  // ---------- invite and leave ----------

  function showInvite() {
    if (!state.currentRoomId) return;
    clearError();
    hideLeaveConfirm();
    dom['invite-form'].hidden = false;
    dom['room-invite'].setAttribute('aria-expanded', 'true');
    renderInviteChoices();
    var first = dom['invite-friends'].querySelector('input[type=checkbox]');
    if (first) first.focus();
  }

  function hideInvite() {
    dom['invite-form'].hidden = true;
    delete dom['invite-friends'].dataset.choices;
    dom['room-invite'].setAttribute('aria-expanded', 'false');
    Array.prototype.slice.call(dom['invite-friends'].querySelectorAll('label')).forEach(function (l) {
      l.parentNode.removeChild(l);
    });
  }

  // Checkboxes for the friends not yet in the open room (checks kept across re-renders).
  function renderInviteChoices() {
    var fs = dom['invite-friends'];
    var r = state.rooms.get(state.currentRoomId);
    var inRoom = new Set(r ? r.participants : []);
    var choices = state.friends.filter(function (f) { return !inRoom.has(f.userId); });
    // unchanged choices: leave the checkboxes (and the focus) alone
    var key = choices.map(function (f) { return f.userId + '\n' + (f.userName || ''); }).join('\n');
    if (fs.dataset.choices === key && fs.querySelector('label')) return;
    fs.dataset.choices = key;
    var checked = new Set();
    fs.querySelectorAll('input[type=checkbox]:checked').forEach(function (c) { checked.add(c.dataset.userId); });
    Array.prototype.slice.call(fs.querySelectorAll('label')).forEach(function (l) { fs.removeChild(l); });
    choices.forEach(function (f) {
      var label = el('label', 'room-friend');
      var cb = document.createElement('input');
      cb.type = 'checkbox';
      cb.name = 'inviteId';
      cb.value = f.userId;
      cb.dataset.userId = f.userId;
      cb.checked = checked.has(f.userId);
      label.appendChild(cb);
      label.appendChild(document.createTextNode((f.userName || f.userId) + ' (' + f.userId + ')'));
      fs.appendChild(label);
    });
    dom['invite-empty'].textContent = state.friends.length ?
      'All your friends are already in this room.' : 'Add friends first.';
    dom['invite-empty'].hidden = choices.length > 0;
    dom['invite-submit'].disabled = choices.length === 0;
  }

  function onInvite(ev) {
    ev.preventDefault();
    clearError();
    var roomId = state.currentRoomId;
    if (!roomId) return;
    var ids = [];
    dom['invite-friends'].querySelectorAll('input[type=checkbox]:checked').forEach(function (c) {
      ids.push(c.dataset.userId);
    });
    if (ids.length === 0) {
      showError('Pick at least one friend to invite.');
      return;
    }
    busy(dom['invite-submit'], true);
    api('POST', '/api/rooms/' + encodeURIComponent(roomId) + '/members', { friendId: ids }).then(function (data) {
      var r = state.rooms.get(roomId);
      if (r && Array.isArray(data.participants)) {
        var before = new Set(r.participants);
        upsertRoom({ roomId: roomId, participants: data.participants });
        noteNewMembers(roomId, data.participants.filter(function (p) { return !before.has(p); }));
      }
      if (state.currentRoomId === roomId) hideInvite();
      renderRooms();
      showNotice('Invited ' + ids.map(friendName).join(', ') + '.');
    }).catch(function (e) {
      if (isNotMember(e)) dropRoom(roomId, '');
      reportError(e, 'Could not invite');
    }).then(function () {
      busy(dom['invite-submit'], false);
      if (!dom['invite-form'].hidden) renderInviteChoices();
    });
  }

  // A new participant's read cursor starts at the room's lastSeq (no read event says so).
  function noteNewMembers(roomId, ids) {
    var v = state.view;
    var r = state.rooms.get(roomId);
    if (!v || v.roomId !== roomId || !r) return;
    ids.forEach(function (id) { if (!v.reads.has(id)) v.reads.set(id, r.lastSeq); });
    renderSeenBy();
  }

  function showLeaveConfirm() {
    if (!state.currentRoomId) return;
    hideInvite();
    dom['leave-confirm'].hidden = false;
    dom['room-leave-confirm'].focus();
  }

  function hideLeaveConfirm() {
    dom['leave-confirm'].hidden = true;
  }

  function onLeave() {
    var roomId = state.currentRoomId;
    if (!roomId) return;
    clearError();
    busy(dom['room-leave-confirm'], true);
    api('DELETE', '/api/rooms/' + encodeURIComponent(roomId) + '/members/me').then(function () {
      dropRoom(roomId, 'You left %s.');
    }).catch(function (e) {
      if (isNotMember(e)) dropRoom(roomId, '');
      reportError(e, 'Could not leave the room');
    }).then(function () {
      busy(dom['room-leave-confirm'], false);
    });
  }

  // Banners appearing or the composer growing shrink the message area; keep
  // the newest message in view if the user was reading the bottom.
  function watchMessageArea() {
    if (typeof window.ResizeObserver !== 'function') return;
    new ResizeObserver(function () {
      if (stuckToBottom && state.view) scrollToBottom();
    }).observe(dom['message-scroll']);
  }

  function isNearBottom() {
    var sc = dom['message-scroll'];
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  }

  function scrollToBottom() {
    var sc = dom['message-scroll'];
    sc.scrollTop = sc.scrollHeight;
    stuckToBottom = true;
  }

  function buildMessageEl(m, mine) {
    var li = el('li', 'msg ' + (mine ? 'mine' : 'theirs'));
    li.setAttribute('data-testid', 'message');
    li.dataset.writerId = m.writerId || '';
    if (m.clientMsgId) li.dataset.clientMsgId = m.clientMsgId;
    var meta = el('div', 'meta');
    var writer = el('span', 'writer', m.writerId === state.me ? 'You' : friendName(m.writerId || ''));
    writer.title = m.writerId || '';
    var time = el('time', 'time', formatTime(m.createdAt));
    if (m.createdAt) time.setAttribute('datetime', m.createdAt);
    time.title = fullTime(m.createdAt);
    var st = el('span', 'state', '');
    meta.appendChild(writer);
    meta.appendChild(time);
    meta.appendChild(st);
    li.appendChild(meta);
    li.appendChild(el('div', 'text', m.message));
    return li;
  }

  function setMessageSeq(li, m) {
    li.dataset.seq = String(m.seq);
    li.classList.remove('pending', 'failed');
    li.removeAttribute('aria-busy');
    var st = li.querySelector('.state');
    if (st) clear(st);
    if (m.createdAt) {
      var t = li.querySelector('time');
      t.textContent = formatTime(m.createdAt);
      t.setAttribute('datetime', m.createdAt);
      t.title = fullTime(m.createdAt);
    }
  }

  // Insert a message element with data-seq at its place by seq; elements that
  // are still pending (no seq yet) always stay at the end.
  function insertBySeq(li, seq) {
    var list = dom['message-list'];
    var node = list.lastElementChild;
    while (node && !node.dataset.seq) node = node.previousElementSibling;
    while (node && node.dataset.seq && Number(node.dataset.seq) > seq) {
      node = node.previousElementSibling;
      while (node && !node.dataset.seq) node = node.previousElementSibling;
    }
    if (node) list.insertBefore(li, node.nextElementSibling);
    else list.insertBefore(li, list.firstElementChild);
  }

  /* Show a stored message (from history, a chat event, or a send's 201).
   * Drops repeats by seq; turns our own pending bubble into the stored one
   * when clientMsgId matches, so a message never shows twice. */
  function addMessage(roomId, m, opts) {
    opts = opts || {};
    if (!m || typeof m.seq !== 'number') return;
    var r = state.rooms.get(roomId);
    if (r && m.seq > r.lastSeq) r.lastSeq = m.seq;
    // storing a message moves its writer's read cursor to it (no read event)
    if (r && m.writerId === state.me && m.seq > r.readSeq) r.readSeq = m.seq;

    var pend = state.pending.get(roomId);
    var p = (pend && m.clientMsgId && m.writerId === state.me) ? pend.get(m.clientMsgId) : null;

    var v = state.view;
    if (!v || v.roomId !== roomId) {
      // room not shown: only settle the pending record
      if (p) { p.done = true; pend.delete(m.clientMsgId); }
      return;
    }
    var stick = !opts.noScroll && (isNearBottom() || m.writerId === state.me);

    if (v.seqs.has(m.seq)) {
      if (p) {
        p.done = true;
        pend.delete(m.clientMsgId);
        if (p.el.parentNode && !p.el.dataset.seq) p.el.parentNode.removeChild(p.el);
      }
      return;
    }
    v.seqs.add(m.seq);
    if (!v.minSeq || m.seq < v.minSeq) v.minSeq = m.seq;
    if (m.seq > v.maxSeq) v.maxSeq = m.seq;
    if (m.writerId && !(v.reads.get(m.writerId) >= m.seq)) v.reads.set(m.writerId, m.seq);

    var li;
    if (p) {
      p.done = true;
      pend.delete(m.clientMsgId);
      li = p.el;
      if (li.parentNode) li.parentNode.removeChild(li);
      setMessageSeq(li, m);
    } else {
      li = buildMessageEl(m, m.writerId === state.me);
      li.dataset.seq = String(m.seq);
    }
    insertBySeq(li, m.seq);
    if (v.seqs.size === 1 && !v.loadingOlder) updateHistoryUi();
    if (stick) scrollToBottom();
    // history pages call these once for the whole page
    if (!opts.noScroll) {
      renderSeenBy();
      maybeMarkRead();
    }
  }

  // ---------- sending ----------

  function onComposerKey(ev) {
    if (ev.key !== 'Enter' || ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    // Enter that confirms an IME composition (Korean, Japanese, ...) must not send
    if (ev.isComposing || ev.keyCode === 229) return;
    ev.preventDefault();
    sendFromComposer();
  }

  function onComposerInput() {
    var ta = dom['message-input'];
    ta.style.height = 'auto';
    ta.style.height = Math.min(ta.scrollHeight + 2, 160) + 'px';
  }

  function onSendSubmit(ev) {
    ev.preventDefault();
    sendFromComposer();
  }

  function sendFromComposer() {
    var roomId = state.currentRoomId;
    if (!roomId) return;
    var ta = dom['message-input'];
    var text = ta.value;
    if (!text.trim()) return;
    if (utf8Length(text) > MAX_MESSAGE_BYTES) {
      showError('Message is too long (at most ' + MAX_MESSAGE_BYTES + ' bytes).');
      return;
    }
    clearError();
    ta.value = '';
    onComposerInput();
    ta.focus();

    var cmid = newClientMsgId();
    var li = buildMessageEl({ writerId: state.me, message: text, createdAt: null, clientMsgId: cmid }, true);
    li.classList.add('pending');
    li.setAttribute('aria-busy', 'true');
    li.querySelector('.state').textContent = 'sending…';
    var p = { roomId: roomId, clientMsgId: cmid, text: text, el: li, attempt: 0, done: false };
    if (!state.pending.has(roomId)) state.pending.set(roomId, new Map());
    state.pending.get(roomId).set(cmid, p);
    dom['message-list'].appendChild(li);
    scrollToBottom();
    doSend(p);
  }

  function doSend(p) {
    if (p.done || state.me === null) return;
    var url = '/api/rooms/' + encodeURIComponent(p.roomId) + '/messages';
    api('POST', url, { message: p.text, clientMsgId: p.clientMsgId }).then(function (data) {
      addMessage(p.roomId, {
        seq: data.seq,
        writerId: data.writerId || state.me,
        message: p.text,
        createdAt: data.createdAt,
        clientMsgId: data.clientMsgId || p.clientMsgId,
        roomId: p.roomId
      });
      // a 201 without a usable seq should not leave the bubble pending forever
      if (!p.done) {
        p.done = true;
        var pend = state.pending.get(p.roomId);
        if (pend) pend.delete(p.clientMsgId);
        p.el.classList.remove('pending');
        p.el.querySelector('.state').textContent = '';
      }
    }).catch(function (e) {
      if (p.done) return;
      var transient = e instanceof NetworkError ||
        (e instanceof ApiError && (e.status === 502 || e.status === 503 || e.status === 504));
      if (transient && p.attempt < SEND_RETRY_DELAYS.length) {
        var delay = SEND_RETRY_DELAYS[p.attempt++];
        p.el.querySelector('.state').textContent = 'retrying…';
        setTimeout(function () { doSend(p); }, delay);
        return;
      }
      markFailed(p, e);
    });
  }

  function markFailed(p, e) {
    p.el.classList.remove('pending');
    p.el.classList.add('failed');
    p.el.removeAttribute('aria-busy');
    var st = p.el.querySelector('.state');
    clear(st);
    st.appendChild(document.createTextNode('not sent'));
    var transient = e instanceof NetworkError ||
      (e instanceof ApiError && (e.status === 502 || e.status === 503 || e.status === 504));
    if (transient) {
      var btn = el('button', 'retry', 'Retry');
      btn.type = 'button';
      btn.setAttribute('data-testid', 'message-retry');
      btn.setAttribute('aria-label', 'Retry sending this message');
      btn.addEventListener('click', function () {
        p.attempt = 0;
        p.el.classList.remove('failed');
        p.el.classList.add('pending');
        st.textContent = 'sending…';
        doSend(p);
      });
      st.appendChild(btn);
    } else {
      var pend = state.pending.get(p.roomId);
      if (pend) pend.delete(p.clientMsgId);
      p.done = true;
    }
    reportError(e);
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
        refreshRooms().catch(reportError);
        if (state.currentRoomId) openRoom(state.currentRoomId);
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
      if (d) onPresenceEvent(d);
    });
    // The gateway could not resume from our Last-Event-ID (the log was reset
    // or is behind it): the stream goes on live; re-read what we show.
    es.addEventListener('reset', function () {
      if (state.es !== es) return;
      refreshRooms().catch(reportError);
      if (state.currentRoomId) openRoom(state.currentRoomId);
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
      r = upsertRoom({ roomId: d.roomId, roomName: '', participants: [] }, true);
      refreshRooms().catch(reportError);
    }
    var before = unreadOf(r);
    // shows it when the room is open, settles our own pending send, moves
    // lastSeq (and our cursor for our own message), marks it read if in view
    addMessage(d.roomId, d);
    if (!known || unreadOf(r) !== before) renderRooms();
  }

  // room event: a room we are in was created, or we were invited
  function onRoomEvent(d) {
    if (!d.roomId) return;
    var known = state.rooms.has(d.roomId);
    upsertRoom({ roomId: d.roomId, roomName: d.roomName, participants: d.participants }, true);
    renderRooms();
    // an invitee's cursor starts at the room's lastSeq: learn both
    if (!known) refreshRooms().catch(reportError);
  }

  // members event {roomId, participants, added, removed}
  function onMembersEvent(d) {
    if (!d.roomId) return;
    var removed = Array.isArray(d.removed) ? d.removed : [];
    if (removed.indexOf(state.me) >= 0) {
      dropRoom(d.roomId, 'You left %s.');   // only we can take ourselves out
      return;
    }
    var r = state.rooms.get(d.roomId);
    if (!r) {
      if (!state.gone.has(d.roomId)) refreshRooms().catch(reportError);
      return;
    }
    if (Array.isArray(d.participants)) r.participants = d.participants.slice();
    var v = state.view;
    if (v && v.roomId === d.roomId) removed.forEach(function (id) { v.reads.delete(id); });
    renderRooms();
    noteNewMembers(d.roomId, Array.isArray(d.added) ? d.added : []);
    renderSeenBy();
  }

  // read event {roomId, readerId, readSeq}: our own cursor (from any tab) or a receipt
  function onReadEvent(d) {
    if (!d.roomId || !d.readerId || typeof d.readSeq !== 'number') return;
    var r = state.rooms.get(d.roomId);
    if (d.readerId === state.me) {
      if (r && d.readSeq > r.readSeq) {
        r.readSeq = d.readSeq;
        renderRooms();
      }
      return;
    }
    var v = state.view;
    if (v && v.roomId === d.roomId && !(v.reads.get(d.readerId) >= d.readSeq)) {
      v.reads.set(d.readerId, d.readSeq);
      renderSeenBy();
    }
  }

  // ---------- start ----------

  function init() {
    bindDom();
    dom['reg-form'].addEventListener('submit', onRegister);
    dom['login-form'].addEventListener('submit', onLogin);
    dom.logout.addEventListener('click', onLogout);
    dom['status-form'].addEventListener('submit', onStatus);
    dom['friend-form'].addEventListener('submit', onAddFriends);
    dom['friend-refresh'].addEventListener('click', function () { clearError(); refreshFriends().catch(reportError); });
    dom['room-form'].addEventListener('submit', onCreateRoom);
    dom['room-refresh'].addEventListener('click', function () { clearError(); refreshRooms().catch(reportError); });
    dom['room-list'].addEventListener('click', onRoomListClick);
    dom['room-back'].addEventListener('click', function () {
      var id = state.currentRoomId;
      closeRoom();
      var b = id && dom['room-list'].querySelector('.room-btn[data-room-id="' + cssEscape(id) + '"]');
      if (b) b.focus();
    });
    dom['message-scroll'].addEventListener('scroll', onMessageScroll, { passive: true });
    watchMessageArea();
    dom['load-older'].addEventListener('click', function () { loadOlder(); });
    dom['message-form'].addEventListener('submit', onSendSubmit);
    dom['room-invite'].addEventListener('click', function () {
      if (dom['invite-form'].hidden) showInvite(); else hideInvite();
    });
    dom['invite-form'].addEventListener('submit', onInvite);
    dom['invite-cancel'].addEventListener('click', function () { hideInvite(); dom['room-invite'].focus(); });
    dom['room-leave'].addEventListener('click', showLeaveConfirm);
    dom['room-leave-confirm'].addEventListener('click', onLeave);
    dom['room-leave-cancel'].addEventListener('click', function () { hideLeaveConfirm(); dom['room-leave'].focus(); });
    document.addEventListener('visibilitychange', maybeMarkRead);
    window.addEventListener('focus', maybeMarkRead);
    dom['message-input'].addEventListener('keydown', onComposerKey);
    dom['message-input'].addEventListener('input', onComposerInput);
    dom.error.addEventListener('click', clearError);
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && state.currentRoomId && document.body.classList.contains('room-open') &&
          window.matchMedia('(max-width: 720px)').matches) {
        dom['room-back'].click();
      }
    });

    setConn('offline');
    // Is the session cookie still good? GET /api/friends answers with our userId.
    api('GET', '/api/friends', undefined, { quiet: true }).then(function (data) {
      // every backend answer carries the acting userId; fall back to the id
      // this browser last logged in with
      var id = (data && data.userId) || remembered();
      if (id) enterApp(id, null);
      else setView('auth');
    }, function (e) {
      setView('auth');
      if (!(e instanceof ApiError && e.status === 401)) reportError(e);
    });
  }

  function cssEscape(s) {
    if (window.CSS && CSS.escape) return CSS.escape(s);
    return String(s).replace(/[^A-Za-z0-9_-]/g, '\\$&');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
