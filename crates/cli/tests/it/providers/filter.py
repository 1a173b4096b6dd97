# A content filter provider in Python, speaking nw-filter's contract (version 1) with nothing
# but the standard library. Options: "allow_ports" (flows to these remote ports are allowed,
# the rest dropped) and "mode": "answer" (the default), "hang" (never answers a flow), or
# "exit" (says started, then exits at the first flow, as a crash would).
import json, os, socket, sys

sock = socket.socket(fileno=int(os.environ["NW_FILTER_FD"]))
reader = sock.makefile("rb")
options = {}


def send(message):
    sock.sendall(json.dumps(message).encode() + b"\n")


for line in reader:
    m = json.loads(line)
    if m["type"] == "start":
        options = m["options"]
        send({"type": "started"})
    elif m["type"] == "new_flow":
        mode = options.get("mode", "answer")
        if mode == "hang":
            continue
        if mode == "exit":
            os._exit(3)
        flow = m["flow"]
        port = int(flow["remote"].rsplit(":", 1)[1])
        verdict = "allow" if port in options.get("allow_ports", []) else "drop"
        send({"type": "verdict", "id": flow["id"], "verdict": verdict})
    elif m["type"] == "stop":
        send({"type": "stopped"})
        break
