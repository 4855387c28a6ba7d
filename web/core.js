/* kchat browser client: shared state, DOM helpers, messages to the user, ids and time.
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
(function () {
  'use strict';

  var k = window.kchat = {};

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

  function cssEscape(s) {
    if (window.CSS && CSS.escape) return CSS.escape(s);
    return String(s).replace(/[^A-Za-z0-9_-]/g, '\\$&');
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

  // ---------- shared through window.kchat ----------

  k.bindDom = bindDom;
  k.clear = clear;
  k.clearError = clearError;
  k.cssEscape = cssEscape;
  k.dom = dom;
  k.el = el;
  k.formatTime = formatTime;
  k.fullTime = fullTime;
  k.newClientMsgId = newClientMsgId;
  k.showError = showError;
  k.showNotice = showNotice;
  k.state = state;
  k.utf8Length = utf8Length;
})();
