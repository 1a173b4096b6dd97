# The far end for flows.py: on each TCP port given, accepts connections and closes each a
# second later (the client closes first and keeps the TIME_WAIT, so its kernel never reuses a
# 4-tuple the server still remembers); on each UDP port, echoes every datagram. Runs until
# killed.
import collections, socket, sys, threading, time

def tcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    held = collections.deque()
    while True:
        c, _ = s.accept()
        now = time.monotonic()
        held.append((now, c))
        while held and now - held[0][0] > 1:
            held.popleft()[1].close()

def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)

for arg in sys.argv[1:]:
    kind, port = arg.split(":")
    threading.Thread(target=tcp if kind == "tcp" else udp, args=(int(port),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
