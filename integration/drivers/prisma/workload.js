// Prisma 7 workload through cmpool (transaction mode, routing on), run by
// integration/drivers_test.go: node workload.js PROXY_URL TABLE [named]
// TABLE (id int primary key, note text) exists and is empty. The workload's own tables live in
// a schema named after TABLE, created here with SQL. "named" makes @prisma/adapter-pg name its
// prepared statements (statementNameGenerator), which node-postgres then prepares once per
// connection and reuses. Prints "DRIVER-OK prisma" (or "prisma-named") last and exits 0, or
// exits 1 with the error.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { PrismaClient } = require('@prisma/client');
const { PrismaPg } = require('@prisma/adapter-pg');

const tasks = 50;
const accounts = 10;
const startBalance = 1000;

async function main() {
  const [url, table, mode] = process.argv.slice(2);
  if (!url || !table) throw new Error('usage: node workload.js URL TABLE [named]');
  const named = mode === 'named';
  const name = named ? 'prisma-named' : 'prisma';
  const schema = table;
  const options = { schema };
  if (named) {
    options.statementNameGenerator = (q) => 'prisma_' + crypto.createHash('sha1').update(q.sql).digest('hex').slice(0, 16);
  }
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 10 }, options) });
  try {
    // The tables, with SQL.
    for (const ddl of [
      `drop schema if exists "${schema}" cascade`,
      `create schema "${schema}"`,
      `create table "${schema}"."Author" (id serial primary key, name text not null)`,
      `create table "${schema}"."Book" (id serial primary key, title text not null, "authorId" int not null references "${schema}"."Author")`,
      `create table "${schema}"."Account" (id int primary key, owner text not null, balance int not null check (balance >= 0))`,
    ]) {
      await prisma.$executeRawUnsafe(ddl);
    }

    // Creates with relations, then findMany with include.
    for (let i = 1; i <= 5; i++) {
      await prisma.author.create({
        data: { name: `author ${i}`, books: { create: [{ title: `book ${i}a` }, { title: `book ${i}b` }] } },
      });
    }
    const authors = await prisma.author.findMany({ include: { books: { orderBy: { id: 'asc' } } }, orderBy: { id: 'asc' } });
    assert.equal(authors.length, 5);
    for (const [i, a] of authors.entries()) {
      assert.deepEqual(a.books.map((b) => b.title), [`book ${i + 1}a`, `book ${i + 1}b`]);
    }

    // A batch transaction: the accounts, all or nothing.
    await prisma.$transaction(
      Array.from({ length: accounts }, (_, i) => prisma.account.create({ data: { id: i + 1, owner: `owner ${i + 1}`, balance: startBalance } })),
    );
    await assert.rejects(
      prisma.$transaction([
        prisma.account.create({ data: { id: 100, owner: 'new', balance: 1 } }),
        prisma.account.create({ data: { id: 1, owner: 'duplicate', balance: 1 } }),
      ]),
      'a batch with a failing statement fails',
    );
    assert.equal(await prisma.account.count({ where: { id: 100 } }), 0, 'the failed batch left nothing');

    // $queryRaw: an autocommit read.
    const rows = await prisma.$queryRaw`select 41 + 1 as n`;
    assert.equal(Number(rows[0].n), 42);

    // The driver matrix's table: ids 1..10, and id 1000 in a rolled-back interactive transaction.
    for (let i = 1; i <= 10; i++) {
      assert.equal(await prisma.$executeRawUnsafe(`insert into ${table} (id, note) values ($1, $2)`, i, `row ${i}`), 1);
    }
    await assert.rejects(
      prisma.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`insert into ${table} (id, note) values (1000, 'rolled back')`);
        throw new Error('roll back');
      }),
      /roll back/,
    );

    // 50 concurrent tasks: each moves money between two accounts in an interactive
    // transaction that locks both rows (SELECT ... FOR UPDATE, in id order), and upserts.
    const results = await Promise.allSettled(
      Array.from({ length: tasks }, (_, i) =>
        (async () => {
          const from = (i % accounts) + 1;
          const to = ((i * 7 + 3) % accounts) + 1 === from ? (from % accounts) + 1 : ((i * 7 + 3) % accounts) + 1;
          const amount = (i % 5) + 1;
          await prisma.$transaction(
            async (tx) => {
              const locked = await tx.$queryRawUnsafe(
                `select id, balance from "${schema}"."Account" where id in ($1, $2) order by id for update`, from, to);
              assert.equal(locked.length, 2);
              await tx.account.update({ where: { id: from }, data: { balance: { decrement: amount } } });
              await tx.account.update({ where: { id: to }, data: { balance: { increment: amount } } });
            },
            { timeout: 60000, maxWait: 60000 },
          );
          await prisma.account.upsert({
            where: { id: 1000 + (i % 5) },
            update: { owner: `task ${i}` },
            create: { id: 1000 + (i % 5), owner: `task ${i}`, balance: 0 },
          });
        })(),
      ),
    );
    const failed = results.filter((r) => r.status === 'rejected');
    // Concurrent upserts of one new row may race to its insert (Prisma's upsert is not
    // ON CONFLICT): one wins, the other fails with a unique violation. Nothing else may fail.
    for (const f of failed) {
      assert.equal(f.reason?.code, 'P2002', `a task failed: ${f.reason}`);
    }

    // The data at the end: money is conserved, every upserted row exists.
    const sum = await prisma.account.aggregate({ _sum: { balance: true }, where: { id: { lte: accounts } } });
    assert.equal(sum._sum.balance, accounts * startBalance, 'transfers conserve the total');
    assert.equal(await prisma.account.count({ where: { id: { gte: 1000 } } }), 5);
    assert.equal(await prisma.book.count(), 10);
    console.log(`${name}: ${tasks} tasks, ${tasks - failed.length} done, ${failed.length} lost an upsert race`);
    console.log(`DRIVER-OK ${name}`);
  } finally {
    await prisma.$disconnect();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
