/* kchat browser client: signing in and out, registering, the status line.
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

  var dom = k.dom, state = k.state, clear = k.clear, clearError = k.clearError,
      showError = k.showError, showNotice = k.showNotice;

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
    k.closeRoom();
    k.openEvents();
    k.refreshFriends().catch(k.reportError);
    k.refreshRooms().catch(k.reportError);
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
    k.clearRoomFriendCheckboxes();
    setStatusCurrent('');
    dom['status-input'].value = '';
    document.body.classList.remove('room-open');
  }

  function onUnauthenticated(msg) {
    k.closeEvents();
    remember(null);
    var wasIn = state.me !== null;
    resetAppState();
    setView('auth');
    if (msg && wasIn) showError(msg);
    k.setConn('offline');
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
    k.busy(dom['reg-submit'], true);
    k.api('POST', '/api/users', body, { authCall: true }).then(function () {
      showNotice('Account "' + body.userId + '" created. You can log in now.');
      dom['login-userId'].value = body.userId;
      dom['reg-userPw'].value = '';
      dom['login-userPw'].focus();
    }).catch(k.reportError).then(function () { k.busy(dom['reg-submit'], false); });
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
    k.busy(dom['login-submit'], true);
    k.api('POST', '/api/login', body, { authCall: true }).then(function (data) {
      dom['login-userPw'].value = '';
      var user = data && data.user;
      var id = (user && user.userId) || data.userId || body.userId;
      showNotice('');
      enterApp(id, user);
    }).catch(k.reportError).then(function () { k.busy(dom['login-submit'], false); });
  }

  function onLogout() {
    clearError();
    k.busy(dom.logout, true);
    k.api('POST', '/api/logout', undefined, { quiet: true }).catch(function (e) {
      // 401: already signed out, fine. Anything else: still drop local state.
      if (!(e instanceof k.ApiError && e.status === 401)) k.reportError(e);
    }).then(function () {
      k.busy(dom.logout, false);
      onUnauthenticated('');
      showNotice('Logged out.');
      dom['login-userId'].focus();
    });
  }

  function onStatus(ev) {
    ev.preventDefault();
    clearError();
    var s = dom['status-input'].value;
    k.busy(dom['status-submit'], true);
    k.api('PUT', '/api/status', { userStatus: s }).then(function (data) {
      var st = (data && typeof data.userStatus === 'string') ? data.userStatus : s;
      setStatusCurrent(st);
      dom['status-input'].value = '';
      showNotice('Status updated.');
    }).catch(k.reportError).then(function () { k.busy(dom['status-submit'], false); });
  }

  // ---------- shared through window.kchat ----------

  k.enterApp = enterApp;
  k.onLogin = onLogin;
  k.onLogout = onLogout;
  k.onRegister = onRegister;
  k.onStatus = onStatus;
  k.onUnauthenticated = onUnauthenticated;
  k.remembered = remembered;
  k.setView = setView;
})(window.kchat);
