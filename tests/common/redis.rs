//! A real `redis-server`, started by the test on a free port and stopped with it.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Arguments beyond the port and the persistence settings (`--replicaof`...).
    args: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    /// Starts redis-server on a free port, keeping nothing on disk.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts redis-server with `args` besides the defaults (`--replicaof h p`...).
    pub fn start_with(args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again on the same port and writes `keys` on the first connection it
    /// accepts, over raw RESP: before a client that was waiting for it (a
    /// resubscribing node) can do the several round trips that reading them takes.
    pub fn restart_with_keys(&mut self, keys: &[(&str, &str)]) {
        use std::io::{Read, Write};
        self.spawn();
        let mut resp = String::new();
        for (k, v) in keys {
            resp.push_str(&format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            ));
        }
        resp.push_str("*1\r\n$4\r\nPING\r\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            if s.write_all(resp.as_bytes()).is_err() {
                continue;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"+PONG\r\n") {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if got.ends_with(b"+PONG\r\n") {
                let oks = got.windows(5).filter(|w| w == b"+OK\r\n").count();
                assert_eq!(oks, keys.len(), "{}", String::from_utf8_lossy(&got));
                return;
            }
        }
    }

    /// Starts it (again) on the same port; waits until it accepts connections.
    pub fn restart(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it: apt-get install redis-server")
            });
        self.child = Some(child);
    }

    /// Stops it and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`"STOP"`, `"CONT"`) to the running redis-server: STOP makes it
    /// hang with its port open, the way an overloaded or frozen Redis looks.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Runs redis-cli against it, as a site's back end would write; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three Redis Sentinels watching the master on `master_port` as `mymaster`, with a
/// quorum of 2, a master taken for down after 1 s without an answer.
pub struct Sentinels {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl Sentinels {
    pub fn start(master_port: u16) -> Sentinels {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-sentinels-{}-{master_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let children = ports
            .iter()
            .map(|port| {
                let conf = dir.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\n\
                         sentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds mymaster 1000\n\
                         sentinel failover-timeout mymaster 5000\n",
                        dir.display()
                    ),
                )
                .unwrap();
                Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server --sentinel")
            })
            .collect();
        Sentinels {
            children,
            ports,
            dir,
        }
    }

    /// Asks sentinel `i` something (`SENTINEL ...`); returns stdout.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.ports[i].to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `redis-sentinel://` for all three.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-sentinel://{}/mymaster", hosts.join(","))
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
