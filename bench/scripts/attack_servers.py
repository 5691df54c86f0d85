"""Starting and watching the servers the attack scripts measure: the
http_hello and echo examples, and nginx in one foreground process configured
like http_hello. Imported by slowloris_compare.py, accept_storm.py and
churn_soak.py; not a script of its own."""
import os, re, resource, socket, subprocess, tempfile, threading, time

CLK_TCK = os.sysconf("SC_CLK_TCK")

def raise_nofile():
    """Children inherit the soft descriptor limit: raise it to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

def wait_listening(port, proc, timeout=10.0):
    until = time.time() + timeout
    while time.time() < until:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")

def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

def memory_kib(pid):
    """VmRSS and RssAnon in KiB, from /proc/PID/status."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(value.split()[0])
    return out

class Server:
    """A server process, its stderr drained on a thread (the lines kept when
    `keep` matches them)."""
    def __init__(self, name, argv, port, env=None, keep=None):
        self.name, self.port = name, port
        self.lines, self.keep = [], keep
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **(env or {})))
        threading.Thread(target=self._drain, daemon=True).start()
        wait_listening(port, self.proc)
        self.pid = self.proc.pid

    def _drain(self):
        for line in self.proc.stderr:
            if self.keep is None or re.search(self.keep, line):
                self.lines.append((time.time(), line.rstrip("\n")))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill(); self.proc.wait()

def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "target"))

def example(name):
    return os.path.join(target_dir(), "release", "examples", name)

def bench_binary():
    return os.path.join(target_dir(), "release", "reactor-bench")

def http_hello(port, *extra, log="warn"):
    return Server("http_hello", [example("http_hello"), f"127.0.0.1:{port}", *extra], port, env={"RUST_LOG": log})

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {nofile};
error_log {dir}/error.log {log};
pid {dir}/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    # As http_hello: --idle-timeout 60, --request-timeout 10, no limit on
    # requests per connection, the same listen backlog.
    keepalive_timeout {idle}s;
    keepalive_requests 1000000;
    client_header_timeout {request}s;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{ return 200 "Hello, World"; }}
    }}
}}
"""

def nginx(port, connections=10000, idle=60, request=10, log="warn"):
    """nginx as one foreground process (master_process off: the one process
    is the worker), configured like http_hello; the config goes to a
    temporary directory."""
    d = tempfile.mkdtemp(prefix="nginx-attack-")
    conf = os.path.join(d, "nginx.conf")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=d, port=port, connections=connections, idle=idle, request=request,
                                  nofile=nofile, log=log))
    server = Server("nginx", ["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")], port)
    server.conf_dir = d
    return server
