// PgJDBC workload through cmpool (transaction mode, routing on), run by
// integration/drivers_test.go with Debian's libpostgresql-jdbc-java:
//   javac -cp /usr/share/java/postgresql.jar -d DIR Workload.java
//   java -cp DIR:/usr/share/java/postgresql.jar Workload JDBC_URL TABLE NAME
// JDBC_URL carries prepareThreshold (default 5; 1 prepares on the server at first use).
// TABLE (id int primary key, note text) exists and is empty. Prints "DRIVER-OK NAME" last
// and exits 0, or exits 1 with the error.

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class Workload {
    static final int EXECUTIONS = 10;

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static long one(Statement st, String sql) throws SQLException {
        try (ResultSet rs = st.executeQuery(sql)) {
            check(rs.next(), sql + ": no row");
            return rs.getLong(1);
        }
    }

    static boolean bool(Statement st, String sql) throws SQLException {
        try (ResultSet rs = st.executeQuery(sql)) {
            check(rs.next(), sql + ": no row");
            return rs.getBoolean(1);
        }
    }

    static void expectState(Statement st, String sql, String state) {
        try {
            st.execute(sql);
        } catch (SQLException e) {
            check(state.equals(e.getSQLState()), sql + ": SQLSTATE " + e.getSQLState() + ", want " + state + ": " + e);
            return;
        }
        throw new AssertionError(sql + ": no error, want SQLSTATE " + state);
    }

    static void checkServerPrepared(PreparedStatement ps, String what) throws SQLException {
        check(ps.unwrap(PGStatement.class).isUseServerPrepare(),
                what + ": not server-prepared after " + EXECUTIONS + " executions");
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], table = args[1], name = args[2];
        try (Connection conn = DriverManager.getConnection(url)) {
            check(conn.getAutoCommit(), "autocommit is the default");
            Statement st = conn.createStatement();

            // A read in autocommit lands on the replica, also once it is server-prepared.
            check(bool(st, "select pg_is_in_recovery()"), "autocommit read should run on the replica");
            try (PreparedStatement ps = conn.prepareStatement("select pg_is_in_recovery()")) {
                for (int i = 0; i < EXECUTIONS; i++) {
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next() && rs.getBoolean(1), "prepared autocommit read " + i + " should run on the replica");
                    }
                }
                checkServerPrepared(ps, "replica read");
            }

            // Simple query.
            check(one(st, "select 1") == 1, "select 1");

            // Parameterised query.
            try (PreparedStatement ps = conn.prepareStatement("select ?::int + 1, ?::text")) {
                ps.setInt(1, 41);
                ps.setString(2, "hello");
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getInt(1) == 42 && "hello".equals(rs.getString(2)), "parameterised query");
                }
            }

            // Prepared statements reused: past prepareThreshold they are named statements on
            // the server, bound on whatever server each transaction gets.
            try (PreparedStatement ps = conn.prepareStatement("insert into " + table + " (id, note) values (?, ?)")) {
                for (int i = 1; i <= EXECUTIONS; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "row " + i);
                    check(ps.executeUpdate() == 1, "insert " + i);
                }
                checkServerPrepared(ps, "insert");
            }
            try (PreparedStatement ps = conn.prepareStatement("select count(*) from " + table + " where id <= ?")) {
                for (int i = 1; i <= EXECUTIONS; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "count: no row");
                        long n = rs.getLong(1);
                        check(n == i, "count of ids <= " + i + " is " + n + " (read-your-writes)");
                    }
                }
                checkServerPrepared(ps, "count");
            }

            // A transaction rolled back: its row is visible inside it and gone afterwards.
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement("insert into " + table + " (id, note) values (?, ?)")) {
                ps.setInt(1, 1000);
                ps.setString(2, "rolled back");
                check(ps.executeUpdate() == 1, "insert 1000");
            }
            check(one(st, "select count(*) from " + table + " where id = 1000") == 1, "row visible inside its transaction");
            check(!bool(st, "select pg_is_in_recovery()"), "a read-write transaction runs on the primary");
            conn.rollback();
            check(one(st, "select count(*) from " + table + " where id = 1000") == 0, "rolled-back row must not exist");
            conn.commit();

            // An error inside a transaction, then rollback.
            expectState(st, "select 1/0", "22012");
            expectState(st, "select 1", "25P02");
            conn.rollback();
            conn.setAutoCommit(true);

            // An error in autocommit, then the connection still works, prepared statements too.
            expectState(st, "select 1/0", "22012");
            check(one(st, "select 2") == 2, "select 2 after an error");
            try (PreparedStatement ps = conn.prepareStatement("select ?::int / 0")) {
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, i);
                    try {
                        ps.executeQuery().close();
                        throw new AssertionError("prepared division by zero: no error");
                    } catch (SQLException e) {
                        check("22012".equals(e.getSQLState()), "prepared division by zero: " + e);
                    }
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("select count(*) from " + table + " where id <= ?")) {
                ps.setInt(1, EXECUTIONS);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getLong(1) == EXECUTIONS, "count after errors");
                }
            }

            // COPY in and out.
            CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder data = new StringBuilder();
            for (int i = 2001; i <= 2100; i++) {
                data.append(i).append('\t').append("copied ").append(i).append('\n');
            }
            long copied = copy.copyIn("copy " + table + " (id, note) from stdin", new StringReader(data.toString()));
            check(copied == 100, "COPY FROM copied " + copied);
            StringWriter out = new StringWriter();
            copy.copyOut("copy (select id, note from " + table + " where id > 2000 order by id) to stdout", out);
            check(out.toString().equals(data.toString()), "COPY TO returned other rows");
            check(one(st, "select count(*) from " + table) == 110, "row count after COPY");
        }
        System.out.println("DRIVER-OK " + name);
    }
}
