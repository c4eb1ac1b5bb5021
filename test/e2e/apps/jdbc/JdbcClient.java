// A PostgreSQL JDBC client for the e2e tests: a PreparedStatement executed more times than
// the driver's prepareThreshold (5), so the driver switches from unnamed to named
// server-side statements (S_1...), a batch, and an error.
// Usage: java -cp postgresql.jar JdbcClient.java <port>
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/postgres?user=postgres&sslmode=disable";
        try (Connection c = DriverManager.getConnection(url)) {
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE accounts (id int primary key, owner text)");
            }
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO accounts VALUES (?, ?)")) {
                for (int i = 1; i <= 3; i++) {
                    ins.setInt(1, i);
                    ins.setString(2, "secret-" + i);
                    ins.addBatch();
                }
                ins.executeBatch();
            }
            try (PreparedStatement sel = c.prepareStatement("SELECT owner FROM accounts WHERE id = ?")) {
                for (int i = 0; i < 7; i++) {
                    sel.setInt(1, 1 + i % 3);
                    try (ResultSet rs = sel.executeQuery()) {
                        rs.next();
                    }
                }
            }
            try (Statement st = c.createStatement()) {
                st.executeQuery("SELECT owner FROM missing_table");
                throw new IllegalStateException("the query on a missing table did not fail");
            } catch (SQLException expected) {
                // 42P01: undefined_table
            }
        }
        System.out.println("done");
    }
}
