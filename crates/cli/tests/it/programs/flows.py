# Makes short-lived flows and says how each went: `count` TCP connections (connect, close) to
# host:tcp_port and `count` UDP flows (a new socket, one datagram, wait up to `udp_wait`
# seconds for the echo) to host:udp_port, as user `uid` (0: stay as is). Prints one JSON object: the pid, TCP connected / refused at
# once / other outcomes with connect latencies (ms, median and 99th percentile), UDP echoed /
# refused / silent.
import errno, json, os, socket, sys, time

host, tcp_port, udp_port, count, uid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
udp_wait = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
if uid:
    os.setgid(uid)
    os.setuid(uid)
tcp = {"ok": 0, "refused": 0, "other": [], "latencies_ms": []}
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    t = time.perf_counter()
    try:
        s.connect((host, tcp_port))
        tcp["ok"] += 1
        tcp["latencies_ms"].append((time.perf_counter() - t) * 1000)
    except OSError as e:
        took = time.perf_counter() - t
        if e.errno in (errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.EPERM, errno.EACCES) and took < 1:
            tcp["refused"] += 1
        else:
            tcp["other"].append(f"{e} after {took:.3f} s")
    s.close()
udp = {"echoed": 0, "refused": 0, "silent": 0}
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(udp_wait)
    try:
        s.connect((host, udp_port))
        s.send(b"ping")
        s.recv(16)
        udp["echoed"] += 1
    except socket.timeout:
        udp["silent"] += 1
    except OSError:
        udp["refused"] += 1
    s.close()
lat = sorted(tcp.pop("latencies_ms"))
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None
tcp["p50_ms"], tcp["p99_ms"] = pick(0.5), pick(0.99)
tcp["other"] = tcp["other"][:5]
print(json.dumps({"pid": os.getpid(), "tcp": tcp, "udp": udp}), flush=True)
