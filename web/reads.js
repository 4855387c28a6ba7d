/* kchat browser client: read cursors: marking read, "seen by" receipts.
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

  var dom = k.dom, state = k.state, el = k.el;

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
    if (!k.isNearBottom()) return;
    var roomId = v.roomId;
    v.readBusy = true;
    r.sentRead = target;
    k.renderRooms();
    k.api('POST', '/api/rooms/' + encodeURIComponent(roomId) + '/read', { readSeq: target }).then(function (data) {
      var rs = (data && typeof data.readSeq === 'number') ? data.readSeq : target;
      if (rs > r.readSeq) r.readSeq = rs;
    }, function (e) {
      v.readFailedSeq = target;
      if (e instanceof k.ApiError && e.status === 401) return;
      if (k.isNotMember(e)) k.dropRoom(roomId, '');
      k.reportError(e, 'Could not mark messages as read');
    }).then(function () {
      r.sentRead = 0;
      v.readBusy = false;
      k.renderRooms();
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
        var x = k.friendName(a), y = k.friendName(b);
        return x < y ? -1 : x > y ? 1 : 0;
      });
      var d = el('div', 'seen', 'Seen by ' + uids.map(k.friendName).join(', '));
      d.setAttribute('data-testid', 'seen-by');
      d.dataset.readers = uids.join(' ');
      d.title = 'Seen by ' + uids.join(', ');
      li.appendChild(d);
    });
  }

  // ---------- shared through window.kchat ----------

  k.maybeMarkRead = maybeMarkRead;
  k.mergeReads = mergeReads;
  k.renderSeenBy = renderSeenBy;
})(window.kchat);
