//! `protocols::sql` on ten typical PostgreSQL and MySQL texts: what sanitizing
//! (`db.query.text`) and summarising (`db.query.summary`) cost per query. sqlparser 0.64's
//! `Tokenizer` alone took 8 to 10 times `sanitize`'s time on these (see the top of
//! src/protocols/sql.rs).
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use otelcol_ebpf_core::protocols::sql;

const QUERIES: &[&str] = &[
    "SELECT id, name, email FROM users WHERE id = $1",
    "SELECT \"User\".\"id\", \"User\".\"email\", \"User\".\"createdAt\" FROM \"public\".\"User\" \
     WHERE \"User\".\"email\" = $1 LIMIT $2 OFFSET $3",
    "SELECT * FROM orders WHERE customer_id = 1234 AND status IN ('paid', 'shipped', 'delivered') \
     AND created_at > '2024-05-01 00:00:00' ORDER BY created_at DESC LIMIT 50",
    "INSERT INTO events (ts, kind, payload) VALUES (1717000000, 'click', '{\"x\":1}'), \
     (1717000001, 'view', '{\"x\":2}'), (1717000002, 'click', '{\"x\":3}')",
    "UPDATE accounts SET balance = balance - 100.50, updated_at = now() \
     WHERE id = 42 AND balance >= 100.50 RETURNING balance",
    "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
     LEFT JOIN addresses a ON a.customer_id = c.id WHERE o.created_at >= $1 AND c.country = 'DE'",
    "WITH recent AS (SELECT user_id, max(ts) AS last FROM logins WHERE ts > now() - interval '30 days' \
     GROUP BY user_id) SELECT u.id, r.last FROM users u JOIN recent r ON r.user_id = u.id",
    "SELECT data->>'name', data #> '{address,city}' FROM profiles \
     WHERE data @> '{\"active\": true}' AND data ? 'email'",
    "/* app=web,route=/cart */ BEGIN; DELETE FROM cart_items WHERE cart_id = 99 AND sku = 'ABC-123'; COMMIT",
    "CREATE TABLE IF NOT EXISTS audit_log (id bigserial PRIMARY KEY, actor text NOT NULL, \
     action text, at timestamptz DEFAULT now())",
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sql (10 queries)");
    g.throughput(Throughput::Elements(QUERIES.len() as u64));
    g.bench_function("sanitize", |b| {
        b.iter(|| {
            for q in QUERIES {
                black_box(sql::sanitize(black_box(q)));
            }
        })
    });
    g.bench_function("analyze", |b| {
        b.iter(|| {
            for q in QUERIES {
                black_box(sql::analyze(black_box(q)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
