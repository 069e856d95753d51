// node-postgres workload through cmpool (transaction mode, routing on), run by
// integration/drivers_test.go: node workload.js PROXY_URL TABLE
// TABLE (id int primary key, note text) exists and is empty. Prints "DRIVER-OK node-pg"
// last and exits 0, or exits 1 with the error. COPY is not tested: node-postgres needs the
// separate pg-copy-streams package for it.
'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

async function main() {
  const [url, table] = process.argv.slice(2);
  if (!url || !table) throw new Error('usage: node workload.js URL TABLE');

  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    // A read in autocommit lands on the replica.
    let r = await client.query('select pg_is_in_recovery() as r');
    assert.equal(r.rows[0].r, true, 'autocommit read should run on the replica');
    for (let i = 0; i < 5; i++) {
      r = await client.query({ name: 'drv_ro', text: 'select pg_is_in_recovery() as r' });
      assert.equal(r.rows[0].r, true, 'a prepared autocommit read should run on the replica');
    }

    // Simple query (no parameters: simple protocol).
    r = await client.query('select 1 as one');
    assert.equal(r.rows[0].one, 1);

    // Parameterised query (unnamed statement, extended protocol).
    r = await client.query('select $1::int + 1 as n, $2::text as s', [41, 'hello']);
    assert.equal(r.rows[0].n, 42);
    assert.equal(r.rows[0].s, 'hello');

    // Named prepared statements: Parse once, then Bind/Execute on whatever server each
    // transaction gets.
    for (let i = 1; i <= 10; i++) {
      r = await client.query({ name: 'drv_insert', text: `insert into ${table} (id, note) values ($1, $2)`, values: [i, `row ${i}`] });
      assert.equal(r.rowCount, 1);
    }
    for (let i = 1; i <= 10; i++) {
      r = await client.query({ name: 'drv_count', text: `select count(*)::int as n from ${table} where id <= $1`, values: [i] });
      assert.equal(r.rows[0].n, i, `count of ids <= ${i} (read-your-writes)`);
    }

    // A transaction rolled back: its row is visible inside it and gone afterwards.
    await client.query('begin');
    await client.query(`insert into ${table} (id, note) values ($1, $2)`, [1000, 'rolled back']);
    r = await client.query(`select count(*)::int as n from ${table} where id = 1000`);
    assert.equal(r.rows[0].n, 1, 'row visible inside its transaction');
    r = await client.query('select pg_is_in_recovery() as r');
    assert.equal(r.rows[0].r, false, 'a read-write transaction runs on the primary');
    await client.query('rollback');
    r = await client.query(`select count(*)::int as n from ${table} where id = 1000`);
    assert.equal(r.rows[0].n, 0, 'rolled-back row must not exist');

    // An error, then the connection still works (simple and extended protocol).
    await assert.rejects(client.query('select 1/0'), (e) => e.code === '22012');
    r = await client.query('select 2 as two');
    assert.equal(r.rows[0].two, 2);
    await assert.rejects(client.query('select $1::int / 0', [1]), (e) => e.code === '22012');
    r = await client.query({ name: 'drv_count', text: `select count(*)::int as n from ${table} where id <= $1`, values: [10] });
    assert.equal(r.rows[0].n, 10);

    // An error inside a transaction, then rollback.
    await client.query('begin');
    await assert.rejects(client.query('select 1/0'), (e) => e.code === '22012');
    await assert.rejects(client.query('select 1'), (e) => e.code === '25P02');
    await client.query('rollback');
    r = await client.query('select 3 as three');
    assert.equal(r.rows[0].three, 3);
  } finally {
    await client.end();
  }
  console.log('DRIVER-OK node-pg');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
