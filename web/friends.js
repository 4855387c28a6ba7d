/* kchat browser client: friends and their presence.
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
      cssEscape = k.cssEscape, el = k.el, formatTime = k.formatTime, fullTime = k.fullTime,
      showError = k.showError, showNotice = k.showNotice;

  // ---------- friends ----------

  function refreshFriends() {
    return k.api('GET', '/api/friends').then(function (data) {
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
    if (!dom['invite-form'].hidden) k.renderInviteChoices();
    // friend names may make room titles, participant lists and receipts nicer
    k.renderRooms();
    k.renderSeenBy();
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
    if (!f) { refreshFriends().catch(k.reportError); return; }  // a friend added in another tab
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
    k.busy(dom['friend-submit'], true);
    k.api('POST', '/api/friends', { friendId: ids }).then(function (data) {
      dom['friend-input'].value = '';
      var added = (data && Array.isArray(data.friendId)) ? data.friendId : ids;
      showNotice('Added ' + added.join(', ') + '.');
      return refreshFriends();
    }).catch(k.reportError).then(function () { k.busy(dom['friend-submit'], false); });
  }

  // ---------- shared through window.kchat ----------

  k.clearRoomFriendCheckboxes = clearRoomFriendCheckboxes;
  k.onAddFriends = onAddFriends;
  k.onPresenceEvent = onPresenceEvent;
  k.refreshFriends = refreshFriends;
})(window.kchat);
