"""LISTEN through cmpool with psycopg2, for integration/notify_drivers_test.go.

Usage: psycopg2_notify.py URL CHANNEL...

Listens on each channel, prints READY, then one line per notification as it arrives
("GOT <channel> <payload>"), until every channel has had the payload "end". Then the
notices the connection received ("NOTICE <message>") and NOTIFY-OK.
"""
import select
import sys
import time

import psycopg2

url, channels = sys.argv[1], sys.argv[2:]
conn = psycopg2.connect(url)
conn.autocommit = True
cur = conn.cursor()
for ch in channels:
    cur.execute("LISTEN " + ch)
print("READY", flush=True)

ended = set()
deadline = time.time() + 120
while len(ended) < len(channels):
    if time.time() > deadline:
        print("TIMEOUT waiting for notifications", flush=True)
        sys.exit(1)
    if select.select([conn], [], [], 1.0) == ([], [], []):
        continue
    conn.poll()
    while conn.notifies:
        n = conn.notifies.pop(0)
        print("GOT %s %s" % (n.channel, n.payload), flush=True)
        if n.payload == "end":
            ended.add(n.channel)
# A query after the last notification: the server's notices before it have been read.
cur.execute("SELECT 1")
for notice in conn.notices:
    print("NOTICE " + notice.strip().replace("\n", " "), flush=True)
conn.close()
print("NOTIFY-OK", flush=True)
