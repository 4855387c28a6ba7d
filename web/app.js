/* kchat browser client: the main file; wires the page's controls and starts.
 *
 * Plain JS, no build step, no external resources. Talks to the kchat gateway
 * (same origin) through the HTTP API of PROTOCOL.md section 8 (v1.1) and
 * listens for live `chat`, `room`, `members`, `read` and `presence` events on
 * the SSE stream /api/events: unread counts, "seen by" receipts, friends'
 * presence, inviting friends into a room and leaving it.
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

  var dom = k.dom, state = k.state, bindDom = k.bindDom, clearError = k.clearError,
      cssEscape = k.cssEscape;

  // ---------- start ----------

  function init() {
    bindDom();
    dom['reg-form'].addEventListener('submit', k.onRegister);
    dom['login-form'].addEventListener('submit', k.onLogin);
    dom.logout.addEventListener('click', k.onLogout);
    dom['status-form'].addEventListener('submit', k.onStatus);
    dom['friend-form'].addEventListener('submit', k.onAddFriends);
    dom['friend-refresh'].addEventListener('click', function () { clearError(); k.refreshFriends().catch(k.reportError); });
    dom['room-form'].addEventListener('submit', k.onCreateRoom);
    dom['room-refresh'].addEventListener('click', function () { clearError(); k.refreshRooms().catch(k.reportError); });
    dom['room-list'].addEventListener('click', k.onRoomListClick);
    dom['room-back'].addEventListener('click', function () {
      var id = state.currentRoomId;
      k.closeRoom();
      var b = id && dom['room-list'].querySelector('.room-btn[data-room-id="' + cssEscape(id) + '"]');
      if (b) b.focus();
    });
    dom['message-scroll'].addEventListener('scroll', k.onMessageScroll, { passive: true });
    k.watchMessageArea();
    dom['load-older'].addEventListener('click', function () { k.loadOlder(); });
    dom['message-form'].addEventListener('submit', k.onSendSubmit);
    dom['room-invite'].addEventListener('click', function () {
      if (dom['invite-form'].hidden) k.showInvite(); else k.hideInvite();
    });
    dom['invite-form'].addEventListener('submit', k.onInvite);
    dom['invite-cancel'].addEventListener('click', function () { k.hideInvite(); dom['room-invite'].focus(); });
    dom['room-leave'].addEventListener('click', k.showLeaveConfirm);
    dom['room-leave-confirm'].addEventListener('click', k.onLeave);
    dom['room-leave-cancel'].addEventListener('click', function () { k.hideLeaveConfirm(); dom['room-leave'].focus(); });
    document.addEventListener('visibilitychange', k.maybeMarkRead);
    window.addEventListener('focus', k.maybeMarkRead);
    dom['message-input'].addEventListener('keydown', k.onComposerKey);
    dom['message-input'].addEventListener('input', k.onComposerInput);
    dom.error.addEventListener('click', clearError);
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && state.currentRoomId && document.body.classList.contains('room-open') &&
          window.matchMedia('(max-width: 720px)').matches) {
        dom['room-back'].click();
      }
    });

    k.setConn('offline');
    // Is the session cookie still good? GET /api/friends answers with our userId.
    k.api('GET', '/api/friends', undefined, { quiet: true }).then(function (data) {
      // every backend answer carries the acting userId; fall back to the id
      // this browser last logged in with
      var id = (data && data.userId) || k.remembered();
      if (id) k.enterApp(id, null);
      else k.setView('auth');
    }, function (e) {
      k.setView('auth');
      if (!(e instanceof k.ApiError && e.status === 401)) k.reportError(e);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})(window.kchat);
