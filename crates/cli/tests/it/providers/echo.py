# A packet tunnel provider in Python, speaking nw-tunnel's contract (version 1) with nothing
# but the standard library: it applies the settings in its options, then answers every ICMP and
# ICMPv6 echo request the tunnel carries (as if the far end were there). With "then" and
# "after_ms" in its options it applies a second set of settings while traffic flows; with
# "then" and "repeat" it applies the two in turn that many times first. DNS queries the
# tunnel carries over IPv4 are answered too (every A record is 10.53.0.1).
import json, os, select, socket, struct, sys, time

sock = socket.socket(fileno=int(os.environ["NW_TUNNEL_FD"]))
buf = b""
fds = []


def send(message):
    sock.sendall(json.dumps(message).encode() + b"\n")


def receive():
    global buf
    while b"\n" not in buf:
        data, got, _, _ = socket.recv_fds(sock, 65536, 4)
        if not data:
            sys.exit(0)
        buf += data
        fds.extend(got)
    line, buf = buf.split(b"\n", 1)
    return json.loads(line)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# Destinations of the UDP datagrams to port 9 (discard) the tunnel carried; a datagram that
# says "report" has them sent in an app message.
discarded = set()


def note_discard(packet):
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 28 and packet[9] == 17:
        ihl = (packet[0] & 15) * 4
        port, payload = struct.unpack("!H", packet[ihl + 2:ihl + 4])[0], packet[ihl + 8:]
        destination = socket.inet_ntop(socket.AF_INET, packet[16:20])
    elif version == 6 and len(packet) >= 48 and packet[6] == 17:
        port, payload = struct.unpack("!H", packet[42:44])[0], packet[48:]
        destination = socket.inet_ntop(socket.AF_INET6, packet[24:40])
    else:
        return
    if port != 9:
        return
    if payload == b"report":
        send({"type": "app_message", "data": {"discarded": sorted(discarded)}})
    else:
        discarded.add(destination)


def dns_answer(query):
    # A resolver on the far side of the tunnel: every A question is answered with 10.53.0.1,
    # any other type with no records (RFC 1035 §4.1).
    at = 12
    while at < len(query) and query[at]:
        at += query[at] + 1
    question = query[12:at + 5]
    qtype = struct.unpack("!H", query[at + 1:at + 3])[0] if at + 3 <= len(query) else 0
    records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("10.53.0.1") if qtype == 1 else b""
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if records else 0, 0, 0)
    return header + question + records


def answer(packet):
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 40 and packet[9] == 17:
        ihl = (packet[0] & 15) * 4
        sport, dport = struct.unpack("!HH", packet[ihl:ihl + 4])
        if dport != 53:
            return None
        payload = dns_answer(packet[ihl + 8:])
        udp = struct.pack("!HHHH", 53, sport, 8 + len(payload), 0) + payload
        header = bytearray(packet[:ihl])
        header[2:4] = struct.pack("!H", ihl + len(udp))
        header[12:16], header[16:20] = packet[16:20], packet[12:16]
        header[10:12] = b"\0\0"
        header[10:12] = struct.pack("!H", checksum(bytes(header)))
        return bytes(header) + udp
    if version == 4 and len(packet) >= 28 and packet[9] == 1:
        ihl = (packet[0] & 15) * 4
        if packet[ihl] != 8:
            return None
        icmp = bytearray(packet[ihl:])
        icmp[0] = 0
        icmp[2:4] = b"\0\0"
        icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
        header = bytearray(packet[:ihl])
        header[12:16], header[16:20] = packet[16:20], packet[12:16]
        return bytes(header) + bytes(icmp)
    if version == 6 and len(packet) >= 48 and packet[6] == 58 and packet[40] == 128:
        src, dst = packet[24:40], packet[8:24]
        icmp = bytearray(packet[40:])
        icmp[0] = 129
        icmp[2:4] = b"\0\0"
        pseudo = src + dst + struct.pack("!IxxxB", len(icmp), 58)
        icmp[2:4] = struct.pack("!H", checksum(pseudo + bytes(icmp)))
        return packet[:8] + src + dst + bytes(icmp)
    return None


start = receive()
assert start["type"] == "start" and start["version"] == 1, start
tun = fds.pop(0)
options = start["options"]
send({"type": "settings", "id": 1, "settings": options.get("settings")})
reply = receive()
if reply["type"] != "applied":
    send({"type": "cancel", "reason": "configuration_failed", "message": reply.get("message")})
    sys.exit(1)
send({"type": "started"})

# "repeat": N applies "then" and "settings" in turn N times, each after the last was applied.
for i in range(options.get("repeat", 0)):
    send({"type": "settings", "id": 100 + i, "settings": options["then"] if i % 2 == 0 else options["settings"]})
    reply = receive()
    if reply["type"] != "applied":
        send({"type": "cancel", "reason": "configuration_failed", "message": reply.get("message")})
        sys.exit(1)

then_at = time.monotonic() + options["after_ms"] / 1000 if "after_ms" in options else None
while True:
    timeout = None if then_at is None else max(0, then_at - time.monotonic())
    ready, _, _ = select.select([tun, sock], [], [], timeout)
    if then_at is not None and time.monotonic() >= then_at:
        send({"type": "settings", "id": 2, "settings": options["then"]})
        then_at = None
    if tun in ready:
        packet = os.read(tun, 65536)
        note_discard(packet)
        out = answer(packet)
        if out:
            os.write(tun, out)
    if sock in ready:
        message = receive()
        if message["type"] == "stop":
            send({"type": "stopped"})
            sys.exit(0)
        if message["type"] == "error":
            send({"type": "app_message", "data": {"refused": message["message"]}})
