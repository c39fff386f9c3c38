"""A real SMTP server on loopback for the tests: aiosmtpd, keeping every
message it takes as a file, and refusing some recipients the way receiving
servers do.

    sink.py DIR [--user NAME --password SECRET]

It listens on 127.0.0.1 on a free port and writes the port to DIR/port
once it takes connections. Each message it takes is written whole to
DIR/mail/NNNNNN.eml, with its envelope (MAIL FROM, RCPT TO) in
DIR/mail/NNNNNN.json. At RCPT, a local part starting with `bounce` gets
`550 5.1.1` (no such user), one starting with `reject` a bare `550`
(mailbox unavailable, no detail) and one starting with `busy` gets
`451 4.3.0` (try later). With --user, AUTH PLAIN/LOGIN is required (over plain text:
this is loopback).
"""

import argparse
import asyncio
import itertools
import json
import os
import signal

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, directory):
        self.dir = os.path.join(directory, "mail")
        os.makedirs(self.dir, exist_ok=True)
        self.seq = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("bounce"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("reject"):
            return "550 Requested action not taken: mailbox unavailable"
        if local.startswith("busy"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.seq)
        base = os.path.join(self.dir, f"{n:06}")
        # The envelope first, then the message: a reader that sees the
        # .eml sees its envelope.
        with open(base + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.replace(base + ".json.tmp", base + ".json")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.replace(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Message accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--user")
    p.add_argument("--password")
    args = p.parse_args()
    sink = Sink(args.dir)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        return AuthResult(success=ok, handled=False)

    def factory():
        if args.user:
            return SMTP(
                sink,
                hostname="sink.test",
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=False,
                decode_data=False,
            )
        return SMTP(sink, hostname="sink.test", decode_data=False)

    async def run():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        with open(os.path.join(args.dir, "port.tmp"), "w") as f:
            f.write(str(port))
        os.replace(os.path.join(args.dir, "port.tmp"), os.path.join(args.dir, "port"))
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
