/* kchat browser client: the room list.
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

  var dom = k.dom, state = k.state, clearError = k.clearError, el = k.el, showError = k.showError,
      showNotice = k.showNotice;

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
    return k.api('GET', '/api/rooms').then(function (data) {
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
      if (state.currentRoomId && !state.rooms.has(state.currentRoomId)) k.closeRoom();
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
    if (state.currentRoomId === roomId) k.closeRoom();
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
    if (state.currentRoomId) k.renderRoomHead();
    document.title = total ? '(' + total + ') kchat' : 'kchat';
  }

  function onRoomListClick(ev) {
    var btn = ev.target.closest('.room-btn');
    if (!btn) return;
    k.openRoom(btn.dataset.roomId);
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
    k.busy(dom['room-create'], true);
    k.api('POST', '/api/rooms', body).then(function (data) {
      var participants = [state.me].concat((data.friendId || ids).filter(function (x) { return x !== state.me; }));
      upsertRoom({
        roomId: data.roomId,
        roomName: typeof data.roomName === 'string' ? data.roomName : (name || ''),
        participants: participants
      }, true);
      dom['room-name'].value = '';
      dom['room-friends'].querySelectorAll('input[type=checkbox]').forEach(function (c) { c.checked = false; });
      renderRooms();
      k.openRoom(data.roomId);
    }).catch(k.reportError).then(function () { k.busy(dom['room-create'], false); });
  }

  // ---------- shared through window.kchat ----------

  k.dropRoom = dropRoom;
  k.friendName = friendName;
  k.onCreateRoom = onCreateRoom;
  k.onRoomListClick = onRoomListClick;
  k.participantNames = participantNames;
  k.refreshRooms = refreshRooms;
  k.renderRooms = renderRooms;
  k.roomTitle = roomTitle;
  k.unreadOf = unreadOf;
  k.upsertRoom = upsertRoom;
})(window.kchat);
