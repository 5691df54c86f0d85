"""Server CPU for JOINS clients joining a chat of MEMBERS at once, and how
long a line between two members takes meanwhile.
usage: chat_join_cpu.py CHAT_BINARY MEMBERS JOINS"""
import os, re, socket, subprocess, sys, threading, time
binary, members, joins = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
proc = subprocess.Popen([binary, "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="info"))
port = None
for line in proc.stderr:
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if m: port = int(m.group(1)); break
threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
def cpu():
    f = open(f"/proc/{proc.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
socks = []
for _ in range(members):
    s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False); socks.append(s)
stop = False
def drainer():
    while not stop:
        for s in socks + extra:
            try:
                while s.recv(1 << 16): pass
            except (BlockingIOError, ConnectionError, OSError): pass
        time.sleep(0.01)
extra = []
threading.Thread(target=drainer, daemon=True).start()
a = socket.create_connection(("127.0.0.1", port)); b = socket.create_connection(("127.0.0.1", port))
time.sleep(1.0)
b.setblocking(False)
try:
    while b.recv(1 << 16): pass
except BlockingIOError: pass
b.setblocking(True); b.settimeout(60)
c0 = cpu()
for _ in range(joins):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    extra.append(s)
t0 = time.time()
a.sendall(b"ping-marker\n")
buf = b""
while b"ping-marker" not in buf:
    buf += b.recv(1 << 16)
latency = time.time() - t0
time.sleep(2.0)
c1 = cpu()
stop = True
print(f"{members} members + {joins} joins: server CPU {c1 - c0:.2f} s; a line took {latency*1000:.0f} ms meanwhile")
proc.kill()
