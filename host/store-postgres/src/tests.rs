//! The backend against the embedded one, operation by operation, and two
//! stores on one database as two hosts. Needs a server: `scripts/test`
//! starts one and sets `ENGAGE_TEST_POSTGRES`.

use std::sync::Arc;

use engage_store::ids::Seeded;
use engage_store::{Reader, Store, StoreError, Table, key, prefix};

use super::*;

/// A fresh database on the test server.
pub(crate) fn database(tag: &str) -> String {
    let base = std::env::var("ENGAGE_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "ENGAGE_TEST_POSTGRES is not set: run ./scripts/test, which starts a throw-away PostgreSQL, \
             or point it at a server where the user may create databases"
        )
    });
    let name = format!("engage_{tag}_{}", engage_store::ids::random_hex(6));
    create_database(&base, &name).expect("create the test database")
}

fn open(url: &str) -> Store {
    Store::on(
        Arc::new(Postgres::open(&PgConfig::new(url)).expect("postgres")),
        engage_store::MAX_BATCH,
    )
}

const T: Table = Table::new("t");
const U: Table = Table::new("u");

/// A seeded workload of puts, removals, sequences and failing jobs gives
/// the same answers and leaves the same data on both backends: every read
/// (gets, counts, scans both ways from every cursor) is compared after
/// each write. A failure prints the seed's step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_as_the_embedded_backend_does() {
    let dir_path = std::env::temp_dir().join(format!(
        "engage-pg-cmp-{}",
        engage_store::ids::random_hex(6)
    ));
    let dir = engage_store::files::open_data_dir(&dir_path).expect("dir");
    let embedded = Store::open(&dir).expect("embedded");
    let pg = open(&database("cmp"));
    let mut rng = Seeded::new(0x9E37_79B9_7F4A_7C15);
    let parts = ["a", "b", "ab", "a\u{1f}b", "é", ""];
    for step in 0..300u32 {
        let table = if rng.below(4) == 0 { U } else { T };
        let k = key(&[
            parts[rng.below(parts.len() as u64) as usize],
            &rng.below(12).to_string(),
        ]);
        let op = rng.below(10);
        let value = rng.below(1000);
        let job = move |tx: &mut engage_store::Tx| -> Result<String, StoreError> {
            Ok(match op {
                0..=4 => {
                    tx.put_u64(table, &k, value)?;
                    "put".into()
                }
                5 | 6 => format!("removed {}", tx.remove(table, &k)?),
                7 => format!("seq {}", tx.next_seq("t", "n")?),
                8 => {
                    tx.put_u64(table, &k, value)?;
                    return Err(StoreError::CommitFailed("late".into()));
                }
                _ => {
                    let before = tx.get_u64(table, &k)?;
                    tx.put_u64(table, &k, before + value)?;
                    format!("was {before}")
                }
            })
        };
        let a = embedded.write(job.clone()).await.map_err(|e| e.to_string());
        let b = pg.write(job).await.map_err(|e| e.to_string());
        assert_eq!(a, b, "step {step}: the write's answer");
        let (ea, pa) = (embedded.read().expect("read"), pg.read().expect("read"));
        for table in [T, U] {
            for p in parts {
                let p = prefix(&[p]);
                assert_eq!(
                    ea.count_from(table, &p, &p).expect("count"),
                    pa.count_from(table, &p, &p).expect("count"),
                    "step {step}: count of {p:?}"
                );
                for reverse in [false, true] {
                    let all = ea.scan_raw(table, &p, None, 100, reverse).expect("scan");
                    assert_eq!(
                        all,
                        pa.scan_raw(table, &p, None, 100, reverse).expect("scan"),
                        "step {step}: scan of {p:?} reverse {reverse}"
                    );
                    for (cursor, _) in all.iter().take(3) {
                        assert_eq!(
                            ea.scan_raw(table, &p, Some(cursor), 2, reverse)
                                .expect("scan"),
                            pa.scan_raw(table, &p, Some(cursor), 2, reverse)
                                .expect("scan"),
                            "step {step}: page after {cursor:?}"
                        );
                    }
                }
            }
        }
    }
    drop((embedded, pg));
    let _ = std::fs::remove_dir_all(dir_path);
}

/// Two stores on one database are two hosts: 2 × 150 concurrent writes
/// that each take the next number of one sequence and record it get every
/// number from 1 to 300 exactly once. The hosts' batches conflict on the
/// sequence's row and run again, which is what SERIALIZABLE is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_a_sequence_without_gaps_or_repeats() {
    let url = database("seq");
    let hosts = [open(&url), open(&url)];
    let mut jobs = Vec::new();
    for i in 0..300usize {
        let store = hosts[i % 2].clone();
        jobs.push(tokio::spawn(async move {
            store
                .write(|tx| {
                    let n = tx.next_seq("t", "shared")?;
                    tx.put_u64(T, &key(&["got", &engage_store::seq_part(n)]), n)?;
                    Ok::<u64, StoreError>(n)
                })
                .await
        }));
    }
    let mut got = Vec::new();
    for j in jobs {
        got.push(j.await.expect("task").expect("write"));
    }
    got.sort_unstable();
    assert_eq!(got, (1..=300).collect::<Vec<u64>>());
    let snap = hosts[1].read().expect("read");
    let p = prefix(&["got"]);
    assert_eq!(snap.count_from(T, &p, &p).expect("count"), 300);
}

/// A database that cannot be reached is an error that says so, at open.
#[test]
fn an_unreachable_database_is_unavailable() {
    let mut config = PgConfig::new("postgres://engage@127.0.0.1:1/engage");
    config.acquire_timeout = Duration::from_secs(2);
    match Postgres::open(&config) {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(e.to_string().contains("connect"), "{e}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a database on port 1"),
    }
}

/// Whether a connection made with `url` is encrypted, by the server's
/// own account (`pg_stat_ssl`), or why it could not be made.
fn encrypted(url: &str) -> Result<bool, String> {
    let pg = Postgres::connect(&PgConfig::new(url)).map_err(|e| e.to_string())?;
    let pool = pg.inner.pool.clone();
    pg.inner
        .block(async move {
            let client = pool.connect_bare().await?;
            let row = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            Ok::<bool, PgError>(row.get(0))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The modes mean what they mean to libpq, against the test server's
/// certificate (for `localhost`, signed by its own CA): verified in full
/// only by name and with the CA, the chain alone through an address, and
/// not at all under `require`; `disable` is plain.
#[test]
fn tls_to_the_database_as_libpq_means_sslmode() {
    let base =
        std::env::var("ENGAGE_TEST_POSTGRES").expect("ENGAGE_TEST_POSTGRES: run ./scripts/test");
    let ca = std::env::var("ENGAGE_TEST_POSTGRES_CA")
        .expect("ENGAGE_TEST_POSTGRES_CA (the test server's CA): run ./scripts/test");
    let port = base
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("a port in ENGAGE_TEST_POSTGRES")
        .to_owned();
    let url = |host: &str, query: &str| format!("postgres://engage@{host}:{port}/postgres?{query}");
    let root = format!("sslrootcert={ca}");
    assert_eq!(
        encrypted(&url("localhost", &format!("sslmode=verify-full&{root}"))),
        Ok(true)
    );
    assert_eq!(
        encrypted(&url("127.0.0.1", &format!("sslmode=verify-ca&{root}"))),
        Ok(true),
        "verify-ca checks the chain, not the name"
    );
    let e = encrypted(&url("127.0.0.1", &format!("sslmode=verify-full&{root}")))
        .expect_err("the certificate is for localhost");
    assert!(e.contains("certificate"), "{e}");
    let e = encrypted(&url("localhost", "sslmode=verify-full"))
        .expect_err("the test CA is not among the built-in roots");
    assert!(e.contains("certificate"), "{e}");
    assert_eq!(encrypted(&url("127.0.0.1", "sslmode=require")), Ok(true));
    assert_eq!(
        encrypted(&url("127.0.0.1", "application_name=engage")),
        Ok(true),
        "prefer, the default, takes what the server offers"
    );
    assert_eq!(encrypted(&url("127.0.0.1", "sslmode=disable")), Ok(false));
}
