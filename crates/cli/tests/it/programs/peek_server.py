# The far end for the peek test: on each TCP port given, counts the bytes of each connection
# until the client closes or resets it, or it is idle for a second and a half (a TLS client
# waits for a ServerHello that never comes), answers a whole HTTP GET with "ok", and prints
# one JSON line per connection: its port, the bytes received, the first of them in hex, and
# how it ended. Runs until killed.
import json, socket, sys, threading

lock = threading.Lock()


def say(message):
    with lock:
        print(json.dumps(message), flush=True)


def serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Takes data in a SYN (TCP Fast Open) where the namespace's sysctl allows it.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, port), daemon=True).start()


def handle(c, port):
    head, count, ended = b"", 0, "eof"
    c.settimeout(1.5)
    try:
        while True:
            data = c.recv(1 << 16)
            if not data:
                break
            count += len(data)
            if len(head) < 4096:
                head += data[: 4096 - len(head)]
            if head.startswith(b"GET ") and b"\r\n\r\n" in head:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                ended = "answered"
                break
    except socket.timeout:
        ended = "idle"
    except ConnectionResetError:
        ended = "reset"
    c.close()
    say({"event": "conn", "port": port, "bytes": count, "head": head[:16].hex(), "ended": ended})


for arg in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(arg),), daemon=True).start()
say({"event": "ready"})
threading.Event().wait()
