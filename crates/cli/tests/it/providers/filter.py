# A content filter provider in Python, speaking nw-filter's contract (version 1) with nothing
# but the standard library. Options: "allow_ports" (flows to these remote ports, and inbound
# flows to these local ones, are allowed, the rest dropped) and "mode": "answer" (the default), "hang" (never answers a flow), or
# "exit" (says started, then exits at the first flow, as a crash would). Data: "peek_ports"
# (flows to these ports are peeked at: their first "peek" bytes, default 1024), "deny" (a
# peeked flow whose bytes contain one of these strings is dropped, the others allowed),
# "pass_first" (instead of deciding about the first bytes, pass that many and peek again), and
# "data_mode": "answer" or "hang" (never decides about data). "peek_in_ports": flows to these
# remote ports, or inbound flows to these local ports, have the peer's bytes peeked at instead
# ("peek_outbound": 0, or "peek" when the port is in "peek_ports" too; "peek_inbound":
# "peek"); an HTTP response is looked at whole: until it closes or contains a "deny" string,
# the provider passes nothing and peeks at more. "pass_requests": this host's bytes that do
# not contain a "deny" string are passed (and one more byte peeked at) instead of allowed, so
# that the answer is looked at too. Each data message is written as a line to "record" when
# given, and so is each flow_closed report.
import base64, json, os, socket, sys

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
        served = int(flow["local"].rsplit(":", 1)[1]) if flow["direction"] == "inbound" else port
        if served in options.get("peek_in_ports", []):
            peek = options.get("peek", 1024)
            out = peek if port in options.get("peek_ports", []) else 0
            send({"type": "verdict", "id": flow["id"], "verdict": "filter_data", "peek_outbound": out, "peek_inbound": peek})
            continue
        if port in options.get("peek_ports", []):
            peek = options.get("peek", 1024)
            send({"type": "verdict", "id": flow["id"], "verdict": "filter_data", "peek_outbound": peek})
            continue
        allowed = options.get("allow_ports", [])
        verdict = "allow" if port in allowed or served in allowed else "drop"
        send({"type": "verdict", "id": flow["id"], "verdict": verdict})
    elif m["type"] == "data":
        data = base64.b64decode(m["bytes"])
        if "record" in options:
            with open(options["record"], "a") as f:
                f.write(json.dumps({"type": "data", "id": m["id"], "direction": m["direction"], "offset": m["offset"], "len": len(data), "closed": m["closed"]}) + "\n")
        first = options.get("pass_first", 0)
        if m["offset"] == 0 and first:
            send({"type": "data_verdict", "id": m["id"], "verdict": "pass", "pass": first, "peek": options.get("peek", 1024)})
            continue
        if options.get("data_mode") == "hang":
            continue
        denied = any(d.encode() in data for d in options.get("deny", []))
        if m["direction"] == "outbound" and options.get("pass_requests") and not denied:
            send({"type": "data_verdict", "id": m["id"], "verdict": "pass", "pass": len(data), "peek": 1})
            continue
        if data.startswith(b"HTTP/") and not denied and not m["closed"]:
            send({"type": "data_verdict", "id": m["id"], "verdict": "pass", "pass": 0, "peek": 65536})
            continue
        send({"type": "data_verdict", "id": m["id"], "verdict": "drop" if denied else "allow"})
    elif m["type"] == "flow_closed":
        if "record" in options:
            with open(options["record"], "a") as f:
                f.write(json.dumps(m) + "\n")
    elif m["type"] == "stop":
        send({"type": "stopped"})
        break
