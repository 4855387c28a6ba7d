/* kchat browser client: the open room: history, messages, sending, inviting and leaving.
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

  var dom = k.dom, state = k.state, clear = k.clear, clearError = k.clearError, el = k.el,
      formatTime = k.formatTime, fullTime = k.fullTime, newClientMsgId = k.newClientMsgId,
      showError = k.showError, showNotice = k.showNotice, utf8Length = k.utf8Length;

  var HISTORY_PAGE = 50;
  var SEND_RETRY_DELAYS = [500, 1000, 2000, 4000, 8000]; // ms, then give up (manual retry)
  var MAX_MESSAGE_BYTES = 4096;

  // ---------- room view ----------

  function renderRoomHead() {
    var r = state.rooms.get(state.currentRoomId);
    if (!r) return;
    dom['room-title'].textContent = k.roomTitle(r);
    dom['room-participants'].textContent = k.participantNames(r);
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
    k.renderRooms();
    renderRoomHead();
    // pending sends of this room survive switching rooms
    var pend = state.pending.get(roomId);
    if (pend) pend.forEach(function (p) { dom['message-list'].appendChild(p.el); });
    dom['message-input'].focus();

    k.api('GET', '/api/rooms/' + encodeURIComponent(roomId) + '/messages?limit=' + HISTORY_PAGE).then(function (data) {
      if (gen !== state.roomGen) return;
      var msgs = Array.isArray(data.messages) ? data.messages : [];
      msgs.forEach(function (m) { addMessage(roomId, m, { noScroll: true }); });
      state.view.hasMore = msgs.length >= HISTORY_PAGE && state.view.minSeq > 1;
      k.mergeReads(state.view, data.reads);
      state.view.loaded = true;
      updateHistoryUi();
      scrollToBottom();
      k.renderSeenBy();
      fillViewport(gen);
      k.maybeMarkRead();
    }).catch(function (e) {
      if (gen !== state.roomGen) return;
      dom['history-state'].textContent = '';
      if (isNotMember(e)) {
        k.dropRoom(roomId, '');
        k.reportError(e, 'Cannot open this room');
        return;
      }
      k.reportError(e);
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
    return k.api('GET', url).then(function (data) {
      if (gen !== state.roomGen) return;
      var msgs = Array.isArray(data.messages) ? data.messages : [];
      var before = sc.scrollHeight;
      var top = sc.scrollTop;
      msgs.forEach(function (m) { addMessage(roomId, m, { noScroll: true }); });
      // keep the message the user was looking at in place
      sc.scrollTop = top + (sc.scrollHeight - before);
      v.hasMore = msgs.length >= HISTORY_PAGE && v.minSeq > 1;
      k.mergeReads(v, data.reads);
      k.renderSeenBy();
    }).catch(function (e) {
      if (gen !== state.roomGen) return;
      if (isNotMember(e)) k.dropRoom(roomId, '');
      k.reportError(e);
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
    if (stuckToBottom) k.maybeMarkRead();
  }

  function isNotMember(e) {
    return e instanceof k.ApiError && (e.errorCode === 'NOT_A_MEMBER' || e.errorCode === 'ROOM_NOT_FOUND');
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
    k.busy(dom['invite-submit'], true);
    k.api('POST', '/api/rooms/' + encodeURIComponent(roomId) + '/members', { friendId: ids }).then(function (data) {
      var r = state.rooms.get(roomId);
      if (r && Array.isArray(data.participants)) {
        var before = new Set(r.participants);
        k.upsertRoom({ roomId: roomId, participants: data.participants });
        noteNewMembers(roomId, data.participants.filter(function (p) { return !before.has(p); }));
      }
      if (state.currentRoomId === roomId) hideInvite();
      k.renderRooms();
      showNotice('Invited ' + ids.map(k.friendName).join(', ') + '.');
    }).catch(function (e) {
      if (isNotMember(e)) k.dropRoom(roomId, '');
      k.reportError(e, 'Could not invite');
    }).then(function () {
      k.busy(dom['invite-submit'], false);
      if (!dom['invite-form'].hidden) renderInviteChoices();
    });
  }

  // A new participant's read cursor starts at the room's lastSeq (no read event says so).
  function noteNewMembers(roomId, ids) {
    var v = state.view;
    var r = state.rooms.get(roomId);
    if (!v || v.roomId !== roomId || !r) return;
    ids.forEach(function (id) { if (!v.reads.has(id)) v.reads.set(id, r.lastSeq); });
    k.renderSeenBy();
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
    k.busy(dom['room-leave-confirm'], true);
    k.api('DELETE', '/api/rooms/' + encodeURIComponent(roomId) + '/members/me').then(function () {
      k.dropRoom(roomId, 'You left %s.');
    }).catch(function (e) {
      if (isNotMember(e)) k.dropRoom(roomId, '');
      k.reportError(e, 'Could not leave the room');
    }).then(function () {
      k.busy(dom['room-leave-confirm'], false);
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
    var writer = el('span', 'writer', m.writerId === state.me ? 'You' : k.friendName(m.writerId || ''));
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
      k.renderSeenBy();
      k.maybeMarkRead();
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
    k.api('POST', url, { message: p.text, clientMsgId: p.clientMsgId }).then(function (data) {
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
      var transient = e instanceof k.NetworkError ||
        (e instanceof k.ApiError && (e.status === 502 || e.status === 503 || e.status === 504));
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
    var transient = e instanceof k.NetworkError ||
      (e instanceof k.ApiError && (e.status === 502 || e.status === 503 || e.status === 504));
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
    k.reportError(e);
  }

  // ---------- shared through window.kchat ----------

  k.addMessage = addMessage;
  k.closeRoom = closeRoom;
  k.hideInvite = hideInvite;
  k.hideLeaveConfirm = hideLeaveConfirm;
  k.isNearBottom = isNearBottom;
  k.isNotMember = isNotMember;
  k.loadOlder = loadOlder;
  k.noteNewMembers = noteNewMembers;
  k.onComposerInput = onComposerInput;
  k.onComposerKey = onComposerKey;
  k.onInvite = onInvite;
  k.onLeave = onLeave;
  k.onMessageScroll = onMessageScroll;
  k.onSendSubmit = onSendSubmit;
  k.openRoom = openRoom;
  k.renderInviteChoices = renderInviteChoices;
  k.renderRoomHead = renderRoomHead;
  k.showInvite = showInvite;
  k.showLeaveConfirm = showLeaveConfirm;
  k.watchMessageArea = watchMessageArea;
})(window.kchat);
