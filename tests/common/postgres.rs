//! A private PostgreSQL cluster for one test: `initdb` and `pg_ctl` from
//! Debian's postgresql package, run as the `postgres` user (initdb refuses
//! root) in a temp folder, on a free loopback port, trust authentication;
//! stopped and removed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::{free_port, wait_for_port};

/// A running cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Serving TLS with a certificate for 127.0.0.1 from [`Cluster::ca`].
    tls: bool,
}

/// The newest installed server's programs.
fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed; `bash scripts/test.sh` installs it")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("bin").join(name).exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries")
        .join("bin")
        .join(name)
}

/// Runs `cmd` as the `postgres` user; panics with its output on failure.
fn as_postgres(cmd: &str) {
    let out = Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A new cluster with a superuser `addrmunge` and a database `addrmunge`.
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// [`Cluster::start`] serving TLS too, its certificate for IP 127.0.0.1
    /// issued by a CA of its own ([`Cluster::ca`]).
    pub fn start_tls() -> Cluster {
        Cluster::start_with(true)
    }

    /// The folder holding the server's unix socket.
    pub fn socket_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The CA file (PEM) that issued a TLS cluster's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_with(tls: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
        let d = dir.path().display().to_string();
        as_postgres(&format!(
            "{} -D {d}/data -A trust -U addrmunge --no-sync >/dev/null",
            bin("initdb").display()
        ));
        if tls {
            make_certificates(dir.path());
        }
        let cluster = Cluster {
            dir,
            port: free_port(),
            tls,
        };
        cluster.pg_ctl("start");
        wait_for_port(cluster.port, "postgres");
        cluster.psql("postgres", "CREATE DATABASE addrmunge");
        cluster
    }

    fn pg_ctl(&self, what: &str) {
        let d = self.dir.path().display();
        let mut opts = format!(
            "-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        if self.tls {
            opts += &format!(" -c ssl=on -c ssl_cert_file={d}/server.pem -c ssl_key_file={d}/server.key");
        }
        as_postgres(&format!(
            "{} -D {d}/data -o '{opts}' -l {d}/log -w -m fast {what}",
            bin("pg_ctl").display()
        ));
    }

    /// Stops the server (as in an outage); [`Cluster::resume`] starts it again.
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts a stopped server again on the same port.
    pub fn resume(&self) {
        self.pg_ctl("start");
        wait_for_port(self.port, "postgres");
    }

    /// The URL of database `db` as user `user`.
    pub fn url_as(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// The URL of the `addrmunge` database as the superuser.
    pub fn url(&self) -> String {
        self.url_as("addrmunge", "addrmunge")
    }

    /// Runs SQL in database `db` with psql; its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.psql_as("addrmunge", db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs SQL in database `db` as `user`: its output, or psql's error.
    pub fn psql_as(&self, user: &str, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", user, "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-qtA", "-c", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A fresh, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_as("addrmunge", name)
    }
}

/// A CA, and a server certificate for IP 127.0.0.1 it issued, in `dir`;
/// the server's key is the postgres user's, mode 0600, as PostgreSQL wants.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let days = ["-days", "2"];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=addrmunge test CA",
            ][..],
            &days,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
            ][..],
            &days,
            &["-extfile", "ext.cnf", "-out", "server.pem"],
        ]
        .concat(),
    );
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        Command::new("chown")
            .arg("postgres")
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.dir.path().display();
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!(
                "{} -D {d}/data -m immediate stop",
                bin("pg_ctl").display()
            ))
            .output();
    }
}
