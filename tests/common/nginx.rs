//! A real nginx on a free loopback port, with its own config and a copy
//! of a fixture folder as document root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_for_port};

/// A running nginx; stopped (with its workers) on drop.
pub struct Nginx {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    /// The unix socket it also listens on.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    /// The document root (a copy of the fixture folder).
    pub root: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must take its workers down with it,
        // or orphaned workers keep the test's output pipes open.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Serves a copy of `site` (plus a binary `image.png`) on a free port.
    pub fn start(site: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        for e in fs::read_dir(site).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), root.join(e.file_name())).unwrap();
        }
        let blob: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(root.join("image.png"), &blob).unwrap();
        let circles: String = (0..200)
            .map(|i| format!("<circle cx=\"{i}\" cy=\"{i}\" r=\"4\"/>\n"))
            .collect();
        fs::write(
            root.join("logo.svg"),
            format!("<svg xmlns=\"http://www.w3.org/2000/svg\">\n{circles}</svg>\n"),
        )
        .unwrap();
        fs::write(root.join("long.html"), long_page()).unwrap();
        // What a contact page links to, each with an address; and a type
        // nginx compresses that the proxy does not rewrite.
        let files = [
            ("card.vcf", "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Mark\r\nEMAIL;TYPE=work:mjd@plover.com\r\nEND:VCARD\r\n".to_owned()),
            ("event.ics", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nORGANIZER;CN=Mark:mailto:mjd@plover.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n".to_owned()),
            ("map.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"><a href=\"mailto:mjd@plover.com\"><text>mjd@plover.com</text></a></svg>\n".to_owned()),
            ("module.wasm", "\0asm".repeat(5000)),
        ];
        for (name, text) in files {
            fs::write(root.join(name), text).unwrap();
        }
        // Served with no Content-Type, as Apache serves a file whose
        // extension it does not know: a page, long notes, and a binary file.
        fs::create_dir(root.join("untyped")).unwrap();
        let notes = format!(
            "Notes\n{}\nWrite to mjd@plover.com.\n",
            "A line of text.\n".repeat(200)
        );
        let mut blob = b"PK\x03\x04\x14\x00\x00\x00owner: mjd@plover.com\n".to_vec();
        blob.extend_from_slice(&[0u8; 2000]);
        let untyped: [(&str, &[u8]); 3] = [
            (
                "contact",
                b"<html><body><a href=\"mailto:mjd@plover.com\">Mark</a></body></html>\n",
            ),
            ("notes", notes.as_bytes()),
            ("blob", &blob),
        ];
        for (name, bytes) in untyped {
            fs::write(root.join("untyped").join(name), bytes).unwrap();
        }
        // A page named by the owner's address, and a page linking to it
        // (in its path and in a query).
        fs::create_dir_all(root.join("people/mjd@plover.com")).unwrap();
        fs::write(
            root.join("people/mjd@plover.com/index.html"),
            "<p>Mark's page</p>\n",
        )
        .unwrap();
        fs::write(
            root.join("people.html"),
            "<a href=\"/people/mjd@plover.com/\">Mark</a>\n\
             <a href=\"/people/mjd%40plover.com/?to=mjd%40plover.com\">Write</a>\n\
             <form method=\"post\" action=\"/form\"><input type=\"hidden\" name=\"recipient\" \
             value=\"mjd@plover.com\"><textarea name=\"message\"></textarea></form>\n",
        )
        .unwrap();
        Nginx::run(dir, root)
    }

    /// What nginx logged so far in its log `name`: `access.log`, or
    /// `form.log` (the target and body of each request to `/form`).
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self._dir.path().join(name)).unwrap_or_default()
    }

    /// The log `name` once `done` holds of it, or after 5 s: nginx writes a
    /// request's line after its response, so a client that has the
    /// response may read the log before the line is there.
    pub fn log_when(&self, name: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let log = self.log(name);
            if done(&log) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Serves the folder `root` where it is (read only) on a free port.
    pub fn serve(root: &Path) -> Nginx {
        Nginx::run(tempfile::tempdir().unwrap(), root.to_owned())
    }

    fn run(dir: tempfile::TempDir, root: PathBuf) -> Nginx {
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    log_format form '$request_uri $request_body';
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    types {{ text/html html; application/json json; application/rss+xml xml; text/plain txt; image/png png; image/svg+xml svg;
            text/vcard vcf; text/calendar ics; application/wasm wasm; }}
    gzip on; gzip_min_length 0; gzip_types application/json application/rss+xml text/plain image/svg+xml application/wasm;
    # Also for requests with Via (the proxy's): off by default.
    gzip_proxied any;
    server {{
        listen 127.0.0.1:{port};
        listen unix:{d}/nginx.sock;
        root {root};
        location /echo-headers {{ return 200 \"accept-encoding=$http_accept_encoding xff=$http_x_forwarded_for via=$http_via host=$host\"; default_type text/plain; }}
        # Addresses in response headers: a redirect to mailto:, and an
        # image (not rewritten) with a Link, a Refresh and a cookie.
        location /untyped/ {{ types {{ }} default_type \"\"; }}
        # A form handler: nginx reads the body to pass it on, and logs it.
        location = /form {{ access_log {d}/form.log form; proxy_pass http://127.0.0.1:{port}/echo-headers; }}
        location = /contact {{ return 302 \"mailto:mjd@plover.com?subject=Hello\"; }}
        location = /card.png {{
            add_header Link \"<mailto:mjd@plover.com>; rel=author\";
            add_header Refresh \"5; url=mailto:mjd%40plover.com\";
            add_header Set-Cookie \"owner=mjd@plover.com; Path=/\";
            try_files /image.png =404;
        }}
    }}
}}
",
            root = root.display()
        );
        fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off; master_process on;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/test.sh installs it)");
        wait_for_port(port, "nginx");
        Nginx {
            child,
            port,
            socket: dir.path().join("nginx.sock"),
            _dir: dir,
            root,
        }
    }
}

/// A page of ~80 KB, three addresses in it, its paragraphs all different
/// (so it compresses as a real page does, not 60:1).
fn long_page() -> String {
    let mut page = String::from("<!doctype html>\n<title>Long</title>\n");
    for i in 0..1200u32 {
        let word =
            |k: u32| ["plover", "guitar", "perl", "diff", "mail", "page", "wool"][(i * k % 7) as usize];
        page.push_str(&format!(
            "<p id=\"p{i}\">{} {} {} number {i}.</p>\n",
            word(3),
            word(5),
            word(11)
        ));
        if i % 400 == 17 {
            page.push_str(&format!(
                "<a href=\"mailto:joe{i}@ihatespam.test\">joe{i}@ihatespam.test</a>\n"
            ));
        }
    }
    page
}
