//! A small connection pool: at most `size` connections, each with the
//! store's statements prepared once; a connection the server closed is
//! dropped, not handed out again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, Statement};

/// Connect (over TLS when `tls` is given) and drive the connection on the
/// current runtime until the client is dropped or the server closes it.
pub(crate) async fn open_client(
    config: &tokio_postgres::Config,
    tls: Option<&crate::tls::Connector>,
) -> Result<Client, tokio_postgres::Error> {
    let client = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls.clone()).await?;
            tokio::spawn(drive(connection));
            client
        }
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "database connection ended");
    }
}

use crate::PgError;

/// The statements every view runs, prepared per connection.
pub(crate) struct Statements {
    pub get: Statement,
    pub count: Statement,
    pub scan_from: Statement,
    pub scan_after: Statement,
    pub scan_back: Statement,
    pub upsert: Statement,
    pub delete: Statement,
}

pub(crate) struct Conn {
    pub client: Client,
    pub st: Statements,
}

pub(crate) struct Pool {
    config: tokio_postgres::Config,
    tls: Option<crate::tls::Connector>,
    idle: Mutex<Vec<Arc<Conn>>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// The backend's runtime, where connections run and leases roll back.
    handle: tokio::runtime::Handle,
}

impl Pool {
    pub fn new(
        config: tokio_postgres::Config,
        tls: Option<crate::tls::Connector>,
        size: usize,
        timeout: Duration,
        handle: tokio::runtime::Handle,
    ) -> Pool {
        Pool {
            handle,
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
            timeout,
        }
    }

    /// A connection, waiting at most the acquire timeout for one.
    pub async fn get(self: &Arc<Self>) -> Result<Lease, PgError> {
        let permit = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                PgError::Unavailable(format!(
                    "no database connection was free within {} ms; raise [storage] pool_size or find what holds them",
                    self.timeout.as_millis()
                ))
            })?
            .map_err(|_| PgError::Unavailable("the connection pool is closed".into()))?;
        let idle = loop {
            let next = self.idle.lock().ok().and_then(|mut v| v.pop());
            match next {
                Some(c) if c.client.is_closed() => continue,
                other => break other,
            }
        };
        let conn = match idle {
            Some(c) => c,
            None => tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| {
                    PgError::Unavailable(format!(
                        "connecting to the database took longer than {} ms",
                        self.timeout.as_millis()
                    ))
                })??,
        };
        Ok(Lease {
            conn: Some(conn),
            pool: self.clone(),
            _permit: Some(permit),
            in_transaction: false,
        })
    }

    async fn connect(&self) -> Result<Arc<Conn>, PgError> {
        let client = open_client(&self.config, self.tls.as_ref())
            .await
            .map_err(|e| {
                PgError::Unavailable(format!(
                    "connecting to the database: {}",
                    crate::with_causes(&e)
                ))
            })?;
        let st = Statements {
            get: client
                .prepare("SELECT value FROM engage_kv WHERE tbl = $1 AND key = $2")
                .await?,
            count: client
                .prepare(
                    "SELECT count(*) FROM engage_kv WHERE tbl = $1 AND key >= $2 AND key < $3",
                )
                .await?,
            scan_from: client
                .prepare(
                    "SELECT key, value FROM engage_kv WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                )
                .await?,
            scan_after: client
                .prepare(
                    "SELECT key, value FROM engage_kv WHERE tbl = $1 AND key > $2 AND key < $3 ORDER BY key LIMIT $4",
                )
                .await?,
            scan_back: client
                .prepare(
                    "SELECT key, value FROM engage_kv WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key DESC LIMIT $4",
                )
                .await?,
            upsert: client
                .prepare(
                    "INSERT INTO engage_kv (tbl, key, value) \
                     SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[]) \
                     ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
                )
                .await?,
            delete: client
                .prepare("DELETE FROM engage_kv WHERE tbl = $1 AND key = $2")
                .await?,
        };
        Ok(Arc::new(Conn { client, st }))
    }

    /// A bare connection for the migrations, before the table exists.
    pub async fn connect_bare(&self) -> Result<Client, PgError> {
        tokio::time::timeout(self.timeout, open_client(&self.config, self.tls.as_ref()))
            .await
            .map_err(|_| PgError::Unavailable("connecting to the database timed out".into()))?
            .map_err(|e| {
                PgError::Unavailable(format!(
                    "connecting to the database: {}",
                    crate::with_causes(&e)
                ))
            })
    }
}

/// A connection taken from the pool. Dropped, it goes back (after a
/// `ROLLBACK` when a transaction may still be open); a closed one is not
/// kept.
pub(crate) struct Lease {
    conn: Option<Arc<Conn>>,
    pool: Arc<Pool>,
    _permit: Option<OwnedSemaphorePermit>,
    in_transaction: bool,
}

impl Lease {
    pub fn conn(&self) -> &Arc<Conn> {
        match &self.conn {
            Some(c) => c,
            None => unreachable!("a lease holds its connection until dropped"),
        }
    }

    /// Marks the lease as holding an open transaction.
    pub fn in_transaction(mut self) -> Lease {
        self.in_transaction = true;
        self
    }

    /// Whether a transaction may be open on it.
    pub fn is_in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// A transaction was begun on it.
    pub fn mark_in_transaction(&mut self) {
        self.in_transaction = true;
    }

    /// The transaction ended (committed or rolled back).
    pub fn ended(&mut self) {
        self.in_transaction = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let permit = self._permit.take();
        let pool = self.pool.clone();
        if !self.in_transaction {
            if !conn.client.is_closed()
                && let Ok(mut idle) = pool.idle.lock()
            {
                idle.push(conn);
            }
            drop(permit);
            return;
        }
        // Roll back on the backend's runtime; the permit goes with the
        // connection, so nobody gets it while the transaction is open.
        self.pool.handle.clone().spawn(async move {
            if conn.client.batch_execute("ROLLBACK").await.is_ok()
                && let Ok(mut idle) = pool.idle.lock()
            {
                idle.push(conn);
            }
            drop(permit);
        });
    }
}
