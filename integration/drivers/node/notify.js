// LISTEN through cmpool with node-postgres, for integration/notify_drivers_test.go.
//
// Usage: node notify.js URL CHANNEL...
//
// Listens on each channel, prints READY, then one line per notification as it arrives
// ("GOT <channel> <payload>"), until every channel has had the payload "end". Then the
// notices the connection received ("NOTICE <message>") and NOTIFY-OK.
'use strict';
const { Client } = require('pg');

async function main() {
  const [url, ...channels] = process.argv.slice(2);
  const client = new Client({ connectionString: url });
  const notices = [];
  client.on('notice', (n) => notices.push(n.message));
  const ended = new Set();
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  client.on('notification', (n) => {
    process.stdout.write(`GOT ${n.channel} ${n.payload}\n`);
    if (n.payload === 'end') {
      ended.add(n.channel);
      if (ended.size === channels.length) finish();
    }
  });
  await client.connect();
  for (const ch of channels) await client.query(`LISTEN ${ch}`);
  process.stdout.write('READY\n');
  const timer = setTimeout(() => {
    process.stdout.write('TIMEOUT waiting for notifications\n');
    process.exit(1);
  }, 120000);
  await done;
  clearTimeout(timer);
  // A query after the last notification: the server's notices before it have been read.
  await client.query('SELECT 1');
  for (const m of notices) process.stdout.write(`NOTICE ${m.replace(/\n/g, ' ')}\n`);
  await client.end();
  process.stdout.write('NOTIFY-OK\n');
}

main().catch((err) => {
  process.stdout.write(`FAILED ${err.stack || err}\n`);
  process.exit(1);
});
