# The UDP 5-tuple reuse check: python3 udp_reuse.py HOST PORT COUNT FIRST_LOCAL_PORT UID_A UID_B
# [GAP]. For each of COUNT local ports in turn, a process as UID_A binds it, sends a datagram
# to HOST:PORT and waits for the echo, and exits; GAP seconds later (default 0) a process as
# UID_B binds the same port and does the same. Prints one JSON line: how many of each were
# echoed.
import json, os, socket, sys, time

host, port, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
uid_a, uid_b = int(sys.argv[5]), int(sys.argv[6])
gap = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0


def flow(uid, local, wait):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setuid(uid)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", local))
            s.connect((host, port))
            s.settimeout(wait)
            s.send(b"x")
            s.recv(64)
            code = 0
        except Exception:
            pass
        os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


echoed = {"a": 0, "b": 0}
for i in range(count):
    local = first + i
    echoed["a"] += flow(uid_a, local, 2.0)
    time.sleep(gap)
    echoed["b"] += flow(uid_b, local, 0.3)
print(json.dumps(echoed))
