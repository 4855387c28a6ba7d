/*
 * The hand-off from the Kafka thread and the catch-up threads to the loop
 * thread: a list of gw_item under gw->lock, and gw->notify_ev, made active
 * when the list stops being empty (libevent's pthread locking is on, so any
 * thread may do that). On the loop, notify_ev's callback takes the whole
 * list at once and hands each item to the file that owns its concept:
 * responses and failed deliveries to the pending calls (api.c, pending.c),
 * chat-events records to the event streams (sse.c).
 */
#include "gateway/gateway_int.h"

#include <stdlib.h>

void kchat__gw_push(kchat_gateway *gw, gw_item *it)
{
    bool was_empty;

    it->next = NULL;
    pthread_mutex_lock(&gw->lock);
    was_empty = gw->q_head == NULL;
    if (gw->q_tail)
        gw->q_tail->next = it;
    else
        gw->q_head = it;
    gw->q_tail = it;
    pthread_mutex_unlock(&gw->lock);
    if (was_empty)
        event_active(gw->notify_ev, EV_READ, 0);
}

void kchat__gw_drain(kchat_gateway *gw)
{
    gw_item *it, *next;

    pthread_mutex_lock(&gw->lock);
    it = gw->q_head;
    gw->q_head = gw->q_tail = NULL;
    pthread_mutex_unlock(&gw->lock);
    for (; it; it = next) {
        next = it->next;
        kchat__gw_handle_item(gw, it);
    }
}

void kchat__gw_handle_item(kchat_gateway *gw, gw_item *it)
{
    switch (it->kind) {
    case GW_ITEM_RESPONSE:
        kchat__gw_api_answer(gw, it);
        break;
    case GW_ITEM_DR_FAIL:
        kchat__gw_pending_fail(gw, it->cid);
        break;
    case GW_ITEM_EVENT:
        kchat__gw_streams_event(gw, it);
        break;
    case GW_ITEM_CATCHUP:
        kchat__gw_stream_catchup_item(gw, it);
        break;
    case GW_ITEM_CATCHUP_DONE:
        kchat__gw_stream_catchup_done(gw, it);
        break;
    }
    free(it->data);
    free(it);
}

void kchat__gw_items_free(gw_item *list)
{
    gw_item *next;

    for (; list; list = next) {
        next = list->next;
        free(list->data);
        free(list);
    }
}

void kchat__gw_queue_free(kchat_gateway *gw)
{
    kchat__gw_items_free(gw->q_head);
    gw->q_head = gw->q_tail = NULL;
}
