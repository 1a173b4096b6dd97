# Clients for the peek test: python3 peek_client.py MODE HOST PORT [BYTES]. Prints one JSON
# line: how the connection ended ("eof", "reset", "timeout") and, for an upload, MB/s.
#   chunks   sends "0123456789", then "abcdefghij" 0.3 s later, then waits
#   garbage  sends 600 random bytes where a ClientHello would be, then waits
#   closes   sends 5 bytes and closes its side (a flow that ends mid-peek)
#   big_sni  sends a TLS ClientHello whose server name is 64 KiB long, then waits
#   upload   sends BYTES bytes as fast as it can, closes its side, waits for the server
#   fastopen sends "GET / HTTP/1.0" with Host: NAME in its SYN (TCP Fast Open, MSG_FASTOPEN),
#            reads the answer; says whether the SYN-ACK acknowledged the SYN's data
import json, os, socket, struct, sys, time

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
if mode == "fastopen":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    request = b"GET / HTTP/1.0\r\nHost: " + sys.argv[4].encode() + b"\r\n\r\n"
    s.sendto(request, socket.MSG_FASTOPEN, (host, port))
    s.settimeout(10)
else:
    s = socket.create_connection((host, port), timeout=10)


def hello_with_sni(name):
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    ext = struct.pack("!HH", 0, len(sni)) + sni
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    # Records carry at most 2^14 bytes (RFC 8446 §5.1): the handshake spans several.
    records = b""
    for i in range(0, len(hs), 1 << 14):
        part = hs[i : i + (1 << 14)]
        records += b"\x16\x03\x01" + struct.pack("!H", len(part)) + part
    return records


try:
    if mode == "chunks":
        s.sendall(b"0123456789")
        time.sleep(0.3)
        s.sendall(b"abcdefghij")
    elif mode == "garbage":
        s.sendall(os.urandom(600))
    elif mode == "closes":
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
    elif mode == "big_sni":
        s.sendall(hello_with_sni(b"a" * 65_000 + b".example"))
    elif mode == "upload":
        size = int(sys.argv[4])
        chunk = b"PUT /upload HTTP/1.1\r\nHost: up.example\r\n\r\n" + b"x" * (1 << 20)
        t, sent = time.monotonic(), 0
        while sent < size:
            sent += s.send(chunk[: min(len(chunk), size - sent)])
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        out["mb_s"] = sent / (time.monotonic() - t) / 1e6
    elif mode == "fastopen":
        answer = b""
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            answer += data
        # struct tcp_info's tcpi_options, bit TCPI_OPT_SYN_DATA (include/uapi/linux/tcp.h).
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        out["syn_data_acked"] = bool(info[5] & 32)
        out["answer"] = answer.decode(errors="replace")
    out["ended"] = "eof" if s.recv(1 << 16) == b"" else "data"
except ConnectionResetError:
    out["ended"] = "reset"
except socket.timeout:
    out["ended"] = "timeout"
print(json.dumps(out))
