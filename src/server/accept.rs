//! The accept path: the accept loop, admission (connection limits, per-address
//! limits, handshake slots), the thread that turns clients away, and each
//! connection's thread from its opening handshake to its end.

use super::*;

impl Server {
    /// Accepts connections on `listener` until [`Server::shutdown`], then waits up to
    /// `shutdown_grace` for the connections to close, stops the writers and returns.
    pub fn run(&self, listener: TcpListener) -> io::Result<()> {
        self.run_with(listener, |_| {})
    }

    /// [`Server::run`], calling `ready` with the address once every helper thread runs
    /// and connections are about to be accepted.
    pub fn run_with(
        &self,
        listener: TcpListener,
        ready: impl FnOnce(SocketAddr),
    ) -> io::Result<()> {
        let shared = &self.shared;
        *shared.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = listener.local_addr().ok();
        match sys::raise_open_file_limit() {
            Ok(limit) if (limit as usize) < shared.config.max_connections + 64 => shared.log.log(
                Level::Warn,
                None,
                "open file limit is below max_connections",
                &[
                    ("limit", &limit),
                    ("max_connections", &shared.config.max_connections),
                ],
            ),
            Ok(_) => {}
            Err(e) => shared.log.log(
                Level::Warn,
                None,
                "cannot raise the open file limit",
                &[("error", &e)],
            ),
        }
        for i in 0..shared.writers.len() {
            let weak = Arc::downgrade(shared);
            self.spawn(format!("writer-{i}"), 64 * 1024, move || {
                writer::run(i, weak)
            })?;
        }
        let rejecter = self.start_rejecter()?;
        let admin_addr = match &shared.config.admin_listen {
            Some(addr) => {
                let admin = admin::bind(addr, shared.config.admin_token.as_deref())?;
                let local = admin.local_addr()?;
                let server = self.clone();
                self.spawn("admin".into(), 128 * 1024, move || {
                    admin::serve(&server, admin)
                })?;
                shared
                    .log
                    .log(Level::Info, None, "admin listener", &[("address", &local)]);
                Some(local)
            }
            None => None,
        };
        ready(listener.local_addr()?);
        while !self.is_shutting_down() {
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or the like: say so and back off a little
                    // rather than spin on a failing accept.
                    shared
                        .log
                        .log(Level::Error, None, "accept failed", &[("error", &e)]);
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if self.is_shutting_down() {
                break;
            }
            self.admit(stream, peer, &rejecter);
        }
        drop(listener);
        drop(rejecter);
        if let Some(addr) = admin_addr {
            // Wake the admin thread so that it sees the shutdown and ends.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        self.wait_drained();
        for w in &shared.writers {
            w.stop();
        }
        Ok(())
    }

    /// Counts the connection in, or turns it away with 503 or 429.
    fn admit(&self, stream: TcpStream, peer: SocketAddr, rejecter: &SyncSender<(TcpStream, u16)>) {
        let shared = &self.shared;
        let config = &shared.config;
        let refuse = |reason: &'static str, status: u16, stream: TcpStream| {
            shared.metrics.rejected(reason);
            shared.log.log(
                Level::Warn,
                None,
                "connection refused",
                &[("peer", &peer), ("reason", &reason)],
            );
            if let Err(TrySendError::Full((stream, _))) = rejecter.try_send((stream, status)) {
                // The rejecter is busy with slow clients: these get no answer at all.
                shared.metrics.rejected("rejecter_busy");
                drop(stream);
            }
        };
        {
            let mut active = shared.active.lock().unwrap_or_else(|p| p.into_inner());
            if shared.established.load(SeqCst) >= config.max_connections {
                drop(active);
                return refuse("max_connections", 503, stream);
            }
            if let Some(max) = config.max_connections_per_ip {
                let mut per_ip = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
                let n = per_ip.entry(peer.ip()).or_insert(0);
                if *n >= max {
                    drop(per_ip);
                    drop(active);
                    return refuse("max_connections_per_ip", 429, stream);
                }
                *n += 1;
            }
            *active += 1;
        }
        let guard = Admitted {
            shared: shared.clone(),
            ip: peer.ip(),
            established: std::cell::Cell::new(false),
        };
        let id = ConnId(shared.next_id.fetch_add(1, SeqCst));
        self.hold_handshake_slot(id, &stream);
        let server = self.clone();
        let spawned = self.spawn(format!("conn-{id}"), config.thread_stack_bytes, move || {
            serve_connection(&server, stream, peer, id, &guard);
        });
        if let Err(e) = spawned {
            shared
                .handshaking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            // The guard went down with the closure: the counts are back.
            shared.log.log(
                Level::Error,
                Some(id),
                "no thread for connection",
                &[("error", &e)],
            );
            shared.metrics.rejected("no_thread");
        }
    }

    /// Counts connection `id` among those sending their handshake, dropping the oldest
    /// pending one first when [`Config::max_handshakes`] are.
    fn hold_handshake_slot(&self, id: ConnId, stream: &TcpStream) {
        let shared = &self.shared;
        let mut pending = shared.handshaking.lock().unwrap_or_else(|p| p.into_inner());
        while pending.len() >= shared.config.max_handshakes.max(1) {
            let Some((_, oldest)) = pending.pop_first() else {
                break;
            };
            // Its reader's read fails at once and its thread ends.
            let _ = oldest.shutdown(Shutdown::Both);
            shared.metrics.rejected("handshake_evicted");
        }
        if let Ok(handle) = stream.try_clone() {
            pending.insert(id, handle);
        }
    }

    pub(super) fn spawn(
        &self,
        name: String,
        stack: usize,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<thread::JoinHandle<()>> {
        let shared = self.shared.clone();
        shared.threads.fetch_add(1, SeqCst);
        let counted = shared.clone();
        let result = thread::Builder::new()
            .name(name)
            .stack_size(stack)
            .spawn(move || {
                struct Done(Arc<Shared>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.threads.fetch_sub(1, SeqCst);
                    }
                }
                let _done = Done(counted);
                f()
            });
        if result.is_err() {
            shared.threads.fetch_sub(1, SeqCst);
        }
        result
    }

    /// A thread that answers turned-away connections: the status line, then a
    /// lingering close so that the answer is read rather than reset.
    fn start_rejecter(&self) -> io::Result<SyncSender<(TcpStream, u16)>> {
        let (tx, rx) = mpsc::sync_channel::<(TcpStream, u16)>(256);
        let linger = self
            .shared
            .config
            .ws
            .close_timeout
            .min(Duration::from_secs(1));
        self.spawn("rejecter".into(), 64 * 1024, move || {
            for (mut stream, status) in rx {
                let _ = stream.set_write_timeout(Some(linger));
                let body = match status {
                    503 => "too many connections",
                    _ => "too many connections from this address",
                };
                let _ = stream.write_all(&http::response(
                    status,
                    "text/plain",
                    &[("Retry-After", "5")],
                    body.as_bytes(),
                ));
                socket::linger_close(&stream, linger);
            }
        })?;
        Ok(tx)
    }
}

/// A connection counted in `active` and `per_ip`; dropping it counts it out.
struct Admitted {
    shared: Arc<Shared>,
    ip: IpAddr,
    /// Counted in `established` too.
    established: std::cell::Cell<bool>,
}

impl Admitted {
    /// Moves the connection from its handshake slot to the established ones, unless
    /// [`Config::max_connections`] are: then `false`.
    fn establish(&self) -> bool {
        let max = self.shared.config.max_connections;
        let taken = self
            .shared
            .established
            .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok();
        self.established.set(taken);
        taken
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.established.get() {
            self.shared.established.fetch_sub(1, SeqCst);
        }
        if self.shared.config.max_connections_per_ip.is_some() {
            let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        let mut active = self.shared.active.lock().unwrap_or_else(|p| p.into_inner());
        *active -= 1;
        if *active == 0 {
            self.shared.drained.notify_all();
        }
    }
}

/// A short name for a handshake failure, for the metric's label.
fn failure_label(e: &socket::Error) -> &'static str {
    match e {
        socket::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            "timeout"
        }
        socket::Error::Io(_) | socket::Error::Closed => "io",
        socket::Error::Protocol(p) => match p.http_status() {
            Some(405) => "method_not_allowed",
            Some(426) => "bad_version",
            Some(431) => "head_too_large",
            Some(505) => "http_version",
            _ => "bad_request",
        },
    }
}

/// One TCP connection, on its own thread: the request, then HTTP or WebSocket.
fn serve_connection(
    server: &Server,
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    admitted: &Admitted,
) {
    let shared = &server.shared;
    let config = &shared.config;
    // Small frames go out at once: latency matters more than packet count here.
    let _ = stream.set_nodelay(true);
    let read = socket::read_request(
        &mut DeadlineStream::new(&stream, config.handshake_timeout),
        config.ws.head_limits,
    );
    let still_pending = shared
        .handshaking
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id)
        .is_some();
    let (request, leftover) = match read {
        Ok(x) => x,
        Err(_) if !still_pending => {
            // Dropped for a newer connection (counted then), not failed.
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
        Err(e) => {
            let label = failure_label(&e);
            shared.metrics.handshake_failed(label);
            if !(label == "io"
                && matches!(&e, socket::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof))
            {
                shared.log.log(
                    Level::Debug,
                    Some(id),
                    "handshake failed",
                    &[("peer", &peer), ("error", &e)],
                );
            }
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    if !admitted.establish() {
        shared.metrics.rejected("max_connections");
        let _ = (&stream).write_all(&http::response(
            503,
            "text/plain",
            &[("Retry-After", "5")],
            b"too many connections",
        ));
        socket::linger_close(&stream, config.ws.close_timeout);
        return;
    }
    if !request.headers.has_token("connection", "upgrade")
        && request.headers.one("upgrade").is_none()
    {
        http::serve(server, &stream, &request, leftover, peer);
        socket::linger_close(&stream, config.ws.close_timeout);
        return;
    }
    let offer = match handshake::validate_request(&request) {
        Ok(offer) => offer,
        Err(e) => {
            shared
                .metrics
                .handshake_failed(failure_label(&socket::Error::Protocol(e.clone())));
            shared.log.log(
                Level::Debug,
                Some(id),
                "handshake refused",
                &[("peer", &peer), ("error", &e)],
            );
            let _ = (&stream).write_all(&handshake::encode_reject(&e));
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    let decided = guarded(shared, Some(id), "on_upgrade", || {
        shared
            .handler
            .on_upgrade(&Upgrade::new(&request, &offer, peer))
    })
    .unwrap_or_else(|| {
        Err(Reject {
            status: 500,
            body: "internal error".into(),
            retry_after: None,
        })
    });
    let (protocol, note) = match decided {
        // A subprotocol the client did not offer would make it fail the connection (4.1).
        Ok(accept) => (
            accept.protocol.filter(|p| offer.protocols.contains(p)),
            accept.note,
        ),
        Err(reject) => {
            shared.metrics.handshake_failed("refused_by_handler");
            shared.log.log(
                Level::Debug,
                Some(id),
                "upgrade refused",
                &[("peer", &peer), ("status", &reject.status)],
            );
            let retry = reject.retry_after.map(|s| s.to_string());
            let extra: Vec<(&str, &str)> =
                retry.iter().map(|s| ("Retry-After", s.as_str())).collect();
            let _ = (&stream).write_all(&handshake::encode_error_with(
                reject.status,
                &reject.body,
                &extra,
            ));
            socket::linger_close(&stream, config.ws.close_timeout);
            return;
        }
    };
    let accept = handshake::encode_accept(&offer, protocol.as_deref(), &[]);
    let handshake = Handshake {
        request,
        time: SystemTime::now(),
        protocol,
        note,
    };
    let conn = Arc::new(Conn::new(id, peer, handshake, stream, shared.clone()));
    // The 101 is the first thing in the send queue, and the connection is in the
    // registry before it leaves: a client that hears the 101 and at once gets others
    // to broadcast misses nothing, and nothing can overtake the 101 on the wire. The
    // reader sends it before its first read.
    conn.queue_raw(&accept);
    conn::set_reader_of(id);
    shared
        .registry
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, conn.clone());
    inc(&shared.metrics.connections);
    inc(&shared.metrics.connections_total);
    shared.log.log(
        Level::Debug,
        Some(id),
        "open",
        &[
            ("peer", &peer),
            ("target", &conn.handshake().request.target),
        ],
    );
    if server.is_shutting_down() {
        // The shutdown's sweep may have missed it: close it like the others.
        conn.close(close::GOING_AWAY, "server shutting down");
    }
    let end = match guarded(shared, Some(id), "on_open", || {
        shared.handler.on_open(server, &conn)
    }) {
        Some(()) => read_loop(server, &conn, leftover),
        None => End::Failed(Error::HandlerFailed),
    };
    end_connection(server, &conn, end);
    conn::set_reader_of(ConnId(0));
}
