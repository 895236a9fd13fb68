#!/usr/bin/env python3
"""The broker benchmark: a PHP back end (php -S, PHP_CLI_SERVER_WORKERS=4), a broker
(this one, or the earlier wsbroker), and `switchboard bench broker` as the clients.
Prints one JSON line per run: the load generator's figures, and the broker's CPU per
back-end event and peak memory, read from /proc.

usage: bench/broker/run.py [--broker switchboard|original] [--clients 200]
                           [--messages 10] [--runs 1] [--original-script PATH]

The original is run with `node PATH BACKEND_URL` where PATH starts wsbroker 1.0.15 and
prints "listening on 127.0.0.1:PORT" (tests/broker.rs shows one: .cache/wsbroker/run.js).
Every process started here is stopped by its PID (php's whole group: its workers).
"""
import argparse, json, os, signal, socket, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SB = os.path.join(ROOT, "target", "release", "switchboard")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid):
    """CPU of every process in group `pgid` (php -S and the workers it forked)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_once(args):
    php_port = free_port()
    env = dict(os.environ, PHP_CLI_SERVER_WORKERS="4")
    php = subprocess.Popen(["php", "-S", f"127.0.0.1:{php_port}", "-t", HERE], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    broker = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", php_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{php_port}/backend.php"
        if args.broker == "switchboard":
            cmd = [SB, "broker", "--listen", "127.0.0.1:0", "--backend", url,
                   "--max-messages-per-second", "0"]
        else:
            cmd = ["node", args.original_script, url]
        broker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = broker.stdout.readline().strip()
        addr = first.removeprefix("listening on ")
        cpu0 = cpu_seconds(broker.pid)
        php0 = group_cpu_seconds(php.pid)
        t0 = time.time()
        out = subprocess.run([SB, "bench", "broker", f"ws://{addr}/", "--clients", str(args.clients),
                              "--messages", str(args.messages)],
                             capture_output=True, text=True, timeout=300)
        wall = time.time() - t0
        cpu = cpu_seconds(broker.pid) - cpu0
        php_cpu = group_cpu_seconds(php.pid) - php0
        if out.returncode != 0:
            raise SystemExit(f"bench failed: {out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        events = args.clients * (args.messages + 2)  # connect and disconnect too
        result.update({
            "broker": args.broker,
            "broker_cpu_s": round(cpu, 3),
            "broker_cpu_us_per_event": round(cpu / events * 1e6, 1),
            "broker_peak_rss_mb": round(peak_kb(broker.pid) / 1024, 1),
            "php_cpu_s": round(php_cpu, 3),
            "wall_s": round(wall, 2),
        })
        return result
    finally:
        if broker:
            broker.kill()
            broker.wait()
        os.killpg(php.pid, signal.SIGKILL)
        php.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", default="switchboard", choices=["switchboard", "original"])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--original-script", default=os.path.join(ROOT, ".cache", "wsbroker", "run.js"))
    args = ap.parse_args()
    for _ in range(args.runs):
        print(json.dumps(run_once(args)), flush=True)


if __name__ == "__main__":
    main()
