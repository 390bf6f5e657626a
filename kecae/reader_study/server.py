"""``kecae reader-study serve``: the study's app under waitress, the reader links, and a log in
which no reader token appears (:mod:`kecae.reader_study.security`)."""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path
from typing import TextIO

from kecae.config import check_values
from kecae.errors import KecaeError
from kecae.reader_study import db, security
from kecae.reader_study.app import create_app
from kecae.reader_study.config import ServeConfig

#: Hosts that only this machine reaches.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(
    study: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    threads: int = 8,
    out: TextIO = sys.stdout,
) -> None:
    """Serve ``study`` with waitress until interrupted; prints the reader links.

    ``port=0`` picks a free port (printed). Only localhost is reachable unless ``host`` says
    otherwise; the links travel in clear text over plain HTTP, so serve other hosts behind a
    TLS proxy or an SSH tunnel. The port and thread count are checked against their ranges
    (:class:`~kecae.reader_study.config.ServeConfig`) before anything is bound.
    """
    from waitress import create_server  # the web server: imported only by this command

    check_values(ServeConfig(study=str(study), host=host, port=port, threads=threads))
    study = Path(study)
    app = create_app(study)
    app.logger  # noqa: B018 (Flask creates its logger, with its handler, on first use)
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="kecae")
    except OSError as exc:  # in use, or an address this machine does not have
        raise _bind_error(host, port, exc) from exc
    bound = getattr(server, "effective_port", None)
    if bound is None:  # a name such as "localhost" can bind several sockets (IPv4 and IPv6)
        bound = server.effective_listen[0][1]
    _print_links(study, f"http://{_url_host(host)}:{bound}", host, out)
    with security.redact_logs():
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()


def _bind_error(host: str, port: int, exc: OSError) -> KecaeError:
    if exc.errno == errno.EADDRINUSE:
        return KecaeError(
            f"--port {port} is in use on {host}: stop what listens there, or pick another "
            "--port (0: any free port)"
        )
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return KecaeError(
            f"--host {host!r} is not an address of this machine ({exc.strerror or exc}): "
            "use 127.0.0.1 (this machine only) or one of its addresses"
        )
    if exc.errno == errno.EACCES:
        return KecaeError(f"--port {port} needs privileges to bind: pick a port above 1023")
    return KecaeError(
        f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port"
    )


def _print_links(study: Path, base: str, host: str, out: TextIO) -> None:
    """Where the study is served, and each reader's link (the operator sends them)."""
    print(
        f"reader study {study} at {base}/  (Ctrl-C stops; each answer is saved as it is given)",
        file=out,
    )
    if host not in LOCAL_HOSTS:
        print(
            f"warning: listening on {host}, not only this machine; the links travel unencrypted "
            "over plain HTTP: put a TLS proxy or an SSH tunnel in front",
            file=out,
        )
    links = study / db.LINKS_NAME
    if links.is_file():
        for line in links.read_text().splitlines():
            if line and not line.startswith("#"):
                name, path = line.split("\t", 1)
                print(f"  {name}: {base}{path}", file=out)
    out.flush()
