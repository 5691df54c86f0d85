"""Counts the chat server's socket writes when many clients join at once.

usage: chat_join_writes.py CHAT_BINARY MEMBERS JOINS
Starts the chat example on an ephemeral port, connects MEMBERS clients,
then counts (with strace -c) the sendto/sendmsg calls the server makes while
JOINS more clients connect at once.
"""
import os, re, signal, socket, subprocess, sys, time

binary, members, joins = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
proc = subprocess.Popen([binary, "127.0.0.1:0"], stderr=subprocess.PIPE, text=True,
                        env=dict(os.environ, RUST_LOG="info"))
port = None
for line in proc.stderr:
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1)); break
import threading
threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
socks = []
for _ in range(members):
    s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False); socks.append(s)
time.sleep(1.0)
def drain():
    for s in socks:
        try:
            while s.recv(65536): pass
        except BlockingIOError: pass
drain()
st = subprocess.Popen(["strace", "-c", "-f", "-e", "trace=sendto,sendmsg,write", "-p", str(proc.pid)],
                      stderr=subprocess.PIPE, text=True)
time.sleep(1.0)
start = time.time()
new = []
for _ in range(joins):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    new.append(s)
time.sleep(2.0)
st.send_signal(signal.SIGINT)
out = st.communicate()[1]
calls = 0
for line in out.splitlines():
    parts = line.split()
    if parts and parts[-1] in ("sendto", "sendmsg", "write"):
        calls += int(parts[3])
print(f"{members} members, {joins} joins at once: {calls} socket writes by the server")
proc.kill()
