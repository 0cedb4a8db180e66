"""The "service" behind the benchmark tunnels: echoes every byte back (so a line comes back as
is). Single thread, selectors. Usage: line_service.py PORT"""
import selectors
import socket
import sys

sel = selectors.DefaultSelector()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(1024)
ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            continue
        try:
            s.sendall(data)  # lines are tiny: never blocks for long
        except OSError:
            sel.unregister(s)
            s.close()
