"""psycopg2 workload through cmpool (transaction mode, routing on).

Run by integration/drivers_test.go with Debian's python3-psycopg2:
    /usr/bin/python3 psycopg2_workload.py PROXY_URL TABLE
TABLE (id int primary key, note text) exists and is empty. Prints "DRIVER-OK psycopg2"
last and exits 0, or exits non-zero with the error.

psycopg2 interpolates parameters on the client and sends simple queries only; it has no
protocol-level prepared statements. The "reused statement" step executes the same
parameterised statement repeatedly (executemany), and checks that SQL-level PREPARE is
refused in transaction mode (0A000, docs/prepared-statements.md) without breaking the
connection.
"""

import io
import sys

import psycopg2
import psycopg2.errorcodes


def expect_error(cur, sql, code):
    try:
        cur.execute(sql)
    except psycopg2.Error as e:
        if e.pgcode != code:
            raise AssertionError(f"{sql!r}: SQLSTATE {e.pgcode}, want {code}: {e}") from e
        return
    raise AssertionError(f"{sql!r}: no error, want SQLSTATE {code}")


def one(cur, sql, args=None):
    cur.execute(sql, args)
    row = cur.fetchone()
    return row[0]


def main():
    url, table = sys.argv[1], sys.argv[2]
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()

    # A read in autocommit lands on the replica.
    assert one(cur, "select pg_is_in_recovery()") is True, "autocommit read should run on the replica"

    # Simple query.
    assert one(cur, "select 1") == 1

    # Parameterised query.
    cur.execute("select %s::int + 1, %s::text", (41, "it's"))
    assert cur.fetchone() == (42, "it's")

    # The same statement reused (client-side parameters).
    cur.executemany(f"insert into {table} (id, note) values (%s, %s)", [(i, f"row {i}") for i in range(1, 11)])
    for i in range(1, 11):
        n = one(cur, f"select count(*) from {table} where id <= %s", (i,))
        assert n == i, f"count of ids <= {i} is {n} (read-your-writes)"
    # SQL-level PREPARE works in transaction mode: the name is this client's, on any server.
    cur.execute("prepare drv_p (int) as select $1 + 1")
    for i in range(5):
        assert one(cur, f"execute drv_p({i})") == i + 1
    expect_error(cur, "prepare drv_p as select 1", psycopg2.errorcodes.DUPLICATE_PREPARED_STATEMENT)
    cur.execute("deallocate drv_p")
    expect_error(cur, "execute drv_p(1)", psycopg2.errorcodes.INVALID_SQL_STATEMENT_NAME)
    assert one(cur, "select 1") == 1

    # A transaction rolled back: its row is visible inside it and gone afterwards.
    conn.autocommit = False
    cur.execute(f"insert into {table} (id, note) values (%s, %s)", (1000, "rolled back"))
    assert one(cur, f"select count(*) from {table} where id = 1000") == 1, "row visible inside its transaction"
    assert one(cur, "select pg_is_in_recovery()") is False, "a read-write transaction runs on the primary"
    conn.rollback()
    assert one(cur, f"select count(*) from {table} where id = 1000") == 0, "rolled-back row must not exist"
    conn.commit()

    # An error inside a transaction, then rollback.
    expect_error(cur, "select 1/0", psycopg2.errorcodes.DIVISION_BY_ZERO)
    expect_error(cur, "select 1", psycopg2.errorcodes.IN_FAILED_SQL_TRANSACTION)
    conn.rollback()
    conn.autocommit = True

    # An error in autocommit, then the connection still works.
    expect_error(cur, "select 1/0", psycopg2.errorcodes.DIVISION_BY_ZERO)
    assert one(cur, "select 2") == 2

    # COPY in and out.
    data = "".join(f"{i}\tcopied {i}\n" for i in range(2001, 2101))
    cur.copy_expert(f"copy {table} (id, note) from stdin", io.StringIO(data))
    assert cur.rowcount == 100, f"COPY FROM rowcount {cur.rowcount}"
    out = io.StringIO()
    cur.copy_expert(f"copy (select id, note from {table} where id > 2000 order by id) to stdout", out)
    assert out.getvalue() == data, "COPY TO returned other rows"
    assert one(cur, f"select count(*) from {table}") == 110

    conn.close()
    print("DRIVER-OK psycopg2")


if __name__ == "__main__":
    main()
