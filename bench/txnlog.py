#!/usr/bin/env python3
"""bench/txnlog.py - how long the changelog's Kafka transactions took, read
from the log of a `kchat serve` run with `-X debug=eos,protocol`
(for instance `bench/stages.sh --broker kafka -- -X debug=eos,protocol`).

For every producer of the log it pairs each begin_transaction call with the
commit_transaction return that follows it, and each response of the
transaction coordinator (AddPartitionsToTxn, EndTxn) with the main thread's
handling of it. Prints one line: the number of transactions, begin to
commit p50 / p90 / p99 / mean, response to handling p50 / p90 / p99, and
librdkafka's round-trip times of the Produce, AddPartitionsToTxn and EndTxn
requests of all of serve's producers (the outbox's producer included). The
log's timestamps have 1 ms resolution.

usage: bench/txnlog.py SERVE_LOG
"""
import re
import statistics
import sys

LINE = re.compile(r'%7\|(\d+\.\d+)\|\w+\|[^|]*#(producer-\d+)\| \[thrd:[^\]]*\]: (.*)')
RTT = re.compile(r'Received (?:Produce|AddPartitionsToTxn|EndTxn)Response .*rtt ([0-9.]+)ms')


def pct(values, q):
    """The q-quantile of values (nearest rank below), or nan when empty."""
    if not values:
        return float('nan')
    v = sorted(values)
    return v[int(q * (len(v) - 1))]


def main(path):
    begun, answered = {}, {}
    txn_ms, handoff_ms, rtt_ms = [], [], []
    with open(path, errors='replace') as log:
        for line in log:
            m = LINE.match(line)
            if m is None:
                continue
            t, producer, msg = float(m.group(1)) * 1000, m.group(2), m.group(3)
            if 'API called: begin_transaction' in msg:
                begun[producer] = t
            elif 'commit_transaction return' in msg and 'Success' in msg \
                    and producer in begun:
                txn_ms.append(t - begun.pop(producer))
            if ('Received AddPartitionsToTxnResponse' in msg or
                    'Received EndTxnResponse' in msg):
                answered[producer] = t
            elif (('registered with transaction' in msg or 'EndTxn returned' in msg)
                  and producer in answered):
                handoff_ms.append(t - answered.pop(producer))
            r = RTT.search(msg)
            if r is not None:
                rtt_ms.append(float(r.group(1)))
    if not txn_ms:
        print(f'txnlog: no committed transaction in {path} '
              '(was it run with -X debug=eos,protocol?)', file=sys.stderr)
        return 1
    print(f'txnlog: transactions={len(txn_ms)} '
          f'txn_ms_p50={pct(txn_ms, .5):.1f} txn_ms_p90={pct(txn_ms, .9):.1f} '
          f'txn_ms_p99={pct(txn_ms, .99):.1f} txn_ms_mean={statistics.mean(txn_ms):.1f} '
          f'handoff_ms_p50={pct(handoff_ms, .5):.1f} handoff_ms_p90={pct(handoff_ms, .9):.1f} '
          f'handoff_ms_p99={pct(handoff_ms, .99):.1f} '
          f'rtt_ms_p50={pct(rtt_ms, .5):.2f} rtt_ms_p99={pct(rtt_ms, .99):.2f} '
          f'requests={len(rtt_ms)}')
    return 0


if __name__ == '__main__':
    if len(sys.argv) != 2 or sys.argv[1] in ('-h', '--help'):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) == 2 else 2)
    sys.exit(main(sys.argv[1]))
